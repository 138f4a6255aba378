"""The stored trace record of one turn: the daemon's spans and the CLI's, on one timeline.

The daemon times the turn from the moment it received the request; the CLI
times it from its process's real start. After the reply, the CLI reports its
own spans (``cli.boot``, ``cli.connect`` or ``daemon.spawn``, ``cli.render``),
its wall time and time to first token, and where the daemon's origin falls on
its timeline; ``build`` merges them into the record ``openclaw trace`` draws
and ``openclaw stats`` and ``metrics`` aggregate. Without a report (a killed
or older client) the record keeps the daemon's timeline alone.

The record's fields are a stable, documented format (docs/tracing.md,
``SCHEMA``), typed once here as ``TraceRecord`` and built only by ``build``
and ``build_failed``. Standard library only (and the wire types): the CLI
uses ``timeline`` and ``build`` too.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, cast

from openclaw_daemon.observability.tracing import WORK_SCOPES, Span, Trace, covered_ms, scope_of
from openclaw_daemon.wire.errors import BadRequestError
from openclaw_daemon.wire.messages import Usage

if TYPE_CHECKING:  # the CLI's agent path imports this module: annotations cost nothing
    from openclaw_daemon.wire.messages import ClientSpan, ReportRequest, TurnResult, Usage

SCHEMA = 1
CLIENT_SPANS = frozenset(
    {"cli.boot", "cli.connect", "daemon.spawn", "request.send", "reply.receive", "cli.render"}
    | {"api.connect", "api.result"}  # the Python API's, in place of cli.*
)
_MAX_CLIENT_SPANS = 16
_MAX_MS = 7 * 86400 * 1000.0  # a week: anything longer is not a turn
# Offsets inside cli.connect: when the daemon accepted, and sent its hello.
_CLIENT_SPAN_DETAILS = frozenset({"acceptedMs", "helloMs"})


class Accounting(TypedDict):
    """Where a turn's wall time went (``accounting``)."""

    coveredMs: float
    coverage: float
    modelAndToolMs: float
    residualMs: float


class _RecordKeys(Accounting):
    schema: int
    turnId: str
    status: str  # "ok", or the error code the turn ended with
    at: float  # wall-clock seconds
    sessionId: str
    sessionKey: str
    agentId: str
    model: str
    origin: str  # "process start" (with the CLI's report) or "request received"
    wallMs: float
    ttftMs: float | None
    daemonTtftMs: float | None
    daemonMs: float
    spawned: bool
    stopReason: str | None
    usage: Usage
    modelCalls: int
    tools: list[str]
    cache: dict[str, Any]
    compaction: dict[str, Any] | None
    rssBytes: int | None
    peakRssBytes: int | None
    spans: list[Span]


class TraceRecord(_RecordKeys, total=False):
    """One stored turn (a line of ``$STATE/traces/turns.jsonl``; docs/tracing.md)."""

    error: str  # a failed turn's error message
    engine: str  # "embedded" or "upstream:provider/model-id": the one that answered
    route: dict[str, str] | None  # {"engine", "rule"}: what routing chose, and why


def new_turn_id() -> str:
    return secrets.token_hex(6)


def timeline(
    daemon_spans: Sequence[Mapping[str, Any]],
    client_spans: Sequence[ClientSpan],
    daemon_offset_ms: float,
) -> list[Span]:
    """Every span on the client's timeline (ms from process start), in start order."""
    shifted = []
    for span in daemon_spans:
        moved = {**span, "startMs": round(float(span["startMs"]) + daemon_offset_ms, 3)}
        if span.get("firstTokenMs") is not None:  # a position on the same timeline
            moved["firstTokenMs"] = round(float(span["firstTokenMs"]) + daemon_offset_ms, 3)
        shifted.append(moved)
    merged = [{**span, "scope": scope_of(span["name"])} for span in client_spans] + shifted
    return sorted(merged, key=lambda span: (span["startMs"], -span["durationMs"]))


