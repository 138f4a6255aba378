"""The pipeline for one agent turn, one trace span per phase.

session.load -> prompt.render -> prompt.tokenize -> cache.lookup ->
[cache.restore] -> model.prefill -> model.decode -> session.persist. Runs on
the model worker thread; talks to the connection only through
``TurnContext.emit``. Each turn's record (usage, cache report, spans) is
appended to the turn log for ``openclaw doctor``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openclaw_daemon import cache_report
from openclaw_daemon.config import Paths
from openclaw_daemon.errors import BadRequestError, ContextOverflowError
from openclaw_daemon.prefix_cache import CachePlan, PrefixCache
from openclaw_daemon.tape import PromptPlan, TapeBuilder, TokenTape
from openclaw_daemon.tape_store import TapeStore
from openclaw_daemon.text_stream import TextStream
from openclaw_daemon.tracing import Trace, TurnLog
from sessions.prompt import SYSTEM_PROMPT, chat_messages
from sessions.store import SessionRef, SessionStore, last_entry_id, new_entry_id, now_iso, now_ms

if TYPE_CHECKING:
    from openclaw_daemon.engine import Engine

PROVIDER = "openclaw-edge"
API = "llama.cpp"
DEFAULT_MAX_TOKENS = 512


@dataclass
class TurnContext:
    trace: Trace
    emit: Callable[[dict[str, Any]], None]
    cancelled: Callable[[], bool]
    received_at: float


@dataclass
class Generation:
    text: str
    ids: list[int]
    stop_reason: str
    first_token_at: float | None


class TurnPipeline:
    def __init__(
        self, engine: Engine, paths: Paths, *, prefill_batch: int, cache: PrefixCache
    ) -> None:
        self.engine = engine
        self.paths = paths
        self.cache = cache
        self.turn_log = TurnLog(paths.turns_file)
        self.prefill_batch = prefill_batch
        self.builder = TapeBuilder(engine.template, engine, add_bos=engine.add_bos)
        self.tapes: dict[str, TokenTape] = {}  # by session key
        self.saved_tapes = TapeStore(
            paths.state_dir / "cache" / "tapes",
            cache.store.dir.name,
            n_vocab=engine.llama.n_vocab(),
        )
        # Tapes changed since the last park, with what ``TapeStore.save`` needs.
        self._unsaved: dict[str, tuple[SessionRef, TokenTape, str]] = {}
        self.turns_served = 0

    def run(self, request: dict[str, Any], ctx: TurnContext) -> dict[str, Any]:
        trace = ctx.trace
        trace.add("lane.wait", ctx.received_at, trace.clock())
        message = request.get("message")
        if not isinstance(message, str) or not message.strip():
            raise BadRequestError("the turn has no message text", hint="Pass one with -m TEXT.")
        agent_id = str(request.get("agent_id") or "main")
        system = str(request.get("system") or SYSTEM_PROMPT)
        with trace.span("session.load") as span:
            store = SessionStore(self.paths.agent_sessions_dir(agent_id), agent_id)
            ref = store.resolve(request.get("session_id"))
            entries = store.load_entries(ref)
            tape, span["tape"] = self._tape_for(ref, entries, system)
        user = {"role": "user", "content": message}
        with trace.span("prompt.render"):
            new = [user] if tape.messages else [*chat_messages(entries, system_prompt=system), user]
            messages, full = self.builder.render_turn(tape, new)
        with trace.span("prompt.tokenize") as span:
            plan = self.builder.tokenize_turn(tape, messages, full)
            span["tokens"] = plan.appended
        max_tokens = self._check_fits(plan, int(request.get("max_tokens") or DEFAULT_MAX_TOKENS))
        decision, restore_ms = self._use_cache(plan, ctx)
        reused = self._prefill(plan, ctx)
        generation = self._decode(request, max_tokens, ctx)
        # Explained after the reply streamed: a divergence report detokenizes
        # and renders the transcript, which must not delay the first token.
        report = cache_report.build(
            self.engine,
            self.engine.template,
            plan.messages,
            plan.tokens,
            decision,
            restore_ms=restore_ms,
        )
        self.cache.live_label = ref.session_id
        with trace.span("session.persist"):
            usage = self._usage(plan, reused, generation)
            self._persist(store, ref, entries, message, generation, usage, plan)
        self.turns_served += 1
        result = self._result(ref, generation, usage, trace, ctx)
        result["cache"] = report
        self.turn_log.append(
            {key: result[key] for key in ("at", "sessionId", "agentId", "usage", "ttftMs")}
            | {"cache": report, "spans": trace.spans}
        )
        return result

    # -- phases ----------------------------------------------------------------
    def _tape_for(
        self, ref: SessionRef, entries: list[dict[str, Any]], system: str
    ) -> tuple[TokenTape, str]:
        """The session's tape, and where it came from (for the trace)."""
        last = last_entry_id(entries)
        if last is None:
            return TokenTape(), "new"
        tape = self.tapes.get(ref.key)
        if (
            tape is not None
            and tape.last_entry_id == last
            and tape.messages[0]["content"] == system
        ):
            return tape, "memory"
        messages = chat_messages(entries, system_prompt=system)
        saved = self.saved_tapes.load(ref, last, system)
        if saved is not None:
            text = self.engine.template.render(messages, add_generation_prompt=False)
            return TokenTape(saved, text, messages, last), "saved"
        # Edited elsewhere, a new system prompt, or never saved: rebuild from
        # the transcript (re-tokenized replies may not match the cached ids).
        tape = self.builder.from_messages(messages)
        tape.last_entry_id = last
        return tape, "rebuilt"

    def park(self) -> None:
        """Idle-time work after a turn: park the live KV state and save changed tapes."""
        self.cache.checkpoint()
        while self._unsaved:
            _key, (ref, tape, system) = self._unsaved.popitem()
            if tape.last_entry_id is not None:
                self.saved_tapes.save(ref, tape.tokens, tape.last_entry_id, system)

    def _check_fits(self, plan: PromptPlan, max_tokens: int) -> int:
        n_ctx = self.engine.info.n_ctx
        if len(plan.tokens) >= n_ctx:
            raise ContextOverflowError(
                f"the prompt is {len(plan.tokens)} tokens but the model's context window "
                f"holds {n_ctx}",
                hint="Shorten the message or start a new session with --session-id NEW "
                "(compaction is not available yet).",
            )
        return max(1, min(max_tokens, n_ctx - len(plan.tokens)))

    def _use_cache(self, plan: PromptPlan, ctx: TurnContext) -> tuple[CachePlan, float | None]:
        """Look the prompt up in every tier and restore the best prefix into L1."""
        trace = ctx.trace
        with trace.span("cache.lookup") as span:
            decision = self.cache.plan(plan.tokens)
            span.update(cachedTokens=decision.cached, tier=decision.tier)
        start = trace.clock()
        decision = self.cache.apply(decision, plan.tokens)
        end = trace.clock()
        restore_ms = None
        if decision.entry is not None or decision.parked or decision.notices:
            restore_ms = round((end - start) * 1000.0, 3)
            trace.add(
                "cache.restore",
                start,
                end,
                tier=decision.tier,
                tokens=decision.cached,
                parkedTokens=decision.parked,
            )
        for notice in decision.notices:
            ctx.emit({"type": "notice", "text": notice})
        return decision, restore_ms

    def _prefill(self, plan: PromptPlan, ctx: TurnContext) -> int:
        start = ctx.trace.clock()
        total_holder: dict[str, int] = {}

        def on_progress(done: int, total: int) -> None:
            total_holder["total"] = total
            elapsed = ctx.trace.clock() - start
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = (total - done) / rate if rate > 0 else 0.0
            ctx.emit(
                {
                    "type": "progress",
                    "phase": "prefill",
                    "done": done,
                    "total": total,
                    "rate": round(rate, 1),
                    "eta_s": round(eta, 2),
                }
            )

        reused = self.engine.prefill(
            plan.tokens,
            batch_size=self.prefill_batch,
            on_progress=on_progress,
            cancelled=ctx.cancelled,
        )
        end = ctx.trace.clock()
        prefilled = len(plan.tokens) - reused
        self.cache.observe_prefill(prefilled, end - start)
        ctx.trace.add(
            "model.prefill",
            start,
            end,
            tokens=prefilled,
            cachedTokens=reused,
            tokPerS=round(prefilled / (end - start), 1) if end > start else None,
        )
        return reused

    def _decode(self, request: dict[str, Any], max_tokens: int, ctx: TurnContext) -> Generation:
        from openclaw_daemon.engine import SamplingParams

        params = SamplingParams(
            temperature=float(request.get("temperature") or 0.0),
            seed=request.get("seed"),
        )
        stream = TextStream([str(s) for s in request.get("stop") or []])
        start = ctx.trace.clock()
        first_token_at: float | None = None
        ids: list[int] = []
        stop_reason = "length"
        for token in self.engine.generate(params, max_tokens=max_tokens, cancelled=ctx.cancelled):
            if first_token_at is None:
                first_token_at = ctx.trace.clock()
            if self.engine.is_end_of_generation(token):
                stop_reason = "stop"
                break
            ids.append(token)
            piece = stream.push(self.engine.detokenize([token]))
            if piece:
                ctx.emit({"type": "token", "text": piece})
            if stream.stopped:
                stop_reason = "stop"
                break
        tail = stream.finish()
        if tail:
            ctx.emit({"type": "token", "text": tail})
        end = ctx.trace.clock()
        ctx.trace.add(
            "model.decode",
            start,
            end,
            tokens=len(ids),
            firstTokenMs=round(ctx.trace.offset_ms(first_token_at), 3) if first_token_at else None,
            tokPerS=round(len(ids) / (end - start), 1) if ids and end > start else None,
        )
        return Generation(stream.text, ids, stop_reason, first_token_at)

    def _usage(self, plan: PromptPlan, reused: int, generation: Generation) -> dict[str, int]:
        # ``input`` counts every prompt token; ``cacheRead`` those the KV cache
        # already held; ``cacheWrite`` those prefilled (and now cached).
        prompt = len(plan.tokens)
        return {
            "input": prompt,
            "output": len(generation.ids),
            "cacheRead": reused,
            "cacheWrite": prompt - reused,
            "total": prompt + len(generation.ids),
        }

    def _persist(
        self,
        store: SessionStore,
        ref: SessionRef,
        entries: list[dict[str, Any]],
        message: str,
        generation: Generation,
        usage: dict[str, int],
        plan: PromptPlan,
    ) -> None:
        user_id, reply_id = new_entry_id(), new_entry_id()
        stamp = now_ms()
        user_entry = {
            "type": "message",
            "id": user_id,
            "parentId": last_entry_id(entries),
            "timestamp": now_iso(),
            "message": {
                "role": "user",
                "content": [{"type": "text", "text": message}],
                "timestamp": stamp,
            },
        }
        reply_entry = {
            "type": "message",
            "id": reply_id,
            "parentId": user_id,
            "timestamp": now_iso(),
            "message": {
                "role": "assistant",
                "content": [{"type": "text", "text": generation.text}],
                "api": API,
                "provider": PROVIDER,
                "model": self.engine.info.name,
                "usage": {
                    "input": usage["input"],
                    "output": usage["output"],
                    "cacheRead": usage["cacheRead"],
                    "cacheWrite": usage["cacheWrite"],
                    "totalTokens": usage["total"],
                    "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0},
                },
                "stopReason": generation.stop_reason,
                "timestamp": now_ms(),
            },
        }
        store.append(ref, [user_entry, reply_entry])
        store.touch(
            ref,
            modelProvider=PROVIDER,
            model=self.engine.info.name,
            contextTokens=self.engine.info.n_ctx,
            inputTokens=usage["input"],
            outputTokens=usage["output"],
            totalTokens=usage["total"],
            cacheRead=usage["cacheRead"],
            cacheWrite=usage["cacheWrite"],
        )
        tape = self.builder.commit_reply(plan, generation.ids, generation.text)
        tape.last_entry_id = reply_id
        self.tapes[ref.key] = tape
        self._unsaved[ref.key] = (ref, tape, str(plan.messages[0]["content"]))

    def _result(
        self,
        ref: SessionRef,
        generation: Generation,
        usage: dict[str, int],
        trace: Trace,
        ctx: TurnContext,
    ) -> dict[str, Any]:
        ttft = (
            (generation.first_token_at - ctx.received_at) * 1000.0
            if generation.first_token_at
            else None
        )
        return {
            "text": generation.text,
            "stopReason": generation.stop_reason,
            "sessionId": ref.session_id,
            "sessionKey": ref.key,
            "sessionFile": str(ref.file),
            "agentId": ref.agent_id,
            "provider": PROVIDER,
            "model": self.engine.info.name,
            "modelPath": self.engine.info.path,
            "contextTokens": self.engine.info.n_ctx,
            "usage": usage,
            "ttftMs": round(ttft, 3) if ttft is not None else None,
            "spans": trace.spans,
            "daemonMs": round(trace.offset_ms(), 3),
            "at": time.time(),
        }
