"""``openclaw agent``: send one turn to the daemon and stream the reply.

The reply goes to stdout as it is decoded; progress and notices go to stderr.
``--json`` prints OpenClaw's envelope instead: ``payloads[]`` and ``meta`` with
``durationMs``, ``agentMeta`` (session, model, usage) and ``trace``. After the
reply, the CLI reports its own spans so the daemon stores the turn's whole
trace (``openclaw trace``); ``--trace`` draws it.

The frames are ``wire.messages``' TypedDicts (the request a ``TurnRequest``,
the result a ``TurnResult``), imported for annotations only: they cost this
hot path nothing.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from openclaw_cli import BOOT, daemon_control, upstream_refs, wants_json
from openclaw_cli.agent_args import AgentOptions, parse_agent_args, turn_request
from openclaw_cli.views import render
from openclaw_daemon import config
from openclaw_daemon.observability import turn_record
from openclaw_daemon.wire.errors import BadRequestError, OpenClawError, TurnTimeoutError

if TYPE_CHECKING:
    from openclaw_daemon.observability.turn_record import TraceRecord
    from openclaw_daemon.wire.client import DaemonClient
    from openclaw_daemon.wire.messages import ClientSpan, ReportRequest, TurnResult

# The CLI's own deadline waits this much longer than --timeout, so the
# daemon's timeout error (which stops the turn cleanly) normally arrives first.
_TIMEOUT_GRACE_S = 10.0
# The trace report is sent after the reply is out; a daemon that does not
# answer it in this long is not worth waiting for.
_REPORT_TIMEOUT_S = 2.0


def _ms(at: float, base: float = BOOT) -> float:
    return round((at - base) * 1000.0, 3)


def span(name: str, start: float, end: float, base: float = BOOT, **attrs: float) -> ClientSpan:
    """A client-side span; times from ``base`` (the process start for the CLI, the
    call for the Python API)."""
    timing = {
        "name": name,
        "startMs": _ms(start, base),
        "durationMs": round((end - start) * 1000.0, 3),
    }
    return cast("ClientSpan", {**timing, **attrs})


def run_agent_argv(argv: list[str]) -> int:
    """``openclaw agent ARGS``, from ``main.run`` (before typer is imported) or
    from the typer app's listing of the command."""
    with render.usage_errors_as_json(wants_json(argv)):
        options = parse_agent_args(argv)
    return run_agent(options)


def run_agent(options: AgentOptions) -> int:
    if not options.message.strip():
        raise BadRequestError("the message is empty", hint="Pass the text with -m TEXT.")
    paths = config.resolve_paths()
    model = None
    upstream = upstream_refs.upstream_ref(options.model) if options.model else None
    if upstream:
        # An upstream answers this turn: the daemon runs on whatever model it has.
        options = options._replace(upstream=upstream)
    elif options.model:
        model_path = config.resolve_model_path(options.model)  # a path or a name
        config.check_gguf(model_path)
        model = str(model_path)
    progress = render.Progress(enabled=not options.json)
    client, spans, connected_at = _connect(paths, model, progress)
    with client:
        _check_model(client.daemon_info, model, paths)
        shown: list[str] = []  # the reply's text as it streamed, for a failed turn
        try:
            result, sent_at, first_token_at = _stream_turn(client, options, progress, shown)
        except OpenClawError as exc:
            _show_failed_turn(exc, options, "".join(shown), paths)
            raise
        record = _reply_and_report(
            client, result, options, spans, (connected_at, sent_at), first_token_at
        )
    if options.trace:
        from openclaw_cli.views import trace_view

        trace_view.print_chart(record, console=trace_view.stderr_console())
    return 0


def _connect(
    paths: config.Paths, model: str | None, progress: render.Progress
) -> tuple[DaemonClient, list[ClientSpan], float]:
    """Connect, starting the daemon if need be: the client, the CLI's spans, and when."""
    connect_at = time.perf_counter()
    client, spawned = daemon_control.connect_or_start(
        paths, command=daemon_control.server_command(model=model), waiting=progress.waiting
    )
    connected_at = time.perf_counter()
    progress.stop()
    spans = [
        # Start-up: interpreter, imports, arguments and options, up to connecting.
        span("cli.boot", BOOT, connect_at),
        span(
            "daemon.spawn" if spawned else "cli.connect",
            connect_at,
            connected_at,
            **_connect_detail(client.daemon_info, connect_at, connected_at),
        ),
    ]
    return client, spans, connected_at


