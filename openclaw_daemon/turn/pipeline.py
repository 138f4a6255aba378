"""The pipeline for one agent turn, one trace span per phase.

session.load -> prompt.render -> prompt.tokenize -> cache.lookup ->
[cache.restore] -> model.prefill -> model.decode -> session.persist. Runs on
the model worker thread; talks to the connection only through
``TurnContext.emit``. The turn's result carries its spans and cache report;
the handler stores the turn's trace record once the client has reported its
own spans (see ``turn_record``).

This module only orders the phases: the tapes are ``session_tapes``', the
model and tool calls ``agent_loop``'s, the writes ``persist``'s, the result
``result``'s, and an overflow is the ``compactor``'s to resolve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openclaw_daemon.cache import cache_report
from openclaw_daemon.cache.prefix_cache import CachePlan, PrefixCache
from openclaw_daemon.config import Paths
from openclaw_daemon.model.chat_template import ChatMessage
from openclaw_daemon.model.tape import PromptPlan, TapeBuilder, TokenTape
from openclaw_daemon.turn import interrupted, result, window
from openclaw_daemon.turn.agent_loop import AgentLoop, Step
from openclaw_daemon.turn.compactor import Compactor
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.turn.options import TurnSettings, turn_settings
from openclaw_daemon.turn.persist import persist_turn
from openclaw_daemon.turn.session_load import load_session
from openclaw_daemon.turn.session_tapes import SessionTapes
from openclaw_daemon.turn.transcript import Transcript
from openclaw_daemon.wire.errors import ContextOverflowError, KvSlotError
from openclaw_daemon.wire.messages import TurnResult
from openclaw_daemon.wire.requests import TurnOptions
from openclaw_sessions.store import SessionRef, SessionStore

if TYPE_CHECKING:
    from openclaw_daemon.model.base import KVEngine


@dataclass
class _Turn:
    """One turn's state as it moves through the phases."""

    settings: TurnSettings
    store: SessionStore
    ref: SessionRef
    entries: list[dict[str, Any]]
    tape: TokenTape
    user: ChatMessage
    request_id: str
    plan: PromptPlan
    overflowed: bool = False  # compacted to fit already
    decision: CachePlan | None = None
    restore_ms: float | None = None