def accounting(spans: list[Span], wall_ms: float) -> Accounting:
    """How much of the wall time the spans cover, and the framework residual.

    The residual is the wall time not spent in the model or in tools: what the
    framework itself costs the user.
    """
    work = covered_ms([s for s in spans if s.get("scope") in WORK_SCOPES])
    covered = covered_ms(spans)
    return {
        "coveredMs": round(covered, 3),
        "coverage": round(covered / wall_ms, 4) if wall_ms > 0 else 0.0,
        "modelAndToolMs": round(work, 3),
        "residualMs": round(max(0.0, wall_ms - work), 3),
    }


def _number(value: Any, what: str, *, minimum: float = 0.0) -> float:
    # abs() first: math.isfinite overflows on an int past the float range.
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not abs(value) < 1e300
        or not math.isfinite(value)
    ):
        raise BadRequestError(f"the trace report's {what} is not a number")
    if not minimum <= value <= _MAX_MS:
        raise BadRequestError(f"the trace report's {what} is out of range: {value}")
    return float(value)


def check_report(message: Mapping[str, Any], *, turn_id: str | None = None) -> ReportRequest:
    """Validate the CLI's ``report`` frame; BadRequestError names what is wrong."""
    if message.get("type") != "report":
        raise BadRequestError(
            f"only a trace report may follow a turn, not {str(message.get('type'))[:40]!r}"
        )
    if turn_id is not None and message.get("turnId") != turn_id:
        raise BadRequestError(f"the trace report is for another turn than {turn_id}")
    spans = message.get("spans")
    if not isinstance(spans, list) or len(spans) > _MAX_CLIENT_SPANS:
        raise BadRequestError("the trace report needs a list of at most 16 spans")
    checked: list[ClientSpan] = []
    for span in spans:
        name = span.get("name") if isinstance(span, dict) else None
        if not isinstance(name, str) or name not in CLIENT_SPANS:
            raise BadRequestError(
                f"the trace report has a span that is not the CLI's: {span!r:.80}"
            )
        extra = {
            key: _number(value, key)
            for key, value in span.items()
            if key in _CLIENT_SPAN_DETAILS and value is not None
        }
        checked_span: ClientSpan = {
            "name": name,
            "startMs": _number(span.get("startMs"), "span start"),
            "durationMs": _number(span.get("durationMs"), "span duration"),
        }
        if "acceptedMs" in extra:
            checked_span["acceptedMs"] = extra["acceptedMs"]
        if "helloMs" in extra:
            checked_span["helloMs"] = extra["helloMs"]
        checked.append(checked_span)
    ttft = message.get("ttftMs")
    wall = _number(message.get("wallMs"), "wallMs")
    if wall <= 0:
        raise BadRequestError("the trace report's wallMs must be positive")
    return {
        "type": "report",
        "turnId": str(message.get("turnId") or ""),
        "spans": checked,
        "wallMs": wall,
        "ttftMs": None if ttft is None else _number(ttft, "ttftMs"),
        "daemonOffsetMs": _number(message.get("daemonOffsetMs"), "daemonOffsetMs"),
    }


def build(
    result: TurnResult, client: ReportRequest | None, *, memory: Mapping[str, int]
) -> TraceRecord:
    """The stored record of a finished turn (``result`` is the turn's ``done`` result)."""
    daemon_spans = result["spans"]
    if client is not None:
        spans = timeline(daemon_spans, client["spans"], client["daemonOffsetMs"])
        wall, ttft, origin = client["wallMs"], client["ttftMs"], "process start"
    else:
        spans = timeline(daemon_spans, [], 0.0)
        wall, ttft, origin = float(result["daemonMs"]), result.get("ttftMs"), "request received"
    steps = result.get("steps") or []
    cache = result.get("cache") or {}
    record: TraceRecord = {
        "schema": SCHEMA,
        "turnId": result["turnId"],
        "status": "ok",
        "at": result["at"],
        "sessionId": result["sessionId"],
        "sessionKey": result["sessionKey"],
        "agentId": result["agentId"],
        "model": result["model"],
        "origin": origin,
        "wallMs": round(wall, 3),
        "ttftMs": None if ttft is None else round(ttft, 3),
        "daemonTtftMs": result.get("ttftMs"),
        "daemonMs": result["daemonMs"],
        **accounting(spans, wall),
        "spawned": any(span["name"] == "daemon.spawn" for span in spans),
        "stopReason": result.get("stopReason"),
        "usage": result["usage"],
        "modelCalls": len(steps),
        "tools": [call["name"] for step in steps for call in step.get("toolCalls", [])],
        "cache": cache,
        "compaction": result.get("compaction"),
        # Which engine answered, and the routing rule that chose it (upstream.routing).
        "engine": result.get("engine", "embedded"),
        "route": result.get("route"),
        "rssBytes": memory.get("rss"),
        "peakRssBytes": memory.get("peak"),
        "spans": spans,
    }
    return record


