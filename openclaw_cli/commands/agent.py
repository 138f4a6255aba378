"""``openclaw agent``: send one turn to the daemon and stream the reply.

The reply goes to stdout as it is decoded; progress and notices go to stderr.
``--json`` prints OpenClaw's envelope instead: ``payloads[]`` and ``meta`` with
``durationMs``, ``agentMeta`` (session, model, usage) and ``trace``. After the
reply, the CLI reports its own spans so the daemon stores the turn's whole
trace (``openclaw trace``); ``--trace`` draws it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from openclaw_cli import BOOT, daemon_control
from openclaw_cli.agent_args import AgentOptions
from openclaw_cli.views import render
from openclaw_daemon import config
from openclaw_daemon.observability import turn_record
from openclaw_daemon.wire.errors import BadRequestError, OpenClawError, TurnTimeoutError

# The CLI's own deadline waits this much longer than --timeout, so the
# daemon's timeout error (which stops the turn cleanly) normally arrives first.
_TIMEOUT_GRACE_S = 10.0
# The trace report is sent after the reply is out; a daemon that does not
# answer it in this long is not worth waiting for.
_REPORT_TIMEOUT_S = 2.0


def _ms(at: float) -> float:
    return round((at - BOOT) * 1000.0, 3)


def _span(name: str, start: float, end: float, **attrs: Any) -> dict[str, Any]:
    return {
        "name": name,
        "startMs": _ms(start),
        "durationMs": round((end - start) * 1000.0, 3),
        **attrs,
    }


def run_agent(options: AgentOptions) -> int:
    if not options.message.strip():
        raise BadRequestError("the message is empty", hint="Pass the text with -m TEXT.")
    paths = config.resolve_paths()
    model = None
    if options.model:
        model_path = Path(options.model).expanduser().resolve()
        config.check_gguf(model_path)
        model = str(model_path)
    progress = render.Progress(enabled=not options.json)
    connect_at = time.perf_counter()
    client, spawned = daemon_control.connect_or_start(
        paths, command=daemon_control.server_command(model=model), waiting=progress.waiting
    )
    connected_at = time.perf_counter()
    progress.stop()
    spans = [
        # Start-up: interpreter, imports, arguments and options, up to connecting.
        _span("cli.boot", BOOT, connect_at),
        _span(
            "daemon.spawn" if spawned else "cli.connect",
            connect_at,
            connected_at,
            **_connect_detail(client.daemon_info, connect_at, connected_at),
        ),
    ]
    with client:
        _check_model(client.daemon_info, model, paths)
        shown: list[str] = []  # the reply's text as it streamed, for a failed turn
        try:
            result, sent_at, first_token_at = _stream_turn(client, options, progress, shown)
        except OpenClawError as exc:
            _show_failed_turn(exc, options, "".join(shown), paths)
            raise
        render_at = time.perf_counter()
        report: dict[str, Any] = {}
        try:
            _finish_reply(result, options)
            spans.append(_span("cli.render", render_at, time.perf_counter()))
            report = _client_report(
                result, spans, (connected_at, sent_at, render_at), first_token_at
            )
            record = turn_record.build(result, report, memory={})
            if options.json:
                render.print_json(_envelope(result, record))
            elif options.verbose:
                _print_trace_summary(result, record)
        finally:
            # After the reply is out, or its reader gone (``| head``): the daemon
            # stores the turn's trace record, with the CLI's spans if they are done.
            if not report:
                spans.append(_span("cli.render", render_at, time.perf_counter()))
                report = _client_report(
                    result, spans, (connected_at, sent_at, render_at), first_token_at
                )
            with contextlib.suppress(OpenClawError):
                client.call({"type": "report", **report}, timeout=_REPORT_TIMEOUT_S)
    if options.trace:
        from openclaw_cli.views import trace_view

        trace_view.print_chart(record, console=trace_view.stderr_console())
    return 0


def _finish_reply(result: dict[str, Any], options: AgentOptions) -> None:
    """End the streamed reply with a newline, or say that there was none."""
    if not options.json and result["text"] and not result["text"].endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()
    if not result["text"].strip() and not options.json:
        steps = len(result.get("steps", []))
        render.notice(
            f"the model gave no answer ({steps} model call{'s' if steps != 1 else ''}; "
            "see --verbose on or --json for its tool steps)"
        )


def _client_report(
    result: dict[str, Any],
    spans: list[dict[str, Any]],
    marks: tuple[float, float, float],
    first_token_at: float | None,
) -> dict[str, Any]:
    """What the daemon needs to put its spans and ours on one timeline.

    Besides the CLI's own phases, two spans cover the hand-offs: preparing and
    sending the request until the daemon picked it up (``request.send``), and
    the result's trip back (``reply.receive``).
    """
    connected_at, sent_at, render_at = marks
    origin = result.get("originClock")
    # The daemon's perf_counter is this process's clock on the same machine
    # (CLOCK_MONOTONIC, mach time); if its origin is not plausibly between
    # sending and now, fall back to the moment the request was sent.
    if not isinstance(origin, float) or not sent_at - 0.001 <= origin <= time.perf_counter():
        origin = sent_at
    daemon_end = origin + float(result.get("daemonMs") or 0.0) / 1000.0
    handoffs = [
        _span("request.send", connected_at, max(connected_at, origin)),
        _span("reply.receive", min(daemon_end, render_at), render_at),
    ]
    ordered = sorted([*spans, *handoffs], key=lambda span: span["startMs"])
    end = spans[-1]["startMs"] + spans[-1]["durationMs"]
    return {
        "turnId": result.get("turnId", ""),
        "spans": ordered,
        "wallMs": round(end, 3),
        "ttftMs": _ms(first_token_at) if first_token_at else None,
        "daemonOffsetMs": _ms(origin),
    }


def _connect_detail(info: dict[str, Any], start: float, end: float) -> dict[str, float]:
    """When the daemon accepted the connection and sent its hello, as offsets into
    the connect span: a slow connect is then either a late accept or a late hello."""
    accepted, hello = info.get("acceptedClock"), info.get("helloClock")
    if not isinstance(accepted, float) or not isinstance(hello, float):
        return {}
    if not start - 0.001 <= accepted <= hello <= end + 0.001:
        return {}
    return {
        "acceptedMs": round((accepted - start) * 1000.0, 3),
        "helloMs": round((hello - start) * 1000.0, 3),
    }


def _check_model(daemon_info: dict[str, Any], model: str | None, paths: config.Paths) -> None:
    """A running daemon serves one model; say so instead of silently using another."""
    if model is None:
        return
    status = daemon_control.read_status_file(paths) or {}
    running = status.get("model")
    if running and Path(running).resolve() != Path(model):
        raise BadRequestError(
            f"the daemon is serving {running}, not {model}",
            hint=f"Restart it on that model: openclaw daemon restart --model {model}",
        )


def _stream_turn(
    client: Any, options: AgentOptions, progress: render.Progress, shown: list[str]
) -> tuple[dict[str, Any], float, float | None]:
    request = {
        "type": "turn",
        # One id per invocation; a script retrying a turn whose reply it never
        # got sets OPENCLAW_REQUEST_ID, and the daemon answers a committed one
        # from the transcript instead of running it twice (docs/recovery.md).
        "request_id": os.environ.get("OPENCLAW_REQUEST_ID") or uuid.uuid4().hex,
        "message": options.message,
        "agent_id": options.agent_id,
        "session_id": options.session_id,
        "max_tokens": options.max_tokens,
        "temperature": options.temperature,
        "seed": options.seed,
        "stop": list(options.stop),
        "cwd": str(Path.cwd()),
        "timeout_s": options.timeout,
        "system": options.system,
        "tool_choice": options.tool_choice,
        "max_steps": options.max_steps,
        "allow": list(options.allow),
        "exec_timeout": options.exec_timeout,
        # exec runs with the caller's environment, not the daemon's.
        "env": dict(os.environ),
    }
    deadline = options.timeout + _TIMEOUT_GRACE_S if options.timeout else None
    sent_at = time.perf_counter()
    first_token_at: float | None = None
    result: dict[str, Any] = {}
    try:
        for frame in client.request(request, timeout=deadline):
            kind = frame["type"]
            if kind == "token":
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                    progress.stop()
                shown.append(frame["text"])
                if not options.json:
                    sys.stdout.write(frame["text"])
                    sys.stdout.flush()
            elif kind == "progress":
                progress.prefill(frame["done"], frame["total"], frame["rate"])
            elif kind == "notice":
                render.notice(frame["text"])
            elif kind == "tool":
                progress.stop()
                render.tool_event(frame)
            elif kind == "done":
                result = frame["result"]
    except (KeyboardInterrupt, TurnTimeoutError, BrokenPipeError):
        # A closed stdout (``| head -1``) means nobody reads the rest: stop the
        # turn like Ctrl-C, instead of decoding up to --max-tokens for nobody.
        client.cancel()
        raise
    finally:
        progress.stop()
    if not result:
        raise OpenClawError("the daemon ended the turn without a result")
    return result, sent_at, first_token_at


def _show_failed_turn(
    error: OpenClawError, options: AgentOptions, partial: str, paths: config.Paths
) -> None:
    """A failed turn still gives ``--json`` its envelope (``aborted``, the error, the
    text streamed so far) and ``--trace`` its chart: the daemon stored the turn's
    record before it sent the error, under the id the error names."""
    if not (options.json or options.trace):
        return
    record = None
    if error.turn_id:
        from openclaw_daemon.observability.tracing import TurnLog

        stored = TurnLog(paths.turns_file).read(limit=20)
        record = next((r for r in reversed(stored) if r.get("turnId") == error.turn_id), None)
    if options.json:
        trace = {key: record.get(key) for key in _TRACE_KEYS} if record else None
        render.print_json(
            {
                "payloads": [{"text": partial, "mediaUrl": None}] if partial else [],
                "meta": {
                    "durationMs": round(_ms(time.perf_counter())),
                    "aborted": True,
                    "stopReason": error.code,
                    "error": {"code": error.code, "message": error.message, "hint": error.hint},
                    # The finished envelope's keys, null where a failed turn has no
                    # value; usage is the work done before the stop.
                    "agentMeta": {
                        "sessionFile": None,
                        "provider": None,
                        "contextTokens": None,
                        **{k: record.get(k) for k in _FAILED_META},
                    }
                    if record
                    else None,
                    "steps": [],
                    "compaction": None,
                    "trace": trace,
                },
            }
        )
    if options.trace and record is not None:
        from openclaw_cli.views import trace_view

        trace_view.print_chart(record, console=trace_view.stderr_console())


_FAILED_META = ("sessionId", "sessionKey", "model", "usage")
_TRACE_KEYS = (
    "turnId",
    "origin",
    "wallMs",
    "ttftMs",
    "daemonTtftMs",
    "coveredMs",
    "coverage",
    "residualMs",
    "cache",
    "spans",
)


def _envelope(result: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    return {
        "payloads": [{"text": result["text"], "mediaUrl": None}],
        "meta": {
            "durationMs": round(record["wallMs"]),
            "agentMeta": {
                "sessionId": result["sessionId"],
                "sessionKey": result["sessionKey"],
                "sessionFile": result["sessionFile"],
                "provider": result["provider"],
                "model": result["model"],
                "contextTokens": result["contextTokens"],
                "usage": result["usage"],
            },
            "steps": result.get("steps", []),
            "compaction": result.get("compaction"),
            "aborted": False,
            "stopReason": result["stopReason"],
            # Set when this was a retry of a committed turn: its stored reply.
            "replayed": result.get("replayed"),
            "trace": {key: record[key] for key in _TRACE_KEYS},
        },
    }


def _print_trace_summary(result: dict[str, Any], record: dict[str, Any]) -> None:
    usage = result["usage"]
    ttft = f"{record['ttftMs']:.0f} ms" if record["ttftMs"] is not None else "n/a"
    render.notice(
        f"session {result['sessionId']}: {turn_record.prompt_tokens(usage)} prompt tokens "
        f"({usage['cacheRead']} cached, {usage['input']} prefilled), "
        f"{usage['output']} generated; time to first token {ttft}; turn {record['turnId']}"
    )
    cache = result.get("cache") or {}
    if cache:
        render.notice(f"cache: {cache['summary']}")
    compaction = result.get("compaction")
    if compaction:
        render.notice(f"compaction: {compaction['summary']}")
    for span in record["spans"]:
        tokens = f"  {span['tokens']} tok" if span.get("tokens") is not None else ""
        render.notice(
            f"  {span['name']:<16} {span['startMs']:>9.1f} +{span['durationMs']:>8.1f} ms{tokens}"
        )
