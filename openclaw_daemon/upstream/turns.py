"""A turn on an upstream engine: the embedded pipeline's phases, over HTTP.

session.load -> prompt.render -> prompt.tokenize -> model.prefill -> model.decode
[-> tool.* -> prompt.results -> ...] -> session.persist, as for the embedded model,
with the same transcript (OpenClaw's JSONL), tool runner and result. What differs:

- The prompt is the session's messages, append-only: each request repeats the
  previous one and adds to its end, so the upstream's prefix cache (llama-server's
  slot and ``--cache-ram``, vLLM's APC, SGLang's radix tree) holds all but the new
  message. Our own tape of each request (``RequestTapes``) proves it, or names where
  a request left the previous one: the explanation of a miss, in the cache report.
- Usage and the cache tier come from the server's own report (``usage``).
- A prompt the upstream says overflows its context (or our count of it, when the
  model's contextWindow is configured) is compacted on the upstream, a summary
  generated as a continuation of the session's own messages, and the turn retried
  once, as OpenClaw does.
- An error after text reached the user keeps that text in the transcript marked as
  interrupted, as the embedded engine does; never a half reply marked complete.

Runs on its own thread (``serve.handlers``): an upstream turn never waits for the
embedded model's worker, and holds only its session's lane.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from openclaw_daemon.config import Paths
from openclaw_daemon.model.tape import PromptPlan, TokenTape
from openclaw_daemon.observability.turn_record import usage_buckets
from openclaw_daemon.tools.formats.hermes import HermesFormat
from openclaw_daemon.tools.grammar import (
    MAX_LISTED_FILES,
    SchemaToGbnf,
    constrains,
    grammar_for,
    urls_in,
)
from openclaw_daemon.tools.runner import ToolRunner
from openclaw_daemon.tools.spec import ParsedReply
from openclaw_daemon.tools.workspace import list_files
from openclaw_daemon.turn import interrupted, result
from openclaw_daemon.turn.agent_loop import Step, run_tools, stops_at_max_steps
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.turn.model_calls import CallContext, Generation
from openclaw_daemon.turn.options import TurnSettings, turn_settings
from openclaw_daemon.turn.session_load import load_session
from openclaw_daemon.turn.session_tapes import SessionTapes
from openclaw_daemon.turn.transcript import Transcript
from openclaw_daemon.upstream import native_transcript, routing
from openclaw_daemon.upstream.model_call import CallResult, UpstreamCalls
from openclaw_daemon.upstream.request_tapes import RequestCheck, RequestTapes
from openclaw_daemon.upstream.routing import Route
from openclaw_daemon.upstream.targets import Target, UpstreamTargets
from openclaw_daemon.upstream.thinking import thinking_notice
from openclaw_daemon.upstream.tool_modes import (
    is_native,
    native_chain,
    native_request,
    reply_step,
    session_messages,
)
from openclaw_daemon.upstream.turn_output import (
    cache_report,
    compaction_summary,
    model_info,
    persist,
)
from openclaw_daemon.upstream.upstream_compaction import UpstreamCompactor
from openclaw_daemon.wire.errors import (
    ConfigError,
    ContextOverflowError,
    OpenClawError,
    UpstreamContextOverflowError,
)
from openclaw_daemon.wire.messages import TurnResult
from openclaw_daemon.wire.requests import TurnOptions
from openclaw_sessions.prompt import SYSTEM_PROMPT
from openclaw_sessions.store import SessionRef, SessionStore

log = logging.getLogger("openclawd.upstream")

# Our own tool-call format, in the system message: every OpenAI-compatible server
# carries it, native tool calling or not. Results go back as user messages, which
# no server's request validation refuses (a "tool" message needs native call ids).
TOOL_FORMAT = HermesFormat(wrap_results=True, result_role="user")


class _LastCall(NamedTuple):
    call: CallResult  # the turn's last model call: its report is the turn's cache report
    check: RequestCheck  # and our append-only check of its request


class _Answer(NamedTuple):
    steps: list[Step]
    target: Target  # the engine that answered
    last: _LastCall
    failed: list[str]  # engines that failed before it, "ref: why", over all its calls


class _Overflow(Exception):  # noqa: N818 - control flow inside the turn, not an error
    """The upstream said the prompt overflows before anything was shown or run."""

    def __init__(self, target: Target, error: UpstreamContextOverflowError) -> None:
        super().__init__(error.message)
        self.target = target  # the engine that overflowed: compact for its window
        self.error = error


class UpstreamTurns:
    def __init__(
        self,
        paths: Paths,
        tapes: SessionTapes,
        targets: UpstreamTargets,
        schema_to_gbnf: SchemaToGbnf | None = None,
    ) -> None:
        self.paths = paths
        # JSON schema -> GBNF, the embedded engine's (the one llama_cpp import): the
        # grammar of a forced tool call, for the upstreams that take one.
        self.schema_to_gbnf = schema_to_gbnf
        self.tapes = tapes  # the embedded engine's: a session an upstream turn changed
        self.targets = targets
        self.transcript = Transcript(tool_format=TOOL_FORMAT)
        self.requests = RequestTapes()
        # The head (system message) each session's last upstream turn used, so an
        # explicit compaction continues the same prompt (a restart forgets it).
        self.heads: dict[str, str] = {}
        self.compactor = UpstreamCompactor(targets, TOOL_FORMAT.tags, self.transcript)
        self.turns_served = 0

    def route(self, options: TurnOptions) -> Route:
        """Which engine answers the turn, and the rule that chose it (``routing``). A
        broken openclaw.json fails a turn that names an upstream, never one that
        names none: that one runs on the embedded model."""
        try:
            cfg = self.targets.config()
            entry = self._index_entry(options)
            return routing.choose(
                cfg,
                options.model,
                # The last size (index entries from before sessionTokens: the total).
                session_tokens=int(entry.get("sessionTokens", entry.get("totalTokens")) or 0),
                message=options.message,
                tool_choice=options.tool_choice or "auto",
            )
        except ConfigError as exc:
            if options.model:
                raise
            log.warning("openclaw.json unusable (%s); the turn runs embedded", exc.message)
            return Route(None, f"default (openclaw.json unusable: {exc.message})")

    def _index_entry(self, options: TurnOptions) -> dict[str, Any]:
        """The session's index entry (its last size), without creating the session."""
        store = SessionStore(self.paths.agent_sessions_dir(options.agent_id), options.agent_id)
        try:
            ref = store.resolve(options.session_id, create=False)
        except OpenClawError:
            return {}  # a new session (or a bad id, which the turn itself reports)
        entry: dict[str, Any] = store.load_index().get(ref.key, {})
        return entry

    def run(self, options: TurnOptions, ctx: TurnContext, route: Route) -> TurnResult:
        trace = ctx.trace
        trace.add("lane.wait", ctx.received_at, trace.clock())
        settings = turn_settings(options)
        native, chain = native_chain(self.targets.config(), self.targets.chain(route.model))
        notice = thinking_notice(settings.call.thinking, chain[0].model)
        if notice:
            ctx.emit({"type": "notice", "text": notice})
        system = (native_transcript.head if native else self.transcript.head)(settings.system)
        with trace.span("session.load", engine=chain[0].engine) as span:
            loaded = load_session(self.paths, options, settings, ctx, span)
        store, ref, entries = loaded.store, loaded.ref, loaded.entries
        request_id, done = loaded.request_id, loaded.done
        if done is not None:
            replayed = result.replayed(ref, done, ctx, model_info(chain[0]), chain[0].provider.id)
            replayed["engine"] = chain[0].engine
            replayed["route"] = {"engine": chain[0].engine, "rule": route.rule}
            return replayed
        user = {"role": "user", "content": options.message}
        with trace.span("prompt.render"):
            messages = [*self._messages(entries, system, native), user]
        self.heads[ref.key] = system
        compaction = None
        try:
            answer = self._answer(chain, messages, ref, ctx, settings, native=native)
        except _Overflow as overflow:
            # Nothing was shown or run yet: compact on the engine that overflowed,
            # then retry once on it (a second overflow is the user's error).
            target = overflow.target
            with trace.span("session.compact", engine=target.engine, reason="overflow"):
                entries, report = self.compactor.compact(
                    target, ref, store, entries, system, ctx, overflow=overflow.error
                )
            compaction = compaction_summary(report)
            self.tapes.forget(ref)
            self.requests.forget(ref.key)
            messages = [*self._messages(entries, system, native), user]
            answer = self._answer([target], messages, ref, ctx, settings, retried=True,
                                  native=native)  # fmt: skip
        steps, answered, last, failed = answer
        with trace.span("session.persist"):
            persist(store, ref, entries, settings, steps, request_id, answered, self.tapes)
        self.turns_served += 1
        self.compactor.note_due(answered, ref, store, result.session_tokens(steps))
        turn = result.turn_result(
            ref,
            steps,
            ctx,
            model_info(answered),
            cache=cache_report(answered, last.call, last.check),
            compaction=compaction,
            provider=answered.provider.id,
        )
        turn["engine"] = answered.engine
        turn["route"] = {"engine": chain[0].engine, "rule": route.rule}
        if failed:
            turn["fallbackFrom"] = failed
        return turn

    def session_target(self, store: SessionStore, ref: SessionRef) -> Target | None:
        """The upstream the session's last turn ran on, if it is still configured."""
        entry = store.load_index().get(ref.key, {})
        provider, model = entry.get("modelProvider"), entry.get("model")
        if not isinstance(provider, str) or not isinstance(model, str):
            return None
        name = f"{provider}/{model}"
        try:
            return self.targets.chain(name)[0] if self.targets.config().find(name) else None
        except ConfigError:
            return None

    def compact_session(
        self,
        target: Target,
        ref: SessionRef,
        store: SessionStore,
        ctx: TurnContext,
        instructions: str | None,
    ) -> dict[str, Any]:
        """``openclaw sessions compact`` of a session on an upstream: summarise there,
        then prefill the compacted layout ahead, so the next turn is a hit upstream."""
        entries = store.load_entries(ref)
        native = is_native(self.targets.config(), target)
        head = native_transcript.head if native else self.transcript.head
        system = self.heads.get(ref.key) or head(SYSTEM_PROMPT)
        entries, report = self.compactor.compact(
            target, ref, store, entries, system, ctx, instructions=instructions
        )
        self.tapes.forget(ref)
        ahead = self.compactor.prefill_ahead(target, ref, entries, system, ctx)
        # The next turn is compared with the layout the upstream now holds.
        self.requests.forget(ref.key)
        messages = self._messages(entries, system, native)
        # The layout the upstream now holds, without a generation prompt: the next
        # request continues it with the user's message.
        ids = self.targets.request_ids(target, messages, generation_prompt=False)
        self.requests.record(ref.key, ids)
        return {**report, **ahead}

    def _answer(
        self,
        chain: list[Target],
        messages: list[dict[str, Any]],
        ref: SessionRef,
        ctx: TurnContext,
        settings: TurnSettings,
        *,
        retried: bool = False,
        native: bool = False,
    ) -> _Answer:
        """The agent loop on the upstream; a stop keeps what the user saw, then
        raises the error that stopped it (``_Overflow`` when nothing was shown or run
        yet and the turn may compact and retry). Per-turn state lives here: turns of
        different sessions run at once."""
        steps: list[Step] = []
        failed: list[str] = []
        calls = UpstreamCalls(self.targets, TOOL_FORMAT.tags)
        answered = chain[0]
        while True:
            call = CallContext(ctx.trace, ctx.emit, ctx.cancelled, len(steps))
            request = native_request(settings, len(steps)) if native else None
            try:
                made = calls.call(
                    chain,
                    messages,
                    settings.call,
                    settings.max_tokens,
                    call,
                    hide_calls=settings.choice != "none" and not native,
                    cache_key=ref.session_id,
                    grammar=None if native else self._grammar(settings, len(steps), ctx),
                    native=request,
                )
            except OpenClawError as exc:
                failed += calls.failed
                fresh = not steps and calls.partial is None
                if isinstance(exc, UpstreamContextOverflowError) and fresh and not retried:
                    raise _Overflow(calls.overflowed_on or answered, exc) from exc
                self._keep_interrupted(steps, calls.partial, exc, messages, ctx, ref, settings,
                                       answered)  # fmt: skip
                if isinstance(exc, UpstreamContextOverflowError):
                    # Not to be compacted and retried by anyone above: say it plainly.
                    raise ContextOverflowError(exc.message, hint=exc.hint) from None
                raise exc from None
            failed += made.failed
            answered = made.target
            last = _LastCall(made, self._check_requests(ref, made, ctx))
            # After one engine answered, the rest of the turn stays on it.
            chain = [answered]
            step = reply_step(made, messages, settings, self.transcript.format, request)
            steps.append(step)
            if not step.parsed.calls or stops_at_max_steps(step, len(steps), settings, ctx):
                return _Answer(steps, answered, last, failed)
            step.outcomes = run_tools(self._tool_runner(answered), step.parsed.calls, settings, ctx)
            with ctx.trace.span("prompt.results"):
                messages = [*messages, *self._step_messages(step, native)]

    def _messages(
        self, entries: list[dict[str, Any]], system: str, native: bool
    ) -> list[dict[str, Any]]:
        return session_messages(self.transcript, native, entries, system)

    def _step_messages(self, step: Step, native: bool) -> list[dict[str, Any]]:
        """A step's reply and results as the next call repeats them."""
        if native:
            return native_transcript.step_messages(step)
        results = self.transcript.results(
            [o.content for o in step.outcomes], [o.call.id for o in step.outcomes]
        )
        return [{"role": "assistant", "content": step.raw}, *results]

    def _grammar(self, settings: TurnSettings, index: int, ctx: TurnContext) -> str | None:
        """The forced tool call's grammar, as the embedded loop builds it."""
        if self.schema_to_gbnf is None or not constrains(
            settings.choice, index, settings.max_steps
        ):
            return None
        with ctx.trace.span("prompt.grammar"):
            return grammar_for(
                settings.choice,
                self.schema_to_gbnf,
                list_files(settings.tools.workspace, MAX_LISTED_FILES),
                urls_in(settings.message),
                tool_format=TOOL_FORMAT,
            )

    def _keep_interrupted(
        self,
        steps: list[Step],
        partial: Generation | None,
        error: OpenClawError,
        messages: list[dict[str, Any]],
        ctx: TurnContext,
        ref: SessionRef,
        settings: TurnSettings,
        target: Target,
    ) -> None:
        """What the user saw of a stopped turn, stored with the reply marked as
        interrupted (OpenClaw's ``stopReason`` "aborted" or "error"), as the embedded
        loop does: the steps done, then the interrupted call (empty if nothing of it
        was shown). Nothing at all is stored when nothing was shown or run."""
        if partial is None and not steps:
            return
        text = partial.text if partial is not None else ""
        shown = interrupted.shown_text(text, self.transcript.format.tags.hidden)
        ids = partial.ids if partial is not None else []
        first = partial.first_token_at if partial is not None else None
        generation = Generation(shown, ids, interrupted.stop_reason(error), first)
        stopped = Step(
            PromptPlan([], "", list(messages), 0, False),
            generation,
            usage_buckets(0, 0, len(ids)),
            ParsedReply(shown),
            TokenTape(),
            raw=shown,
            error=error,
            shown=shown,
        )
        steps = [*steps, stopped]
        store = SessionStore(self.paths.agent_sessions_dir(ref.agent_id), ref.agent_id)
        entries = store.load_entries(ref)
        with ctx.trace.span("session.persist", interrupted=error.code):
            persist(store, ref, entries, settings, steps, "", target, self.tapes)

    def _tool_runner(self, target: Target) -> ToolRunner:
        tokenizer = self.targets.tokenizer(target)
        return ToolRunner(tokenize=tokenizer.tokenize, detokenize=tokenizer.detokenize)

    def _check_requests(self, ref: SessionRef, made: CallResult, ctx: TurnContext) -> RequestCheck:
        check = self.requests.record(ref.key, made.prompt_tokens)
        if check.previous and not check.append_only:
            ctx.emit({"type": "notice", "text": f"upstream cache: {check.explain()}"})
        return check