def build_failed(
    trace: Trace,
    *,
    turn_id: str,
    session_id: str,
    session_key: str,
    agent_id: str,
    status: str,
    error: str,
    model: str,
    memory: Mapping[str, int],
    engine: str = "embedded",
) -> TraceRecord:
    """The record of a turn that ended in an error (a timeout, a cancel, a full
    context): the daemon's spans up to that point, no client report. Usage and
    the cache outcome are what the spans say was done before it stopped."""
    spans = [
        # A timeout stops a phase by cancelling it: name the reason the turn ended.
        {**span, "interrupted": status} if "interrupted" in span else span
        for span in timeline(trace.spans, [], 0.0)
    ]
    wall = trace.offset_ms()
    record: TraceRecord = {
        "schema": SCHEMA,
        "turnId": turn_id,
        "status": status,
        "error": error,
        "at": time.time(),
        "sessionId": session_id,
        "sessionKey": session_key,
        "agentId": agent_id,
        "model": model,
        "origin": "request received",
        "wallMs": round(wall, 3),
        "ttftMs": None,
        "daemonTtftMs": None,
        "daemonMs": round(wall, 3),
        **accounting(spans, wall),
        "spawned": False,
        "stopReason": None,
        "usage": usage_from_spans(spans),
        "modelCalls": sum(1 for span in spans if span["name"] == "model.prefill"),
        "tools": [span["name"][len("tool.") :] for span in spans if span["scope"] == "tool"],
        "cache": cache_from_spans(spans),
        "compaction": None,
        "engine": engine,
        "rssBytes": memory.get("rss"),
        "peakRssBytes": memory.get("peak"),
        "spans": spans,
    }
    return record


def _tokens(spans: list[Span], name: str) -> int:
    return sum(int(span.get("tokens") or 0) for span in spans if span["name"] == name)


def usage_buckets(prefilled: int, cached: int, output: int) -> Usage:
    """OpenClaw's usage buckets: every prompt token in exactly one of ``input``
    (prefilled), ``cacheRead`` (reused from the KV cache) and ``cacheWrite``
    (always 0 here, see docs/usage.md); ``total`` is prompt plus output."""
    prompt = prefilled + cached
    return {
        "input": prefilled,
        "output": output,
        "cacheRead": cached,
        "cacheWrite": 0,
        "total": prompt + output,
    }


def prompt_tokens(usage: Mapping[str, Any]) -> int:
    """The prompt's tokens, from any record: ``total - output``. Records written
    before the buckets were split counted every prompt token in ``input`` too,
    so adding the buckets would count those twice; this reads both right."""
    return int(usage.get("total", 0)) - int(usage.get("output", 0))


def usage_from_spans(spans: list[Span]) -> Usage:
    """A failed turn's usage, as far as it got, summed over its model calls as a
    finished turn's is: what each reused, prefilled and decoded."""
    cached = sum(
        int(span.get("cachedTokens") or 0) for span in spans if span["name"] == "model.prefill"
    )
    usage = usage_buckets(_tokens(spans, "model.prefill"), cached, _tokens(spans, "model.decode"))
    return cast("Usage", usage)


def cache_from_spans(spans: list[Span]) -> dict[str, Any]:
    """A failed turn's cache outcome: the tier and tokens its restore applied."""
    restore = next((span for span in spans if span["name"] == "cache.restore"), None)
    if restore is None:
        return {}
    return {"tier": restore.get("tier", "none"), "cachedTokens": restore.get("tokens", 0)}
