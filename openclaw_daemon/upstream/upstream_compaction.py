"""Compaction of a session that runs on an upstream: asked for (``sessions compact``),
or when the upstream says a turn's prompt overflows its context.

1. **Summary as a continuation.** The request is the session's own messages (which
   the upstream's prefix cache holds from the last turn) plus the summarisation
   instruction, so only the instruction is prefilled, never a separate cold prompt.
2. **New layout.** OpenClaw's ``compaction`` entry, written as the embedded
   compactor writes it ([head][summary][recent tail]); every old entry stays.
3. **Prefill ahead.** The compacted layout is sent once with a one-token reply, so
   the upstream caches it and the next user turn is a hit there. On overflow the
   retried turn itself is that request.

A model in ``edge.nativeTools`` gets its session in native messages, with the turns'
``tools`` (``tool_choice: "none"``), as its turns send them (``tool_modes``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from openclaw_daemon.tools.formats.base import CallTags
from openclaw_daemon.turn.compactor import INSTRUCTION, SUMMARY_CALL, SUMMARY_MAX_TOKENS
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.turn.model_calls import CallContext
from openclaw_daemon.turn.transcript import Transcript
from openclaw_daemon.upstream.model_call import UpstreamCalls
from openclaw_daemon.upstream.native_tools import NativeRequest
from openclaw_daemon.upstream.targets import Target, UpstreamTargets
from openclaw_daemon.upstream.tool_modes import is_native, session_messages
from openclaw_daemon.wire.errors import (
    BadRequestError,
    ContextOverflowError,
    OpenClawError,
    UpstreamContextOverflowError,
)
from openclaw_sessions.compaction import CompactionSettings, plan_compaction
from openclaw_sessions.prompt import message_text
from openclaw_sessions.store import SessionRef, SessionStore, last_entry_id, new_entry_id, now_iso

# The window assumed for the kept tail when a model's contextWindow is not configured.
DEFAULT_WINDOW = 8192


class UpstreamCompactor:
    def __init__(self, targets: UpstreamTargets, tags: CallTags, transcript: Transcript) -> None:
        self.targets = targets
        self.tags = tags
        self.transcript = transcript
        # For ``daemon status``, beside the embedded compactor's.
        # "background": of the compactions, those run in idle time (past the threshold).
        self.counters = {"compactions": 0, "prefilledAhead": 0, "background": 0}
        # Sessions a turn left past the threshold of the engine that answered, for
        # the daemon to compact there in idle time (serve/background.py).
        self._due: dict[str, tuple[Target, SessionRef, SessionStore]] = {}
        self._due_lock = threading.Lock()

    def note_due(self, target: Target, ref: SessionRef, store: SessionStore, size: int) -> None:
        window = target.model.context_window
        if window and CompactionSettings.for_window(window).needs_compaction(size):
            with self._due_lock:
                self._due[ref.key] = (target, ref, store)

    def take_due(self) -> list[tuple[Target, SessionRef, SessionStore]]:
        """The sessions due for compaction on their upstream, each handed out once."""
        with self._due_lock:
            due, self._due = list(self._due.values()), {}
        return due

    def compact(
        self,
        target: Target,
        ref: SessionRef,
        store: SessionStore,
        entries: list[dict[str, Any]],
        system: str,
        ctx: TurnContext,
        *,
        overflow: UpstreamContextOverflowError | None = None,
        instructions: str | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Summarise the session's older turns on ``target`` and record the compaction:
        the entries with it, and what it cost. Nothing to summarise, or a summary that
        would not shrink the session, writes nothing: ContextOverflowError on overflow
        (the turn cannot fit), else BadRequestError."""
        tokenizer = self.targets.tokenizer(target)

        def tokens(entry: dict[str, Any]) -> int:
            return len(tokenizer.tokenize(message_text(entry.get("message", {}))))

        def refuse(why: str) -> OpenClawError:
            if overflow is None:
                return BadRequestError(f"session {ref.session_id} {why}; nothing was written")
            return ContextOverflowError(
                f"{overflow.message}; the session {why}, so nothing was written",
                hint="Shorten the message, or start a new session with --session-id NEW.",
            )

        window = target.model.context_window or DEFAULT_WINDOW
        keep_recent = CompactionSettings.for_window(window).keep_recent  # as the embedded one
        plan = plan_compaction(entries, tokens, keep_recent, keep_last_turn=overflow is None)
        if plan is None or not plan.summarized:
            raise refuse("is too short to compact: it needs at least two turns")
        if overflow is not None:
            ctx.emit({"type": "notice", "text": f"{target.ref}: the prompt overflows; compacting"})
        instruction = INSTRUCTION + (f" {instructions.strip()}" if instructions else "")
        native = is_native(self.targets.config(), target)
        session = session_messages(self.transcript, native, entries, system)
        # Only what the summary replaces goes into its request: still a prefix of what
        # the upstream cached (a continuation), and it fits where the whole session
        # plus the instruction would overflow again.
        ids = [e.get("id") for e in entries]
        cut = ids.index(plan.first_kept_id) if plan.first_kept_id in ids else len(entries)
        older = session_messages(self.transcript, native, entries[:cut], system)
        messages = [*older, {"role": "user", "content": instruction}]

        def quiet(frame: dict[str, Any]) -> None:
            if frame.get("type") != "token":  # the summary is not the user's reply
                ctx.emit(frame)

        started = time.perf_counter()
        try:
            made = UpstreamCalls(self.targets, self.tags).call(
                [target],
                messages,
                SUMMARY_CALL,
                SUMMARY_MAX_TOKENS,
                CallContext(ctx.trace, quiet, ctx.cancelled, 0),
                hide_calls=False,
                cache_key=ref.session_id,
                # The turns' tools too (none called), so the server renders their head.
                native=NativeRequest("none") if native else None,
            )
        except UpstreamContextOverflowError as exc:
            raise ContextOverflowError(
                f"cannot summarise the session on {target.ref}: {exc.message}",
                hint="Start a new session with --session-id NEW.",
            ) from exc
        summary_ms = round((time.perf_counter() - started) * 1000.0, 1)
        if not made.generation.text.strip():
            # An empty summary would replace the history with nothing (unattended, in
            # the background): refused, the session stays as it is.
            raise refuse(f"got an empty summary from {target.ref}")
        before = len(self.targets.request_ids(target, session))
        compaction: dict[str, Any] = {
            "type": "compaction",
            "id": new_entry_id(),
            "parentId": last_entry_id(entries),
            "timestamp": now_iso(),
            "summary": made.generation.text.strip(),
            "firstKeptEntryId": plan.first_kept_id,
            "tokensBefore": before,
        }
        compacted = [*entries, compaction]
        compacted_messages = session_messages(self.transcript, native, compacted, system)
        after = len(self.targets.request_ids(target, compacted_messages))
        compaction["tokensAfter"] = after
        if after >= before:
            raise refuse(f"would not shrink by compacting ({before} -> {after} tokens)")
        store.append(ref, [compaction])
        store.touch(ref, totalTokens=after, sessionTokens=after)
        self.counters["compactions"] += 1
        report = {
            "sessionId": ref.session_id,
            "engine": target.engine,
            "summary": compaction["summary"],
            "firstKeptEntryId": plan.first_kept_id,
            "summarizedEntries": len(plan.summarized),
            "keptEntries": len(plan.kept),
            "tokensBefore": before,
            "tokensAfter": after,
            # What the summary cost, by the server's own report: a continuation
            # prefills only the instruction (None: the server does not report).
            "summaryPrefillTokens": made.usage["input"],
            "summaryCachedTokens": made.server.cached,
            "summaryCacheTier": f"upstream:{target.provider.id}",
            "summaryOutputTokens": made.usage["output"],
            "summaryChunks": 1,
            "summaryMs": summary_ms,
        }
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
        return compacted, report

    def prefill_ahead(
        self,
        target: Target,
        ref: SessionRef,
        entries: list[dict[str, Any]],
        system: str,
        ctx: TurnContext,
    ) -> dict[str, Any]:
        """Send the compacted layout with a one-token reply, so the upstream holds
        it when the next user turn comes; what that cost, by the server's report."""
        native = is_native(self.targets.config(), target)
        messages = session_messages(self.transcript, native, entries, system)
        started = time.perf_counter()
        try:
            made = UpstreamCalls(self.targets, self.tags).call(
                [target],
                messages,
                SUMMARY_CALL,
                1,
                CallContext(ctx.trace, lambda frame: None, ctx.cancelled, 0),
                hide_calls=False,
                cache_key=ref.session_id,
                # The turns' tools too (none called), so the server renders their head.
                native=NativeRequest("none") if native else None,
            )
        except OpenClawError as exc:
            # The compaction is written already: say the prefill failed, do not fail
            # the command (running it again would compact twice).
            return {"prefillAheadTokens": 0, "prefillAheadError": exc.message}
        self.counters["prefilledAhead"] += 1
        return {
            "prefillAheadTokens": made.usage["input"],
            "prefillAheadCachedTokens": made.server.cached,
            "prefillAheadMs": round((time.perf_counter() - started) * 1000.0, 1),
        }
