"""The agent loop: model -> tool calls -> results appended to the tape -> model ...

Bounded by the turn's ``--max-steps`` and by the context window. Each model
call extends the live KV state, so every call after the first prefills only
what the previous step appended. A stop mid-way (cancel, timeout, a model
error) raises ``interrupted.Interrupted`` with the steps done so far, for the
pipeline to keep what the user already saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from openclaw_daemon.cache.prefix_cache import PrefixCache
from openclaw_daemon.model.tape import PromptPlan, TapeBuilder, TokenTape
from openclaw_daemon.observability.turn_record import usage_buckets
from openclaw_daemon.tools.grammar import MAX_LISTED_FILES, constrains, grammar_for, urls_in
from openclaw_daemon.tools.runner import ToolOutcome, ToolRunner
from openclaw_daemon.tools.spec import ParsedReply, ToolCall
from openclaw_daemon.tools.workspace import list_files
from openclaw_daemon.turn import interrupted, window
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.turn.head_boundary import HeadBoundary
from openclaw_daemon.turn.model_calls import CallContext, Generation, ModelCalls
from openclaw_daemon.turn.options import TurnSettings
from openclaw_daemon.turn.transcript import Transcript
from openclaw_daemon.wire.errors import ModelError, OpenClawError
from openclaw_daemon.wire.messages import Usage
from openclaw_sessions.store import new_entry_id

if TYPE_CHECKING:
    from openclaw_daemon.model.base import ModelEngine


@dataclass
class Step:
    """One model call and the tool calls it made."""

    plan: PromptPlan
    generation: Generation
    usage: Usage
    parsed: ParsedReply
    tape: TokenTape  # the session's tape once this reply was committed to it
    outcomes: list[ToolOutcome] = field(default_factory=list)
    # The reply as it sits in the tape (calls as generated, a cut-off call
    # removed); stored as the entry's ``rawText`` so a re-render matches.
    raw: str = ""
    error: OpenClawError | None = None  # set on the step a stop interrupted
    # The reply as the user saw it: without its calls (run, or cut off by
    # --max-tokens and dropped; the stream hid them too).
    shown: str = ""


class AgentLoop:
    def __init__(
        self,
        engine: ModelEngine,
        calls: ModelCalls,
        builder: TapeBuilder,
        transcript: Transcript,
        cache: PrefixCache,
    ) -> None:
        self.engine = engine
        self.calls = calls
        self.builder = builder
        self.transcript = transcript
        self.cache = cache
        self.head = HeadBoundary(engine, builder)
        self.tools = ToolRunner(
            tokenize=lambda text: engine.tokenize(text, add_bos=False),
            detokenize=lambda ids: engine.detokenize(ids).decode("utf-8", errors="replace"),
        )

    def run(self, plan: PromptPlan, ctx: TurnContext, settings: TurnSettings) -> list[Step]:
        """The turn's steps, the last one the answer (or where a bound stopped it)."""
        steps: list[Step] = []
        while True:
            step = self._model_step(plan, len(steps), steps, ctx, settings)
            steps.append(step)
            if not step.parsed.calls or stops_at_max_steps(step, len(steps), settings, ctx):
                return steps
            step.outcomes = self._run_tools(step.parsed.calls, settings, ctx)
            with ctx.trace.span("prompt.results") as span:
                results = self.transcript.results(
                    [o.content for o in step.outcomes], [o.call.id for o in step.outcomes]
                )
                plan = self.builder.plan_turn(step.tape, results)
                span["tokens"] = plan.appended
            if not window.admits(len(plan.tokens), self.engine.info.n_ctx, settings.max_tokens):
                ctx.emit({"type": "notice", "text": "the context window is full; stopping"})
                step.generation.stop_reason = "length"
                return steps

    def _model_step(
        self,
        plan: PromptPlan,
        index: int,
        done: list[Step],
        ctx: TurnContext,
        settings: TurnSettings,
    ) -> Step:
        """One model call on ``plan``: prefill, decode, parse, commit to the tape."""
        call = CallContext(ctx.trace, ctx.emit, ctx.cancelled, index)
        reused = 0
        choice = settings.choice
        try:
            self.calls.partial = None
            reused = (
                first_prefill(self.calls, self.cache, plan, call, self.head.of(plan))
                if index == 0
                else self.calls.prefill(plan, call)
            )
            grammar = None
            if constrains(choice, index, settings.max_steps):
                with ctx.trace.span("prompt.grammar"):
                    grammar = self._grammar(settings)
            generation = self.calls.decode(
                settings.call,
                self._room(plan, settings.max_tokens),
                call,
                grammar=grammar,
                hide_calls=choice != "none",
            )
        except OpenClawError as exc:
            raise interrupted.Interrupted(
                [*done, self._interrupted_step(plan, reused, exc)], exc
            ) from exc
        parsed = (
            ParsedReply(generation.text)
            if choice == "none"
            else self.transcript.format.parse(generation.text, f"call_{new_entry_id()[:8]}")
        )
        raw = generation.text
        if generation.stop_reason == "length" and parsed.calls and parsed.calls[-1].error:
            # A call cut off by --max-tokens is not a call: drop it, say so,
            # and keep it out of the tape and the transcript alike.
            parsed.calls.pop()
            raw = raw[: raw.rfind(self.transcript.format.tags.call_open)]
            ctx.emit(
                {
                    "type": "notice",
                    "text": f"a tool call was cut off by --max-tokens "
                    f"{settings.max_tokens} and dropped; raise --max-tokens to let it finish",
                }
            )
        tape = self.builder.commit_reply(plan, generation.ids, raw)
        # A reply with no call block is shown as generated.
        has_call = self.transcript.format.tags.call_open in generation.text
        shown = parsed.text if has_call else generation.text
        usage = self._usage(plan, reused, generation)
        return Step(plan, generation, usage, parsed, tape, raw=raw, shown=shown)

    def _interrupted_step(self, plan: PromptPlan, reused: int, error: OpenClawError) -> Step:
        """The model call a stop cut short, with what it had generated (maybe nothing)."""
        partial = self.calls.partial or Generation("", [], error.code, None)
        shown = interrupted.shown_text(partial.text, self.transcript.format.tags.hidden)
        generation = Generation(
            shown, partial.ids, interrupted.stop_reason(error), partial.first_token_at
        )
        tape = self.builder.commit_reply(plan, partial.ids, shown)
        usage = self._usage(plan, reused, generation)
        return Step(
            plan, generation, usage, ParsedReply(shown), tape, raw=shown, error=error, shown=shown
        )

    def _grammar(self, settings: TurnSettings) -> str | None:
        files = list_files(settings.tools.workspace, MAX_LISTED_FILES)
        urls = urls_in(settings.message)
        return grammar_for(
            settings.choice,
            self.engine.schema_to_gbnf,
            files,
            urls,
            tool_format=self.transcript.format,
        )

    def _room(self, plan: PromptPlan, max_tokens: int) -> int:
        return max(1, min(max_tokens, self.engine.info.n_ctx - len(plan.tokens)))

    def _usage(self, plan: PromptPlan, reused: int, generation: Generation) -> Usage:
        # OpenClaw's buckets, each prompt token in exactly one (docs/usage.md):
        # ``input`` the tokens prefilled, ``cacheRead`` those the KV cache held.
        # ``cacheWrite`` is 0: as for an OpenAI-compatible local server, keeping
        # a prefill in the KV cache is no separate, billed write.
        prompt = len(plan.tokens)
        return usage_buckets(prompt - reused, reused, len(generation.ids))

    def _run_tools(
        self, calls: list[ToolCall], settings: TurnSettings, ctx: TurnContext
    ) -> list[ToolOutcome]:
        return run_tools(self.tools, calls, settings, ctx)


