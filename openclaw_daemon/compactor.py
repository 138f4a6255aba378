"""Compact a session without making the user pay a cold re-prefill.

1. **Summary as a fork.** The summarisation instruction is appended to the
   session's cached prompt, so only the instruction is prefilled; the summary
   is generated there. Never a separate, cold prompt.
2. **New layout.** [stable head][summary][recent tail] (``sessions.compaction``
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
from typing import TYPE_CHECKING, Any

from openclaw_daemon.errors import BadRequestError, CancelledError
from openclaw_daemon.model_calls import CallContext
from openclaw_daemon.tracing import Trace
from sessions.compaction import CompactionSettings, plan_compaction
from sessions.prompt import message_text
from sessions.store import SessionRef, SessionStore, last_entry_id, new_entry_id, now_iso

if TYPE_CHECKING:
    from openclaw_daemon.turn import TurnPipeline

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


class Compactor:
    def __init__(self, pipeline: TurnPipeline) -> None:
        self.pipeline = pipeline
        self.settings = CompactionSettings.for_window(pipeline.engine.info.n_ctx)
        self.counters = {
            "compactions": 0,
            "prefilledAhead": 0,
            "prefillAheadPreempted": 0,
            "prefillAheadSkipped": 0,
        }
        # Per session: what its last compaction cost and saved, reported (then
        # dropped) with the session's next turn.
        self.reports: dict[str, dict[str, Any]] = {}

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
        pipeline = self.pipeline
        trace = trace or Trace()
        entries = store.load_entries(ref)
        system = pipeline.session_head(ref)
        tape, _ = pipeline._tape_for(ref, entries, system)
        plan = plan_compaction(
            entries, self._tokens, self.settings.keep_recent, keep_last_turn=not overflow
        )
        if plan is None or not tape.messages:
            raise BadRequestError(
                f"session {ref.session_id} is too short to compact: it needs at least two turns"
            )
        instruction = INSTRUCTION + (f" {instructions.strip()}" if instructions else "")
        fork = pipeline.builder.plan_turn(tape, [{"role": "user", "content": instruction}])
        decision = pipeline.cache.apply(pipeline.cache.plan(fork.tokens), fork.tokens)
        call = CallContext(trace, emit, cancelled, 0)
        started = time.perf_counter()
        reused = pipeline.calls.prefill(fork, call)
        generation = pipeline.calls.decode(
            {"temperature": 0.0}, SUMMARY_MAX_TOKENS, call, grammar=None, hide_calls=False
        )
        summary = generation.text.strip() or "(no summary)"
        compaction = {
            "type": "compaction",
            "id": new_entry_id(),
            "parentId": last_entry_id(entries),
            "timestamp": now_iso(),
            "summary": summary,
            "firstKeptEntryId": plan.first_kept_id,
            "tokensBefore": len(tape.tokens),
        }
        messages = pipeline._messages([*entries, compaction], system)
        new_tape = pipeline.builder.from_messages(messages)
        new_tape.last_entry_id = str(compaction["id"])
        compaction["tokensAfter"] = len(new_tape.tokens)
        store.append(ref, [compaction])
        pipeline.adopt_tape(ref, new_tape)
        self.counters["compactions"] += 1
        summary_ms = round((time.perf_counter() - started) * 1000.0, 1)
        self.reports[ref.key] = {
            "tokensBefore": compaction["tokensBefore"],
            "tokensAfter": compaction["tokensAfter"],
            "summaryPrefillTokens": len(fork.tokens) - reused,
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
            "summaryPrefillTokens": len(fork.tokens) - reused,
            "summaryCachedTokens": reused,
            "summaryCacheTier": decision.tier,
            "summaryOutputTokens": len(generation.ids),
            "summaryMs": summary_ms,
        }

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
        return len(self.pipeline.engine.tokenize(text, add_bos=False)) + 5  # + role markup

    def prefill_ahead(self, ref: SessionRef, should_stop: Callable[[], bool]) -> bool:
        """Prefill the session's (compacted) tape and park it; False if preempted.

        A preempted job leaves its progress in the live context, which is
        parked before anything overwrites it, so the next attempt resumes.
        """
        pipeline = self.pipeline
        tape = pipeline.tapes.get(ref.key)
        if tape is None or not tape.tokens:
            return True
        tokens = tape.tokens
        started = time.perf_counter()
        plan = pipeline.cache.plan(tokens)
        # The cost model decides: prefill ahead only what would make the next
        # turn wait noticeably (measured prefill rate).
        expected_s = (len(tokens) - plan.cached) / pipeline.cache.costs.prefill_tok_s.value
        if expected_s < MIN_PREFILL_AHEAD_S:
            self.counters["prefillAheadSkipped"] += 1
            return True
        pipeline.cache.apply(plan, tokens)
        try:
            reused = pipeline.engine.prefill(
                tokens,
                batch_size=min(pipeline.calls.prefill_batch, BACKGROUND_PREFILL_BATCH),
                cancelled=should_stop,
            )
        except CancelledError:
            log.info("prefill ahead of %s preempted by a turn; will resume", ref.session_id)
            self.counters["prefillAheadPreempted"] += 1
            return False
        pipeline.cache.live_label = ref.session_id
        pipeline.cache.checkpoint()
        self.counters["prefilledAhead"] += 1
        report = self.reports.get(ref.key)
        if report is not None:
            report["prefillAheadTokens"] += len(tokens) - reused
            report["prefillAheadMs"] += round((time.perf_counter() - started) * 1000.0, 1)
        log.info("prefilled %s's compacted layout ahead (%d tokens)", ref.session_id, len(tokens))
        return True
