"""A turn's result (the ``done`` frame's ``result``), built in one place.

Typed as ``wire.messages.TurnResult``: the handler sends it, the trace record
is built from it, and the CLI prints it as ``--json``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypedDict

from openclaw_daemon.observability.tracing import Trace
from openclaw_daemon.turn import replay
from openclaw_daemon.turn.agent_loop import Step
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.wire.messages import SessionFields, StepResult, TurnResult, Usage
from openclaw_sessions.store import SessionRef

if TYPE_CHECKING:
    from openclaw_daemon.model.base import ModelInfo

PROVIDER = "openclaw-edge"
API = "llama.cpp"


def session_fields(ref: SessionRef, info: ModelInfo, provider: str = PROVIDER) -> SessionFields:
    """The session and model a turn's result names, replayed or not."""
    return {
        "sessionId": ref.session_id,
        "sessionKey": ref.key,
        "sessionFile": str(ref.file),
        "agentId": ref.agent_id,
        "provider": provider,
        "model": info.model_id,
        "modelName": info.name,
        "modelPath": info.path,
        "contextTokens": info.n_ctx,
    }


def shown_text(step: Step) -> str:
    """A reply as the user saw it: without its calls (run, or cut off by
    --max-tokens and dropped; the stream hid them too); a reply with no call
    block as generated."""
    return step.shown


def turn_result(
    ref: SessionRef,
    steps: list[Step],
    ctx: TurnContext,
    info: ModelInfo,
    *,
    cache: dict[str, Any] | None,
    compaction: dict[str, Any] | None,
    provider: str = PROVIDER,
) -> TurnResult:
    first = steps[0].generation.first_token_at
    ttft = (first - ctx.received_at) * 1000.0 if first else None
    final = steps[-1]
    return {
        "turnId": ctx.turn_id,
        "text": shown_text(final),
        "stopReason": final.generation.stop_reason,
        **session_fields(ref, info, provider),
        "usage": total_usage(steps),
        "steps": [describe_step(i, step) for i, step in enumerate(steps)],
        "ttftMs": round(ttft, 3) if ttft is not None else None,
        **_timing(ctx.trace),
        "cache": cache,
        "compaction": compaction,
    }


def replayed(
    ref: SessionRef,
    turn: list[dict[str, Any]],
    ctx: TurnContext,
    info: ModelInfo,
    provider: str = PROVIDER,
) -> TurnResult:
    """A retry of a committed turn: its stored reply, in a turn's result."""
    reply = replay.reply(turn)
    return {
        "turnId": ctx.turn_id,
        **session_fields(ref, info, provider),
        "text": reply["text"],
        "stopReason": reply["stopReason"],
        "steps": reply["steps"],
        "usage": reply["usage"],
        "replayed": reply["replayed"],
        "ttftMs": None,
        "cache": None,
        "compaction": None,
        **_timing(ctx.trace),
    }


class _Timing(TypedDict):
    spans: list[dict[str, Any]]
    daemonMs: float
    originClock: float
    at: float


def _timing(trace: Trace) -> _Timing:
    return {
        "spans": trace.spans,
        "daemonMs": round(trace.offset_ms(), 3),
        # The daemon's perf_counter at the trace origin: on one machine the
        # CLI shares this clock, so it can place these spans exactly.
        "originClock": trace.origin,
        "at": time.time(),
    }


def total_usage(steps: list[Step]) -> Usage:
    """The turn's usage: every model call's tokens, summed."""
    return {
        "input": sum(step.usage["input"] for step in steps),
        "output": sum(step.usage["output"] for step in steps),
        "cacheRead": sum(step.usage["cacheRead"] for step in steps),
        "cacheWrite": sum(step.usage["cacheWrite"] for step in steps),
        "total": sum(step.usage["total"] for step in steps),
    }


def session_tokens(steps: list[Step]) -> int:
    """The session's size after the turn: its last call's prompt plus reply, which is
    what the next turn's prompt starts from (the summed usage counts every call)."""
    return steps[-1].usage["total"] if steps else 0


def describe_step(index: int, step: Step) -> StepResult:
    return {
        "call": index,
        "usage": step.usage,
        "text": step.parsed.text,
        "toolCalls": [
            {
                "id": o.call.id,
                "name": o.call.name,
                "arguments": o.call.arguments,
                "isError": o.is_error,
                "cached": o.cached,
                "truncated": o.truncated,
                "durationMs": round((o.ended - o.started) * 1000.0, 3),
                "result": o.content,
            }
            for o in step.outcomes
        ],
    }