def first_prefill(
    calls: ModelCalls, cache: PrefixCache, plan: PromptPlan, call: CallContext, head: int
) -> int:
    """A request's first prefill (an agent turn's, an OpenAI-front completion's): the
    state is parked at the ``head`` boundary on the way where the model's memory
    cannot be cut back freely; a state just restored from a tier that fails is
    discarded, with a notice, and the prompt prefilled cold. Returns the tokens reused."""
    checkpoint = cache.boundary_checkpoint(plan.tokens, head)
    try:
        reused = calls.prefill(plan, call, checkpoint)
    except ModelError as exc:
        notice = cache.discard_restored(exc.message)
        if notice is None:
            raise
        call.emit({"type": "notice", "text": notice})
        reused = calls.prefill(plan, call)
    cache.decoded()
    return reused


def stops_at_max_steps(step: Step, done: int, settings: TurnSettings, ctx: TurnContext) -> bool:
    """True when ``done`` model calls reached --max-steps: ``step``'s calls are then
    not run, and each gets a result saying so (every call keeps a result in the
    transcript, even one never run)."""
    max_steps = settings.max_steps
    if done < max_steps:
        return False
    reason = f"not run: the turn reached --max-steps {max_steps}"
    ctx.emit({"type": "notice", "text": f"stopped after --max-steps {max_steps}"})
    step.generation.stop_reason = "max_steps"
    now = ctx.trace.clock()
    step.outcomes = [ToolOutcome(c, reason, True, now, now) for c in step.parsed.calls]
    return True


def run_tools(
    tools: ToolRunner, calls: list[ToolCall], settings: TurnSettings, ctx: TurnContext
) -> list[ToolOutcome]:
    """Run one step's calls, each with its ``tool`` start and end frames and its span
    (the embedded loop and the upstream one alike)."""

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

    context = settings.tools if ctx.ask is None else replace(settings.tools, ask=ctx.ask)
    outcomes = tools.run_step(calls, context, on_start=started)
    for outcome in outcomes:
        _report_tool(outcome, ctx)
    return outcomes


def _report_tool(outcome: ToolOutcome, ctx: TurnContext) -> None:
    """A tool call's span in the trace and its ``tool`` end frame."""
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
