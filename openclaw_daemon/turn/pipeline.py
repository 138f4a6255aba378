"""The pipeline for one agent turn, one trace span per phase.

session.load -> prompt.render -> prompt.tokenize -> cache.lookup ->
[cache.restore] -> model.prefill -> model.decode -> session.persist. Runs on
the model worker thread; talks to the connection only through
``TurnContext.emit``. The turn's result carries its spans and cache report;
the handler stores the turn's trace record once the client has reported its
own spans (see ``turn_record``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openclaw_daemon.cache import cache_report
from openclaw_daemon.cache.prefix_cache import CachePlan, PrefixCache
from openclaw_daemon.config import Paths
from openclaw_daemon.model.tape import PromptPlan, TapeBuilder, TokenTape
from openclaw_daemon.observability.tracing import Trace
from openclaw_daemon.observability.turn_record import usage_buckets
from openclaw_daemon.tools import exec_tool
from openclaw_daemon.tools.grammar import (
    MAX_LISTED_FILES,
    check_choice,
    constrains,
    grammar_for,
    urls_in,
)
from openclaw_daemon.tools.runner import ToolContext, ToolOutcome, ToolRunner
from openclaw_daemon.tools.spec import (
    CALL_OPEN,
    PERMISSIONS,
    ParsedReply,
    ToolCall,
    format_call,
    format_result,
    parse_reply,
    tools_prompt,
)
from openclaw_daemon.tools.workspace import list_files
from openclaw_daemon.turn import interrupted, replay, tape_check, window
from openclaw_daemon.turn.compactor import Compactor
from openclaw_daemon.turn.model_calls import CallContext, Generation, ModelCalls
from openclaw_daemon.turn.tape_store import TapeStore
from openclaw_daemon.wire.errors import (
    BadRequestError,
    ContextOverflowError,
    KvSlotError,
    ModelError,
    OpenClawError,
)
from openclaw_sessions.entries import assistant_entry, tool_result_entry, user_entry
from openclaw_sessions.prompt import SYSTEM_PROMPT, chat_messages, head, results_message
from openclaw_sessions.store import SessionRef, SessionStore, last_entry_id, new_entry_id

if TYPE_CHECKING:
    from openclaw_daemon.model.base import ModelEngine

PROVIDER = "openclaw-edge"
API = "llama.cpp"
DEFAULT_MAX_TOKENS = 512
DEFAULT_MAX_STEPS = 6


@dataclass
class TurnContext:
    trace: Trace
    emit: Callable[[dict[str, Any]], None]
    cancelled: Callable[[], bool]
    received_at: float
    turn_id: str = ""
    session_key: str = ""  # once the session is resolved: a failed turn's record names it
    # What ran on the model worker while this turn waited for it (scheduler labels).
    waited_behind: list[str] = field(default_factory=list)


@dataclass
class Step:
    """One model call and the tool calls it made."""

    plan: PromptPlan
    generation: Generation
    usage: dict[str, int]
    parsed: ParsedReply
    tape: TokenTape  # the session's tape once this reply was committed to it
    outcomes: list[ToolOutcome] = field(default_factory=list)
    # The reply as it sits in the tape (calls as generated, a cut-off call
    # removed); stored as the entry's ``rawText`` so a re-render matches.
    raw: str = ""
    error: OpenClawError | None = None  # set on the step a stop interrupted


class TurnPipeline:
    def __init__(
        self, engine: ModelEngine, paths: Paths, *, prefill_batch: int, cache: PrefixCache
    ) -> None:
        self.engine = engine
        self.paths = paths
        self.cache = cache
        self.calls = ModelCalls(
            engine, prefill_batch=prefill_batch, observe_prefill=cache.observe_prefill
        )
        self.builder = TapeBuilder(engine.template, engine, add_bos=engine.add_bos)
        self.tools = ToolRunner(
            tokenize=lambda text: engine.tokenize(text, add_bos=False),
            detokenize=lambda ids: engine.detokenize(ids).decode("utf-8", errors="replace"),
        )
        self.tools_section = tools_prompt()
        # Templates that know the tool role wrap results themselves; those that
        # refuse it (e.g. Gemma's) get the results as a user message.
        self.wrap_result = "tool_response" not in engine.template.source
        self.result_role = "tool" if _renders_tool_role(engine) else "user"
        self.tapes: dict[str, TokenTape] = {}  # by session key
        self.saved_tapes = TapeStore(
            paths.state_dir / "cache" / "tapes",
            cache.store.dir.name,
            n_vocab=engine.info.n_vocab,
        )
        # Tapes changed since the last park, with what ``TapeStore.save`` needs.
        self._unsaved: dict[str, tuple[SessionRef, TokenTape, str]] = {}
        self.turns_served = 0
        self.compactor = Compactor(self)
        # Sessions whose last turn crossed the compaction threshold, for the
        # daemon to compact (and prefill ahead) once it is idle.
        self.due_for_compaction: dict[str, tuple[SessionRef, SessionStore]] = {}

    def run(self, request: dict[str, Any], ctx: TurnContext) -> dict[str, Any]:
        trace = ctx.trace
        behind = {"behind": ctx.waited_behind} if ctx.waited_behind else {}
        trace.add("lane.wait", ctx.received_at, trace.clock(), **behind)
        message = request.get("message")
        if not isinstance(message, str) or not message.strip():
            raise BadRequestError("the turn has no message text", hint="Pass one with -m TEXT.")
        tool_context, choice, max_steps = self._tool_settings(request)
        agent_id = str(request.get("agent_id") or "main")
        system = head(str(request.get("system") or SYSTEM_PROMPT), self.tools_section)
        with trace.span("session.load") as span:
            store = SessionStore(
                self.paths.agent_sessions_dir(agent_id), agent_id, cwd=str(tool_context.workspace)
            )
            ref = store.resolve(request.get("session_id"))
            ctx.session_key = ref.key
            entries = store.load_entries(ref)
            request_id = replay.check_id(request.get("request_id"))
            done = replay.committed_turn(entries, request_id, message) if request_id else None
            if done is not None:
                span["replayed"] = request_id
            else:
                tape, span["tape"] = self._tape_for(ref, entries, system)
        if done is not None:
            return self._replayed(ref, done, trace, ctx)
        user = {"role": "user", "content": message}
        with trace.span("prompt.render"):
            new = [user] if tape.messages else [*self._messages(entries, system), user]
            messages, full = self.builder.render_turn(tape, new)
        with trace.span("prompt.tokenize") as span:
            plan = self.builder.tokenize_turn(tape, messages, full)
            span["tokens"] = plan.appended
        max_tokens = int(request.get("max_tokens") or DEFAULT_MAX_TOKENS)
        overflowed = False
        if (
            not window.admits(len(plan.tokens), self.engine.info.n_ctx, max_tokens)
            and tape.messages
        ):
            # Overflow, or no room left to reply: compact (the summary is a fork
            # of the cached prompt), then retry the turn once on the new layout.
            entries, tape, plan = self.compactor.compact_to_fit(
                ref, store, user, max_tokens, cancelled=ctx.cancelled, emit=ctx.emit, trace=trace
            )
            overflowed = True
        self._check_fits(plan, max_tokens)
        compacted = self.compactor.turn_report(ref, self.cache.costs.prefill_tok_s.value)
        decision, restore_ms = self._use_cache(plan, ctx)
        # From here the live context holds this session's tokens, even if the
        # turn fails mid-way: the next divergence report must name this session.
        self.cache.live_label = ref.session_id

        def answer(plan: PromptPlan) -> list[Step]:
            return self._agent_loop(request, plan, ctx, tool_context, choice, max_steps, max_tokens)

        try:
            try:
                steps = answer(plan)
            except interrupted.Interrupted as stop:
                # llama.cpp found no KV slot for the prompt: the same overflow,
                # seen late. Compact and retry once, unless that was done already
                # or the user has seen part of a reply.
                late_overflow = isinstance(stop.error, KvSlotError) and tape.messages
                if not late_overflow or overflowed or interrupted.worth_keeping(stop.steps):
                    raise
                entries, tape, plan = self.compactor.compact_to_fit(
                    ref,
                    store,
                    user,
                    max_tokens,
                    cancelled=ctx.cancelled,
                    emit=ctx.emit,
                    trace=trace,
                )
                decision, restore_ms = self._use_cache(plan, ctx)
                steps = answer(plan)
        except interrupted.Interrupted as stop:
            # What the user already saw is kept, marked as interrupted.
            if interrupted.worth_keeping(stop.steps):
                with trace.span("session.persist", interrupted=stop.error.code):
                    self._persist(store, ref, entries, message, stop.steps, request_id)
            raise stop.error from None
        # Explained after the reply streamed: a divergence report detokenizes
        # and renders the transcript, which must not delay the first token.
        with trace.span("cache.report"):
            report = cache_report.build(
                self.engine,
                self.engine.template,
                plan.messages,
                plan.tokens,
                decision,
                restore_ms=restore_ms,
            )
        with trace.span("session.persist"):
            self._persist(store, ref, entries, message, steps, request_id)
        self.turns_served += 1
        if self.compactor.settings.needs_compaction(len(steps[-1].tape.tokens)):
            self.due_for_compaction[ref.key] = (ref, store)
        result = self._result(ref, steps, trace, ctx)
        result["cache"] = report
        result["compaction"] = compacted
        return result

    # -- the agent loop ---------------------------------------------------------
    def _tool_settings(self, request: dict[str, Any]) -> tuple[ToolContext, str, int]:
        choice = check_choice(str(request.get("tool_choice") or "auto"))
        allowed = frozenset(str(a) for a in request.get("allow") or [])
        unknown = allowed - PERMISSIONS
        if unknown:
            raise BadRequestError(
                f"unknown permission {', '.join(sorted(unknown))}",
                hint=f"--allow takes: {', '.join(sorted(PERMISSIONS))}.",
            )
        cwd = Path(str(request.get("cwd") or ".")).resolve()
        if not cwd.is_dir():
            raise BadRequestError(f"the workspace {cwd} is not a directory")
        env = request.get("env")
        env = {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}
        max_steps = max(1, int(request.get("max_steps") or DEFAULT_MAX_STEPS))
        exec_timeout = float(request.get("exec_timeout") or exec_tool.DEFAULT_TIMEOUT_S)
        return ToolContext(cwd, env, allowed, exec_timeout), choice, max_steps

    def _agent_loop(
        self,
        request: dict[str, Any],
        plan: PromptPlan,
        ctx: TurnContext,
        tools: ToolContext,
        choice: str,
        max_steps: int,
        max_tokens: int,
    ) -> list[Step]:
        """Model -> tool calls -> results appended to the tape -> model ..., bounded."""
        steps: list[Step] = []
        while True:
            index = len(steps)
            call = CallContext(ctx.trace, ctx.emit, ctx.cancelled, index)
            reused = 0
            try:
                self.calls.partial = None
                if index == 0:
                    reused = self._first_prefill(plan, call, ctx)
                else:
                    reused = self.calls.prefill(plan, call)
                grammar = None
                if constrains(choice, index, max_steps):
                    with ctx.trace.span("prompt.grammar"):
                        grammar = self._grammar(choice, tools, request)
                generation = self.calls.decode(
                    request,
                    self._room(plan, max_tokens),
                    call,
                    grammar=grammar,
                    hide_calls=choice != "none",
                )
            except OpenClawError as exc:
                raise interrupted.Interrupted(
                    [*steps, self._interrupted_step(plan, reused, exc)], exc
                ) from exc
            parsed = (
                ParsedReply(generation.text)
                if choice == "none"
                else parse_reply(generation.text, f"call_{new_entry_id()[:8]}")
            )
            raw = generation.text
            if generation.stop_reason == "length" and parsed.calls and parsed.calls[-1].error:
                # A call cut off by --max-tokens is not a call: drop it, say so,
                # and keep it out of the tape and the transcript alike.
                parsed.calls.pop()
                raw = raw[: raw.rfind(CALL_OPEN)]
                ctx.emit(
                    {
                        "type": "notice",
                        "text": f"a tool call was cut off by --max-tokens "
                        f"{max_tokens} and dropped; raise --max-tokens to let it finish",
                    }
                )
            tape = self.builder.commit_reply(plan, generation.ids, raw)
            usage = self._usage(plan, reused, generation)
            step = Step(plan, generation, usage, parsed, tape, raw=raw)
            steps.append(step)
            if not parsed.calls:
                return steps
            if len(steps) >= max_steps:
                reason = f"not run: the turn reached --max-steps {max_steps}"
                ctx.emit({"type": "notice", "text": f"stopped after --max-steps {max_steps}"})
                generation.stop_reason = "max_steps"
                # Every call keeps a result in the transcript, even one never run.
                now = ctx.trace.clock()
                step.outcomes = [ToolOutcome(c, reason, True, now, now) for c in parsed.calls]
                return steps
            step.outcomes = self._run_tools(parsed.calls, tools, ctx)
            with ctx.trace.span("prompt.results") as span:
                texts = [self._result_text(o.content) for o in step.outcomes]
                plan = self.builder.plan_turn(tape, [results_message(texts, self.result_role)])
                span["tokens"] = plan.appended
            if not window.admits(len(plan.tokens), self.engine.info.n_ctx, max_tokens):
                ctx.emit({"type": "notice", "text": "the context window is full; stopping"})
                generation.stop_reason = "length"
                return steps

    def _interrupted_step(self, plan: PromptPlan, reused: int, error: OpenClawError) -> Step:
        """The model call a stop cut short, with what it had generated (maybe nothing)."""
        partial = self.calls.partial or Generation("", [], error.code, None)
        shown = interrupted.shown_text(partial.text)
        generation = Generation(
            shown, partial.ids, interrupted.stop_reason(error), partial.first_token_at
        )
        tape = self.builder.commit_reply(plan, partial.ids, shown)
        usage = self._usage(plan, reused, generation)
        return Step(plan, generation, usage, ParsedReply(shown), tape, raw=shown, error=error)

    def _grammar(self, choice: str, tools: ToolContext, request: dict[str, Any]) -> str | None:
        files = list_files(tools.workspace, MAX_LISTED_FILES)
        urls = urls_in(str(request.get("message") or ""))
        return grammar_for(choice, self.engine.schema_to_gbnf, files, urls)

    def _run_tools(
        self, calls: list[ToolCall], tools: ToolContext, ctx: TurnContext
    ) -> list[ToolOutcome]:
        def started(call: ToolCall) -> None:
            ctx.emit(
                {
                    "type": "tool",
                    "phase": "start",
                    "id": call.id,
                    "name": call.name,
                    "arguments": call.arguments,
                }
            )

        outcomes = self.tools.run_step(calls, tools, on_start=started)
        for outcome in outcomes:
            duration = (outcome.ended - outcome.started) * 1000.0
            ctx.trace.add(
                f"tool.{outcome.call.name}",
                outcome.started,
                outcome.ended,
                callId=outcome.call.id,
                isError=outcome.is_error,
                cached=outcome.cached,
                truncated=outcome.truncated,
            )
            ctx.emit(
                {
                    "type": "tool",
                    "phase": "end",
                    "id": outcome.call.id,
                    "name": outcome.call.name,
                    "isError": outcome.is_error,
                    "durationMs": round(duration, 3),
                    "cached": outcome.cached,
                    "preview": outcome.content[:200],
                }
            )
        return outcomes

    def _result_text(self, content: str) -> str:
        return format_result(content) if self.wrap_result else content

    def _messages(self, entries: list[dict[str, Any]], system: str) -> list[dict[str, str]]:
        return chat_messages(
            entries,
            system_prompt=system,
            call_text=lambda c: format_call(ToolCall(c.get("id", ""), c["name"], c["arguments"])),
            result_text=self._result_text,
            result_role=self.result_role,
        )

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
        messages = self._messages(entries, system)
        saved = self.saved_tapes.load(ref, last, system)
        if saved is not None:
            text = self.engine.template.render(messages, add_generation_prompt=False)
            return TokenTape(saved, text, messages, last), "saved"
        # Edited elsewhere, a new system prompt, or never saved: rebuild from
        # the transcript (re-tokenized replies may not match the cached ids).
        tape = self.builder.from_messages(messages)
        tape.last_entry_id = last
        return tape, "rebuilt"

    def session_head(self, ref: SessionRef) -> str:
        """The head a session's prompt starts with (its own system prompt, if it set one)."""
        tape = self.tapes.get(ref.key)
        if tape is not None and tape.messages:
            return str(tape.messages[0]["content"])
        return head(SYSTEM_PROMPT, self.tools_section)

    def adopt_tape(self, ref: SessionRef, tape: TokenTape) -> None:
        self.tapes[ref.key] = tape
        self._unsaved[ref.key] = (ref, tape, str(tape.messages[0]["content"]))

    def park(self) -> None:
        """Idle-time work after a turn: park the live KV state and save changed tapes."""
        self.cache.checkpoint()
        while self._unsaved:
            _key, (ref, tape, system) = self._unsaved.popitem()
            if tape.last_entry_id is not None:
                self.saved_tapes.save(ref, tape.tokens, tape.last_entry_id, system)

    def _check_fits(self, plan: PromptPlan, max_tokens: int) -> None:
        n_ctx = self.engine.info.n_ctx
        if not window.admits(len(plan.tokens), n_ctx, max_tokens):
            raise ContextOverflowError(
                f"the prompt is {len(plan.tokens)} tokens but the model's context window "
                f"holds {n_ctx}, with {window.reply_room(max_tokens)} needed for the reply",
                hint="Shorten the message, compact the session (openclaw sessions compact "
                "ID), or start a new session with --session-id NEW.",
            )

    def _first_prefill(self, plan: PromptPlan, call: CallContext, ctx: TurnContext) -> int:
        """The turn's first prefill; if it fails on a state just restored from a
        cache tier, that entry is discarded and the prompt prefilled cold."""
        try:
            reused = self.calls.prefill(plan, call)
        except ModelError as exc:
            notice = self.cache.discard_restored(exc.message)
            if notice is None:
                raise
            ctx.emit({"type": "notice", "text": notice})
            reused = self.calls.prefill(plan, call)
        self.cache.decoded()
        return reused

    def _room(self, plan: PromptPlan, max_tokens: int) -> int:
        return max(1, min(max_tokens, self.engine.info.n_ctx - len(plan.tokens)))

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
        return decision, restore_ms

    def _usage(self, plan: PromptPlan, reused: int, generation: Generation) -> dict[str, int]:
        # OpenClaw's buckets, each prompt token in exactly one (docs/usage.md):
        # ``input`` the tokens prefilled, ``cacheRead`` those the KV cache held.
        # ``cacheWrite`` is 0: as for an OpenAI-compatible local server, keeping
        # a prefill in the KV cache is no separate, billed write.
        prompt = len(plan.tokens)
        return usage_buckets(prompt - reused, reused, len(generation.ids))

    def _persist(
        self,
        store: SessionStore,
        ref: SessionRef,
        entries: list[dict[str, Any]],
        message: str,
        steps: list[Step],
        request_id: str = "",
    ) -> None:
        """Append the user message, then each step's reply and tool results, at once."""
        records = [user_entry(last_entry_id(entries), message, request_id=request_id)]
        for step in steps:
            calls = [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in step.parsed.calls
            ]
            records.append(
                assistant_entry(
                    records[-1]["id"],
                    # What the user was shown: without its calls (a cut-off one too).
                    text=step.parsed.text
                    if CALL_OPEN in step.generation.text
                    else step.generation.text,
                    tool_calls=calls,
                    raw_text=step.raw,
                    error_message=step.error.message if step.error else None,
                    usage=step.usage,
                    model=self.engine.info.name,
                    provider=PROVIDER,
                    api=API,
                    stop_reason=(
                        "toolUse"
                        if step.outcomes and step.generation.stop_reason != "max_steps"
                        else step.generation.stop_reason
                    ),
                )
            )
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
        store.append(ref, records)
        usage = total_usage(steps)
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
        if steps[-1].outcomes:
            # The loop stopped after running tools (the context filled up): the
            # tape lacks their results, so the next turn rebuilds it.
            self.tapes.pop(ref.key, None)
            return
        tape = steps[-1].tape
        tape.last_entry_id = records[-1]["id"]
        self.adopt_tape(ref, tape)

    def _session_fields(self, ref: SessionRef) -> dict[str, Any]:
        """The session and model a turn's result names, replayed or not."""
        return {
            "sessionId": ref.session_id,
            "sessionKey": ref.key,
            "sessionFile": str(ref.file),
            "agentId": ref.agent_id,
            "provider": PROVIDER,
            "model": self.engine.info.name,
            "modelPath": self.engine.info.path,
            "contextTokens": self.engine.info.n_ctx,
        }

    def _replayed(
        self, ref: SessionRef, turn: list[dict[str, Any]], trace: Trace, ctx: TurnContext
    ) -> dict[str, Any]:
        """A retry of a committed turn: its stored reply, in a turn's result."""
        return {
            "turnId": ctx.turn_id,
            **self._session_fields(ref),
            **replay.reply(turn),
            "ttftMs": None,
            "cache": None,
            "compaction": None,
            "spans": trace.spans,
            "daemonMs": round(trace.offset_ms(), 3),
            "originClock": trace.origin,
            "at": time.time(),
        }

    def check_tape(self, ref: SessionRef, store: SessionStore) -> dict[str, Any]:
        """Whether the tape the next turn would extend spells the transcript's render."""
        entries = store.load_entries(ref)
        if last_entry_id(entries) is None:
            raise BadRequestError(f"session {ref.session_id} has no entries")
        system = self.session_head(ref)
        tape, source = self._tape_for(ref, entries, system)
        rendered = self.engine.template.render(
            self._messages(entries, system), add_generation_prompt=False
        )
        bos = self.engine.info.bos_id if self.engine.add_bos else None
        report = tape_check.compare(
            lambda ids: self.engine.detokenize(ids, special=True), tape.tokens, rendered, bos_id=bos
        )
        return {"sessionId": ref.session_id, "sessionKey": ref.key, "tape": source, **report}

    def _result(
        self, ref: SessionRef, steps: list[Step], trace: Trace, ctx: TurnContext
    ) -> dict[str, Any]:
        first = steps[0].generation.first_token_at
        ttft = (first - ctx.received_at) * 1000.0 if first else None
        final = steps[-1]
        return {
            "turnId": ctx.turn_id,
            # Without its calls, run or cut off by --max-tokens and dropped (the
            # stream hid them too); a reply with no call block is shown as generated.
            "text": final.parsed.text
            if CALL_OPEN in final.generation.text
            else final.generation.text,
            "stopReason": final.generation.stop_reason,
            **self._session_fields(ref),
            "usage": total_usage(steps),
            "steps": [describe_step(i, step) for i, step in enumerate(steps)],
            "ttftMs": round(ttft, 3) if ttft is not None else None,
            "spans": trace.spans,
            "daemonMs": round(trace.offset_ms(), 3),
            # The daemon's perf_counter at the trace origin: on one machine the
            # CLI shares this clock, so it can place these spans exactly.
            "originClock": trace.origin,
            "at": time.time(),
        }


def _renders_tool_role(engine: ModelEngine) -> bool:
    probe = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
        {"role": "tool", "content": "t"},
    ]
    try:
        return "t" in engine.template.render(probe, add_generation_prompt=True)
    except ModelError:
        return False


def total_usage(steps: list[Step]) -> dict[str, int]:
    """The turn's usage: every model call's tokens, summed."""
    return {key: sum(step.usage[key] for step in steps) for key in steps[0].usage}


def describe_step(index: int, step: Step) -> dict[str, Any]:
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
