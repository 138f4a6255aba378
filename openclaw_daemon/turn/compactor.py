"""Compact a session without making the user pay a cold re-prefill.

1. **Summary as a fork.** The summarisation instruction is appended to the
   session's cached prompt, so only the instruction is prefilled; the summary
   is generated there. Never a separate, cold prompt. A session too full for
   that (no room left for the instruction and the summary) is summarised in
   chunks, the first a fork of its longest cached prefix that fits
   (``window.summary_chunks``).
2. **New layout.** [stable head][summary][recent tail] (``openclaw_sessions.compaction``
   chooses the cut) becomes the session's tape; a ``compaction`` entry records
   it, and every old entry stays in the file.
3. **Prefill ahead.** While the daemon is idle, the new layout is prefilled and
   parked, so the next user turn is a cache hit. It is preemptible: a
   foreground turn wins, and the job resumes later from whatever the cache
   holds by then (the head, shared by every session, is already there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openclaw_daemon.cache.prefix_cache import PrefixCache
from openclaw_daemon.model.chat_template import ChatMessage
from openclaw_daemon.model.tape import PromptPlan, TapeBuilder, TokenTape
from openclaw_daemon.observability.tracing import Trace
from openclaw_daemon.turn import window
from openclaw_daemon.turn.model_calls import CallContext, CallOptions, ModelCalls
from openclaw_daemon.turn.session_tapes import SessionTapes
from openclaw_daemon.wire.errors import BadRequestError, CancelledError, ContextOverflowError
from openclaw_sessions.compaction import CompactionSettings, plan_compaction
from openclaw_sessions.prompt import message_text, summary_messages
from openclaw_sessions.store import SessionRef, SessionStore, last_entry_id, new_entry_id, now_iso

if TYPE_CHECKING:
    from openclaw_daemon.model.base import KVEngine

log = logging.getLogger("openclawd.compactor")

# Prefilling ahead pays when the next turn would otherwise wait longer than this.
MIN_PREFILL_AHEAD_S = 0.5
# Prefill ahead runs in small batches: a turn stops the batch in flight at once
# (the engine's abort), so what a preemption throws away is at most one batch;
# at 32 tokens that is ~0.3 s of work 6k tokens deep, at the same tok/s as 256
# (measured on 2 cores: 106 against 102 tok/s deep, 192 against 191 from empty).
BACKGROUND_PREFILL_BATCH = 32
INSTRUCTION = (
    "Summarize our conversation so far in a few sentences, for your own later use: "
    "the user's goals, the facts and decisions, and the files and results that matter."
)
SUMMARY_MAX_TOKENS = 192
# A summary is greedy: the same session compacts to the same summary.
SUMMARY_CALL = CallOptions(temperature=0.0)
# Tokens a clipped message's markup and cut marker take beyond its text.
CLIP_MARKUP = 24


@dataclass
class _Summary:
    """A summary and what generating it cost, summed over its chunks."""

    text: str = ""
    reused: int = 0
    prefilled: int = 0
    output: int = 0
    tier: str = ""
    chunks: int = 1


class Compactor:
    """Compacts sessions: on request, when a turn overflows, and in idle time for
    the sessions a turn left past the threshold (``due``)."""

    def __init__(
        self,
        engine: KVEngine,
        cache: PrefixCache,
        tapes: SessionTapes,
        builder: TapeBuilder,
        calls: ModelCalls,
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.tapes = tapes
        self.builder = builder
        self.calls = calls
        self.settings = CompactionSettings.for_window(engine.info.n_ctx)
        self.counters = {
            "compactions": 0,
            "prefilledAhead": 0,
            "prefillAheadPreempted": 0,
            "prefillAheadSkipped": 0,
        }
        # Per session: what its last compaction cost and saved, reported (then
        # dropped) with the session's next turn.
        self.reports: dict[str, dict[str, Any]] = {}
        # Sessions whose last turn crossed the compaction threshold, for the
        # daemon to compact (and prefill ahead) once it is idle.
        self.due: dict[str, tuple[SessionRef, SessionStore]] = {}

    def after_turn(self, ref: SessionRef, store: SessionStore, tokens: int) -> None:
        """Note a session a turn left at ``tokens``: past the threshold, it is due."""
        if self.settings.needs_compaction(tokens):
            self.due[ref.key] = (ref, store)

    def take_due(self) -> list[tuple[SessionRef, SessionStore]]:
        """The sessions due for compaction, each handed out once."""
        # Newest first, as they were popped before.
        due, self.due = list(reversed(self.due.values())), {}
        return due

    def compact(
        self,
        ref: SessionRef,
        store: SessionStore,
        *,
        instructions: str | None = None,
        overflow: bool = False,
        emit: Callable[[dict[str, Any]], None] = lambda frame: None,
        cancelled: Callable[[], bool] = lambda: False,
        trace: Trace | None = None,
    ) -> dict[str, Any]:
        """Summarise the session's older turns on a fork of its cached prompt and
        record the compaction; the new layout is prefilled later (``prefill_ahead``)."""
        trace = trace or Trace()
        entries = store.load_entries(ref)
        system = self.tapes.session_head(ref)
        tape, _ = self.tapes.tape_for(ref, entries, system)
        plan = plan_compaction(
            entries, self._tokens, self.settings.keep_recent, keep_last_turn=not overflow
        )
        if plan is None or not tape.messages:
            raise BadRequestError(
                f"session {ref.session_id} is too short to compact: it needs at least two turns"
            )
        instruction = INSTRUCTION + (f" {instructions.strip()}" if instructions else "")
        call = CallContext(trace, emit, cancelled, 0)
        started = time.perf_counter()
        made = self._summarise(tape, {"role": "user", "content": instruction}, call)
        summary = made.text.strip() or "(no summary)"
        compaction = self._write(ref, store, entries, system, tape, summary, plan.first_kept_id)
        self.counters["compactions"] += 1
        summary_ms = round((time.perf_counter() - started) * 1000.0, 1)
        self.reports[ref.key] = {
            "tokensBefore": compaction["tokensBefore"],
            "tokensAfter": compaction["tokensAfter"],
            "summaryPrefillTokens": made.prefilled,
            "summaryMs": summary_ms,
            "prefillAheadTokens": 0,
            "prefillAheadMs": 0.0,
        }
        return {
            "sessionId": ref.session_id,
            "summary": summary,
            "firstKeptEntryId": plan.first_kept_id,
            "summarizedEntries": len(plan.summarized),
            "keptEntries": len(plan.kept),
            "tokensBefore": compaction["tokensBefore"],
            "tokensAfter": compaction["tokensAfter"],
            # What the summary itself cost: only the instruction should be prefilled.
            "summaryPrefillTokens": made.prefilled,
            "summaryCachedTokens": made.reused,
            "summaryCacheTier": made.tier,
            "summaryOutputTokens": made.output,
            # More than 1 when the session was too full to fork whole (see ``window``).
            "summaryChunks": made.chunks,
            "summaryMs": summary_ms,
        }

    def _write(
        self,
        ref: SessionRef,
        store: SessionStore,
        entries: list[dict[str, Any]],
        system: str,
        tape: TokenTape,
        summary: str,
        first_kept_id: str | None,
    ) -> dict[str, Any]:
        """Record the compaction entry and adopt the new layout as the session's
        tape; BadRequestError (nothing written) if it would not shrink the session."""
        compaction: dict[str, Any] = {
            "type": "compaction",
            "id": new_entry_id(),
            "parentId": last_entry_id(entries),
            "timestamp": now_iso(),
            "summary": summary,
            "firstKeptEntryId": first_kept_id,
            "tokensBefore": len(tape.tokens),
        }
        new_tape = self.tapes.rebuild([*entries, compaction], system)
        new_tape.last_entry_id = str(compaction["id"])
        compaction["tokensAfter"] = after = len(new_tape.tokens)
        if after >= len(tape.tokens):
            # A compaction that does not shrink the session only adds a summary.
            raise BadRequestError(
                f"compacting session {ref.session_id} would not shrink it "
                f"({len(tape.tokens)} -> {after} tokens); nothing was written"
            )
        store.append(ref, [compaction])
        # ``sessions list`` shows the session's size: now the compacted layout's.
        after = compaction["tokensAfter"]
        store.touch(ref, totalTokens=after, sessionTokens=after)
        self.tapes.adopt_tape(ref, new_tape)
        return compaction

    def compact_to_fit(
        self,
        ref: SessionRef,
        store: SessionStore,
        user: ChatMessage,
        max_tokens: int,
        *,
        cancelled: Callable[[], bool],
        emit: Callable[[dict[str, Any]], None],
        trace: Trace,
    ) -> tuple[list[dict[str, Any]], TokenTape, PromptPlan]:
        """The overflow path of a turn: compact, then plan the turn again on the
        compacted layout; ContextOverflowError if it still leaves no room."""
        with trace.span("session.compact", trigger="overflow") as span:
            try:
                report = self.compact(ref, store, overflow=True, cancelled=cancelled, trace=trace)
            except BadRequestError as exc:  # too short, or would not shrink
                raise ContextOverflowError(
                    f"the prompt does not fit the context window and {exc.message}",
                    hint="Shorten the message or start a new session with --session-id NEW.",
                ) from exc
            span["tokens"] = report["tokensBefore"]
            span["tokensAfter"] = report["tokensAfter"]
            span["summaryChunks"] = report["summaryChunks"]
            entries = store.load_entries(ref)
            tape = self.tapes.get(ref)
            assert tape is not None  # the compaction adopted its new layout
            plan = self.builder.plan_turn(tape, [user])
        emit(
            {
                "type": "notice",
                "text": f"compacted the session to fit: "
                f"{report['tokensBefore']} -> {report['tokensAfter']} tokens",
            }
        )
        n_ctx = self.engine.info.n_ctx
        if not window.admits(len(plan.tokens), n_ctx, max_tokens):
            raise ContextOverflowError(
                f"the prompt is {len(plan.tokens)} tokens even after compaction; the model's "
                f"context window holds {n_ctx} and the reply needs "
                f"{window.reply_room(max_tokens)}",
                hint="Shorten the message or start a new session with --session-id NEW.",
            )
        return entries, tape, plan

    def _summarise(self, tape: TokenTape, instruction: ChatMessage, call: CallContext) -> _Summary:
        """The summary of everything on ``tape``: one fork of it if that leaves room
        for the instruction and the summary, else chunk by chunk (``window``)."""
        builder = self.builder
        n_ctx = self.engine.info.n_ctx
        fork = builder.plan_turn(tape, [instruction])
        if len(fork.tokens) + SUMMARY_MAX_TOKENS <= n_ctx:
            return self._summary_call(fork, call, _Summary())
        # Too full to fork whole: every rendered prefix's size, to plan the chunks.
        prefixes = [
            len(builder.from_messages(tape.messages[: i + 1]).tokens)
            for i in range(len(tape.messages))
        ]
        try:
            chunks = window.summary_chunks(
                prefixes,
                n_ctx,
                reserve=fork.appended + SUMMARY_MAX_TOKENS,
                carry=SUMMARY_MAX_TOKENS + window.SUMMARY_CARRY_MARKUP,
            )
        except ValueError as exc:
            raise ContextOverflowError(f"cannot summarise the session: {exc}") from exc
        made = _Summary()
        head = tape.messages[0]
        for chunk in chunks:
            part = list(tape.messages[chunk.start : chunk.end])
            if chunk.clip:
                part[0] = self._clip(part[0], chunk.budget - CLIP_MARKUP)
            carried = summary_messages(made.text.strip()) if made.text.strip() else []
            base = builder.from_messages([head, *carried, *part])
            made = self._summary_call(builder.plan_turn(base, [instruction]), call, made)
        made.chunks = len(chunks)
        log.info(
            "summarised an over-full session (%d tokens) in %d chunks",
            len(tape.tokens),
            len(chunks),
        )
        return made

    def _summary_call(self, fork: PromptPlan, call: CallContext, made: _Summary) -> _Summary:
        """One summary generated on ``fork``; its costs added to ``made``'s."""
        n_ctx = self.engine.info.n_ctx
        room = n_ctx - len(fork.tokens)
        if room < window.MIN_REPLY_ROOM:
            raise ContextOverflowError(
                f"no room for a summary: its prompt is {len(fork.tokens)} tokens of {n_ctx}"
            )
        decision = self.cache.apply(self.cache.plan(fork.tokens), fork.tokens)
        reused = self.calls.prefill(fork, call)
        generation = self.calls.decode(
            SUMMARY_CALL,
            min(SUMMARY_MAX_TOKENS, room),
            call,
            grammar=None,
            hide_calls=False,
        )
        return _Summary(
            # A chunk the model had nothing to say about keeps the summary so far.
            text=generation.text if generation.text.strip() else made.text,
            reused=made.reused + reused,
            prefilled=made.prefilled + len(fork.tokens) - reused,
            output=made.output + len(generation.ids),
            tier=made.tier or decision.tier,
            chunks=1,
        )

    def _clip(self, message: ChatMessage, budget: int) -> ChatMessage:
        """``message`` with its text cut to ``budget`` tokens, marked as cut."""
        engine = self.engine
        ids = engine.tokenize(str(message["content"]), add_bos=False)[: max(1, budget)]
        text = engine.detokenize(ids).decode("utf-8", errors="ignore")
        return {**message, "content": text + " [...cut to fit the context window]"}

    def turn_report(self, ref: SessionRef, prefill_tok_s: float) -> dict[str, Any] | None:
        """What the session's last compaction cost and, by the cost model's measured
        prefill rate, saved this turn: its prefill-ahead tokens, not prefilled now."""
        report = self.reports.pop(ref.key, None)
        if report is None:
            return None
        saved_s = report["prefillAheadTokens"] / prefill_tok_s if prefill_tok_s > 0 else 0.0
        cost_s = (report["summaryMs"] + report["prefillAheadMs"]) / 1000.0
        return {
            **report,
            "savedS": round(saved_s, 2),
            "summary": (
                f"the session was compacted ({report['tokensBefore']:,} -> "
                f"{report['tokensAfter']:,} tokens); it cost {cost_s:.1f} s of idle time "
                f"(summary {report['summaryMs'] / 1000:.1f} s, prefilling "
                f"{report['prefillAheadTokens']:,} tokens ahead "
                f"{report['prefillAheadMs'] / 1000:.1f} s) and saved about {saved_s:.1f} s "
                "before this turn's first token"
            ),
        }

    def _tokens(self, entry: dict[str, Any]) -> int:
        message = entry.get("message", {})
        calls = [
            b
            for b in message.get("content", [])
            if isinstance(b, dict) and b.get("type") == "toolCall"
        ]
        text = message_text(message) + "".join(str(c.get("arguments")) for c in calls)
        return len(self.engine.tokenize(text, add_bos=False)) + 5  # + role markup

    def prefill_ahead(self, ref: SessionRef, should_stop: Callable[[], bool]) -> bool:
        """Prefill the session's (compacted) tape and park it; False if preempted.

        A preempted job leaves its progress in the live context, which is
        parked before anything overwrites it, so the next attempt resumes.
        """
        tape = self.tapes.get(ref)
        if tape is None or not tape.tokens:
            return True
        tokens = tape.tokens
        started = time.perf_counter()
        plan = self.cache.plan(tokens)
        # The cost model decides: prefill ahead only what would make the next
        # turn wait noticeably (measured prefill rate).
        expected_s = (len(tokens) - plan.cached) / self.cache.costs.prefill_tok_s.value
        if expected_s < MIN_PREFILL_AHEAD_S:
            self.counters["prefillAheadSkipped"] += 1
            return True
        self.cache.apply(plan, tokens)
        try:
            reused = self.engine.prefill(
                tokens,
                batch_size=min(self.calls.prefill_batch, BACKGROUND_PREFILL_BATCH),
                cancelled=should_stop,
            )
        except CancelledError:
            log.info("prefill ahead of %s preempted by a turn; will resume", ref.session_id)
            self.counters["prefillAheadPreempted"] += 1
            return False
        self.cache.live_label = ref.session_id
        self.cache.checkpoint()
        self.counters["prefilledAhead"] += 1
        report = self.reports.get(ref.key)
        if report is not None:
            report["prefillAheadTokens"] += len(tokens) - reused
            report["prefillAheadMs"] += round((time.perf_counter() - started) * 1000.0, 1)
        log.info("prefilled %s's compacted layout ahead (%d tokens)", ref.session_id, len(tokens))
        return True
