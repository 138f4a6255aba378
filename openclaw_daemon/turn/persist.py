"""Write a turn to its session: the entries, the session's counters, its tape.

The user message, then each step's reply and tool results, are appended at
once; the session's index entry gets the turn's usage; the tape the last
reply was committed to becomes the session's (unless the loop stopped after
running tools, when the tape lacks their results).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from openclaw_daemon.turn.agent_loop import Step
from openclaw_daemon.turn.result import API, PROVIDER, session_tokens, shown_text, total_usage
from openclaw_daemon.turn.session_tapes import SessionTapes
from openclaw_sessions.entries import assistant_entry, tool_result_entry, user_entry
from openclaw_sessions.store import SessionRef, SessionStore, last_entry_id

if TYPE_CHECKING:
    from openclaw_daemon.model.base import ModelInfo


def persist_turn(
    store: SessionStore,
    ref: SessionRef,
    entries: list[dict[str, Any]],
    message: str,
    steps: list[Step],
    *,
    request_id: str,
    info: ModelInfo,
    tapes: SessionTapes,
) -> None:
    records = turn_entries(last_entry_id(entries), message, steps, request_id, model=info.model_id)
    store.append(ref, records)
    usage = total_usage(steps)
    store.touch(
        ref,
        modelProvider=PROVIDER,
        model=info.model_id,
        contextTokens=info.n_ctx,
        inputTokens=usage["input"],
        outputTokens=usage["output"],
        totalTokens=usage["total"],
        sessionTokens=session_tokens(steps),
        cacheRead=usage["cacheRead"],
        cacheWrite=usage["cacheWrite"],
    )
    if steps[-1].outcomes:
        # The loop stopped after running tools (the context filled up): the
        # tape lacks their results, so the next turn rebuilds it.
        tapes.forget(ref)
        return
    tape = steps[-1].tape
    tape.last_entry_id = records[-1]["id"]
    tapes.adopt_tape(ref, tape)


def turn_entries(
    parent: str | None,
    message: str,
    steps: list[Step],
    request_id: str,
    *,
    model: str,
    provider: str = PROVIDER,
    api: str = API,
) -> list[dict[str, Any]]:
    """The user message, then each step's reply and its tool results, chained."""
    records = [user_entry(parent, message, request_id=request_id)]
    for step in steps:
        records.append(_reply_entry(records[-1]["id"], step, model, provider, api))
        for outcome in step.outcomes:
            records.append(
                tool_result_entry(
                    records[-1]["id"],
                    call_id=outcome.call.id,
                    tool_name=outcome.call.name,
                    text=outcome.content,
                    is_error=outcome.is_error,
                )
            )
    return records


def _reply_entry(parent: str, step: Step, model: str, provider: str, api: str) -> dict[str, Any]:
    calls: list[dict[str, Any]] = [
        {"id": c.id, "name": c.name, "arguments": c.arguments} for c in step.parsed.calls
    ]
    for block, call in zip(calls, step.parsed.calls, strict=True):
        if call.arguments_text is not None:  # a native call: its arguments as sent
            block["argumentsText"] = call.arguments_text
    return assistant_entry(
        parent,
        # What the user was shown: without its calls (a cut-off one too).
        text=shown_text(step),
        tool_calls=calls,
        raw_text=step.raw,
        error_message=step.error.message if step.error else None,
        usage=cast(dict[str, int], step.usage),  # the entry stores the same buckets
        model=model,
        provider=provider,
        api=api,
        stop_reason=(
            "toolUse"
            if step.outcomes and step.generation.stop_reason != "max_steps"
            else step.generation.stop_reason
        ),
    )