class TurnPipeline:
    def __init__(
        self,
        engine: KVEngine,
        paths: Paths,
        *,
        cache: PrefixCache,
        builder: TapeBuilder,
        transcript: Transcript,
        tapes: SessionTapes,
        loop: AgentLoop,
        compactor: Compactor,
    ) -> None:
        self.engine = engine
        self.paths = paths
        self.cache = cache
        self.builder = builder
        self.transcript = transcript
        self.tapes = tapes
        self.loop = loop
        self.compactor = compactor
        self.turns_served = 0

    def run(self, options: TurnOptions, ctx: TurnContext) -> TurnResult:
        trace = ctx.trace
        behind = {"behind": ctx.waited_behind} if ctx.waited_behind else {}
        trace.add("lane.wait", ctx.received_at, trace.clock(), **behind)
        settings = turn_settings(options)
        if settings.call.thinking != "off":
            ctx.emit(
                {
                    "type": "notice",
                    "text": f"--thinking {settings.call.thinking}: ignored, the embedded model "
                    "has no thinking levels",
                }
            )
        system = self.transcript.head(settings.system)
        with trace.span("session.load") as span:
            loaded = load_session(self.paths, options, settings, ctx, span)
            store, ref, entries = loaded.store, loaded.ref, loaded.entries
            request_id, done = loaded.request_id, loaded.done
            if done is None:
                tape, span["tape"] = self.tapes.tape_for(ref, entries, system)
        if done is not None:
            return result.replayed(ref, done, ctx, self.engine.info)
        user = {"role": "user", "content": options.message}
        plan = self._render(tape, entries, system, user, ctx)
        turn = _Turn(settings, store, ref, entries, tape, user, request_id, plan)
        self._fit(turn, ctx)
        compacted = self.compactor.turn_report(ref, self.cache.costs.prefill_tok_s.value)
        self._use_cache(turn, ctx)
        # From here the live context holds this session's tokens, even if the
        # turn fails mid-way: the next divergence report must name this session.
        self.cache.live_label = ref.session_id
        steps = self._answer(turn, ctx)
        # Explained after the reply streamed: a divergence report detokenizes
        # and renders the transcript, which must not delay the first token.
        with trace.span("cache.report"):
            assert turn.decision is not None
            report = cache_report.build(
                self.engine,
                self.engine.template,
                turn.plan.messages,
                turn.plan.tokens,
                turn.decision,
                restore_ms=turn.restore_ms,
            )
        with trace.span("session.persist"):
            self._persist(turn, steps)
        self.turns_served += 1
        self.compactor.after_turn(ref, store, len(steps[-1].tape.tokens))
        return result.turn_result(
            ref, steps, ctx, self.engine.info, cache=report, compaction=compacted
        )

    def _render(
        self,
        tape: TokenTape,
        entries: list[dict[str, Any]],
        system: str,
        user: ChatMessage,
        ctx: TurnContext,
    ) -> PromptPlan:
        """The turn's prompt: the user message on the session's tape (a new
        tape starts with the transcript rendered)."""
        with ctx.trace.span("prompt.render"):
            new = [user] if tape.messages else [*self.transcript.messages(entries, system), user]
            messages, full = self.builder.render_turn(tape, new)
        with ctx.trace.span("prompt.tokenize") as span:
            plan = self.builder.tokenize_turn(tape, messages, full)
            span["tokens"] = plan.appended
        return plan

    def _fit(self, turn: _Turn, ctx: TurnContext) -> None:
        """Compact first if the prompt does not fit; ContextOverflowError if it
        still does not."""
        max_tokens = turn.settings.max_tokens
        fits = window.admits(len(turn.plan.tokens), self.engine.info.n_ctx, max_tokens)
        if not fits and turn.tape.messages:
            # Overflow, or no room left to reply: compact (the summary is a fork
            # of the cached prompt), then retry the turn once on the new layout.
            self._compact_to_fit(turn, ctx)
            turn.overflowed = True
        self._check_fits(turn.plan, max_tokens)

    def _answer(self, turn: _Turn, ctx: TurnContext) -> list[Step]:
        """The agent loop's steps; a stop keeps what the user saw, then raises
        the error that stopped it."""
        try:
            try:
                return self.loop.run(turn.plan, ctx, turn.settings)
            except interrupted.Interrupted as stop:
                # llama.cpp found no KV slot for the prompt: the same overflow,
                # seen late. Compact and retry once, unless that was done already
                # or the user has seen part of a reply.
                late_overflow = isinstance(stop.error, KvSlotError) and turn.tape.messages
                if not late_overflow or turn.overflowed or interrupted.worth_keeping(stop.steps):
                    raise
                self._compact_to_fit(turn, ctx)
                self._use_cache(turn, ctx)
                return self.loop.run(turn.plan, ctx, turn.settings)
        except interrupted.Interrupted as stop:
            # What the user already saw is kept, marked as interrupted.
            if interrupted.worth_keeping(stop.steps):
                with ctx.trace.span("session.persist", interrupted=stop.error.code):
                    self._persist(turn, stop.steps)
            raise stop.error from None

    def _compact_to_fit(self, turn: _Turn, ctx: TurnContext) -> None:
        turn.entries, turn.tape, turn.plan = self.compactor.compact_to_fit(
            turn.ref,
            turn.store,
            turn.user,
            turn.settings.max_tokens,
            cancelled=ctx.cancelled,
            emit=ctx.emit,
            trace=ctx.trace,
        )

    def _persist(self, turn: _Turn, steps: list[Step]) -> None:
        persist_turn(
            turn.store,
            turn.ref,
            turn.entries,
            turn.settings.message,
            steps,
            request_id=turn.request_id,
            info=self.engine.info,
            tapes=self.tapes,
        )

    def _check_fits(self, plan: PromptPlan, max_tokens: int) -> None:
        n_ctx = self.engine.info.n_ctx
        if not window.admits(len(plan.tokens), n_ctx, max_tokens):
            raise ContextOverflowError(
                f"the prompt is {len(plan.tokens)} tokens but the model's context window "
                f"holds {n_ctx}, with {window.reply_room(max_tokens)} needed for the reply",
                hint="Shorten the message, compact the session (openclaw sessions compact "
                "ID), or start a new session with --session-id NEW.",
            )

    def _use_cache(self, turn: _Turn, ctx: TurnContext) -> None:
        """Look the prompt up in every tier and restore the best prefix into L1."""
        trace, tokens = ctx.trace, turn.plan.tokens
        with trace.span("cache.lookup") as span:
            decision = self.cache.plan(tokens)
            span.update(cachedTokens=decision.cached, tier=decision.tier)
        start = trace.clock()
        decision = self.cache.apply(decision, tokens)
        end = trace.clock()
        turn.decision, turn.restore_ms = decision, None
        if decision.entry is not None or decision.parked or decision.notices:
            turn.restore_ms = round((end - start) * 1000.0, 3)
        # Always a span, even for the live context (L1), where it is trimming the
        # KV cache past the reused prefix: every millisecond of the turn is in one.
        trace.add(
            "cache.restore",
            start,
            end,
            tier=decision.tier,
            tokens=decision.cached,
            parkedTokens=decision.parked,
            restored=decision.entry is not None,
        )
        for notice in decision.notices:
            ctx.emit({"type": "notice", "text": notice})
