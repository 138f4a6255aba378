"""Compaction on an upstream, when it says a turn's prompt overflows its context.

The summary is generated as a continuation of the session's own messages: the
request is the previous turn's prompt (which the upstream's prefix cache holds)
plus the summarisation instruction, so only the instruction is prefilled, never a
separate cold prompt. The compaction entry is OpenClaw's, as the embedded
compactor writes it; the turn is then retried once on the compacted layout.
"""

from __future__ import annotations

from typing import Any

from openclaw_daemon.turn.compactor import INSTRUCTION, SUMMARY_CALL, SUMMARY_MAX_TOKENS
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.turn.model_calls import CallContext
from openclaw_daemon.turn.transcript import Transcript
from openclaw_daemon.upstream.model_call import UpstreamCalls, request_text
from openclaw_daemon.upstream.targets import Target, UpstreamTargets
from openclaw_daemon.wire.errors import ContextOverflowError, UpstreamContextOverflowError
from openclaw_sessions.compaction import CompactionSettings, plan_compaction
from openclaw_sessions.prompt import message_text
from openclaw_sessions.store import SessionRef, SessionStore, last_entry_id, new_entry_id, now_iso

# The window assumed for the kept tail when a model's contextWindow is not configured.
DEFAULT_WINDOW = 8192


def compact(
    targets: UpstreamTargets,
    calls: UpstreamCalls,
    transcript: Transcript,
    chain: list[Target],
    ref: SessionRef,
    store: SessionStore,
    entries: list[dict[str, Any]],
    system: str,
    ctx: TurnContext,
    overflow: UpstreamContextOverflowError,
) -> list[dict[str, Any]]:
    """Summarise the session's older turns on the upstream and record the compaction;
    the entries with it. ContextOverflowError when there is nothing older to summarise."""
    target = chain[0]
    tokenizer = targets.tokenizer(target)

    def tokens(entry: dict[str, Any]) -> int:
        return len(tokenizer.tokenize(message_text(entry.get("message", {}))))

    window = target.model.context_window or DEFAULT_WINDOW
    keep_recent = CompactionSettings.for_window(window).keep_recent  # as the embedded one
    plan = plan_compaction(entries, tokens, keep_recent, keep_last_turn=False)
    if plan is None or not plan.summarized:
        raise ContextOverflowError(
            f"{overflow.message}; the session has no older turns to compact",
            hint="Shorten the message, or start a new session with --session-id NEW.",
        ) from overflow
    ctx.emit({"type": "notice", "text": f"{target.ref}: the prompt overflows; compacting"})
    messages = [
        *transcript.messages(entries, system),
        {"role": "user", "content": INSTRUCTION},
    ]

    def quiet(frame: dict[str, Any]) -> None:
        if frame.get("type") != "token":  # the summary is not the user's reply
            ctx.emit(frame)

    call = CallContext(ctx.trace, quiet, ctx.cancelled, 0)
    try:
        made = calls.call(
            [target],
            messages,
            SUMMARY_CALL,
            SUMMARY_MAX_TOKENS,
            call,
            hide_calls=False,
            cache_key=ref.session_id,
        )
    except UpstreamContextOverflowError as exc:
        raise ContextOverflowError(
            f"cannot summarise the session on {target.ref}: {exc.message}",
            hint="Start a new session with --session-id NEW.",
        ) from exc
    before = len(tokenizer.tokenize(request_text(messages[:-1])))
    compaction: dict[str, Any] = {
        "type": "compaction",
        "id": new_entry_id(),
        "parentId": last_entry_id(entries),
        "timestamp": now_iso(),
        "summary": made.generation.text.strip() or "(no summary)",
        "firstKeptEntryId": plan.first_kept_id,
        "tokensBefore": before,
    }
    compacted = [*entries, compaction]
    after = len(tokenizer.tokenize(request_text(transcript.messages(compacted, system))))
    compaction["tokensAfter"] = after
    if after >= before:
        raise ContextOverflowError(
            f"{overflow.message}; compacting would not shrink the session "
            f"({before} -> {after} tokens), so nothing was written",
            hint="Shorten the message, or start a new session with --session-id NEW.",
        ) from overflow
    store.append(ref, [compaction])
    store.touch(ref, totalTokens=after)
    ctx.trace.add(
        "compaction.summary",
        ctx.trace.clock(),
        ctx.trace.clock(),
        engine=target.engine,
        tokensBefore=before,
        tokensAfter=after,
        summaryCachedTokens=made.server.cached,
        summaryPrefillTokens=made.usage["input"],
    )
    return compacted