def _reply_and_report(
    client: DaemonClient,
    result: TurnResult,
    options: AgentOptions,
    spans: list[ClientSpan],
    marks: tuple[float, float],
    first_token_at: float | None,
) -> TraceRecord:
    """Finish the reply (--json, --verbose), send the CLI's spans; the turn's record."""
    render_at = time.perf_counter()
    times = (*marks, render_at)  # connected, request sent, reply rendering
    report: ReportRequest | None = None
    try:
        _finish_reply(result, options)
        spans.append(span("cli.render", render_at, time.perf_counter()))
        report = client_report(result, spans, times, first_token_at)
        record = turn_record.build(result, report, memory={})
        if options.json:
            render.print_json(envelope(result, record))
        elif options.verbose:
            _print_trace_summary(result, record)
    finally:
        # After the reply is out, or its reader gone (``| head``): the daemon
        # stores the turn's trace record, with the CLI's spans if they are done.
        if report is None:
            spans.append(span("cli.render", render_at, time.perf_counter()))
            report = client_report(result, spans, times, first_token_at)
        with contextlib.suppress(OpenClawError):
            client.call(report, timeout=_REPORT_TIMEOUT_S)
    return record


def _finish_reply(result: TurnResult, options: AgentOptions) -> None:
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


def client_report(
    result: TurnResult,
    spans: list[ClientSpan],
    marks: tuple[float, float, float],
    first_token_at: float | None,
    base: float = BOOT,
) -> ReportRequest:
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
        span("request.send", connected_at, max(connected_at, origin), base),
        span("reply.receive", min(daemon_end, render_at), render_at, base),
    ]
    ordered = sorted([*spans, *handoffs], key=lambda span: span["startMs"])
    end = spans[-1]["startMs"] + spans[-1]["durationMs"]
    return {
        "type": "report",
        "turnId": result.get("turnId", ""),
        "spans": ordered,
        "wallMs": round(end, 3),
        "ttftMs": _ms(first_token_at, base) if first_token_at else None,
        "daemonOffsetMs": _ms(origin, base),
    }


def _connect_detail(info: Mapping[str, Any], start: float, end: float) -> dict[str, float]:
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


def _check_model(daemon_info: Mapping[str, Any], model: str | None, paths: config.Paths) -> None:
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
    client: DaemonClient, options: AgentOptions, progress: render.Progress, shown: list[str]
) -> tuple[TurnResult, float, float | None]:
    request = turn_request(options)
    deadline = options.timeout + _TIMEOUT_GRACE_S if options.timeout else None
    sent_at = time.perf_counter()
    first_token_at: float | None = None
    result: TurnResult | None = None
    try:
        for frame in client.request(request, timeout=deadline):
            if frame["type"] == "token":
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                    progress.stop()
                shown.append(frame["text"])
                if not options.json:
                    sys.stdout.write(frame["text"])
                    sys.stdout.flush()
            elif frame["type"] == "progress":
                progress.prefill(frame["done"], frame["total"], frame["rate"])
            elif frame["type"] == "notice":
                render.notice(frame["text"])
            elif frame["type"] == "tool":
                progress.stop()
                render.tool_event(frame)
            elif frame["type"] == "done":
                # A turn's done frame carries the TurnResult (docs/protocol.md).
                result = cast("TurnResult", frame["result"])
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
        trace = _trace_of(record) if record else None
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


def _trace_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's fields ``--json`` shows as ``meta.trace``."""
    return {key: record.get(key) for key in _TRACE_KEYS}


def envelope(result: TurnResult, record: TraceRecord) -> dict[str, Any]:
    """OpenClaw's ``--json`` envelope of a finished turn."""
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
            # An upstream turn's engine ("upstream:provider/model-id"), and the ones
            # that failed before it answered (agents.defaults.model.fallbacks).
            "engine": result.get("engine", "embedded"),
            "fallbackFrom": result.get("fallbackFrom", []),
            "route": result.get("route"),  # {"engine", "rule"}: why this engine
            "trace": _trace_of(record),
        },
    }


def _print_trace_summary(result: TurnResult, record: TraceRecord) -> None:
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
