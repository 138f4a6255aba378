"""One OpenAI-style completion on the embedded model, for ``openclaw serve``.

prompt.render -> prompt.tokenize -> cache.lookup -> cache.restore ->
model.prefill -> model.decode, the same phases and the same prefix cache as an
agent turn, but no session, no tools run here and nothing persisted but the
reply's tape: the client owns the conversation and sends it whole each time.
``conversation`` finds the tape it continues, so a warm request prefills only
its new messages; the tiers (L2/L3, restart persistence) work as for sessions.

Tool calls are the client's: its definitions go into the head in the model's
tool-call format, and calls in the reply come back as OpenAI ``tool_calls``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openclaw_daemon.cache.prefix_cache import PrefixCache
from openclaw_daemon.front import conversation
from openclaw_daemon.front.front_tapes import FrontTapes
from openclaw_daemon.model import markup
from openclaw_daemon.model.tape import PromptPlan, TapeBuilder, TokenTape
from openclaw_daemon.tools.formats.base import ToolFormat
from openclaw_daemon.tools.grammar import MAX_CALLS_PER_STEP, client_grammar
from openclaw_daemon.tools.spec import ToolCall
from openclaw_daemon.turn.agent_loop import first_prefill
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.turn.head_boundary import HeadBoundary
from openclaw_daemon.turn.model_calls import CallContext, CallOptions, Generation, ModelCalls
from openclaw_daemon.wire.chat_requests import ChatCall, ChatOptions
from openclaw_daemon.wire.errors import BadRequestError, ContextOverflowError, ModelError
from openclaw_sessions.store import new_entry_id

if TYPE_CHECKING:
    from openclaw_daemon.model.base import KVEngine

LIVE_LABEL = "openai-front"  # what a divergence report calls the live context's owner


@dataclass
class _Prompt:
    plan: PromptPlan
    builder: TapeBuilder | None  # None for a plain completion (no template)
    head: HeadBoundary | None
    continued: int  # request messages a registered tape already held


class ChatTurns:
    def __init__(
        self,
        engine: KVEngine,
        cache: PrefixCache,
        calls: ModelCalls,
        tool_format: ToolFormat,
        tapes: FrontTapes,
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.calls = calls
        self.format = tool_format
        self.tapes = tapes
        self.served = 0
        # A builder (and head boundary) per tools section: clients repeat theirs.
        self._builders: dict[str, tuple[TapeBuilder, HeadBoundary]] = {}
        self._grammars: dict[str, str] = {}  # by the forced tools' definitions

    def run(self, options: ChatOptions, ctx: TurnContext) -> dict[str, Any]:
        trace = ctx.trace
        trace.add("lane.wait", ctx.received_at, trace.clock())
        prompt = (
            self._completion(options, ctx)
            if options.prompt is not None
            else self._chat(options, ctx)
        )
        plan = prompt.plan
        n_ctx = self.engine.info.n_ctx
        room = n_ctx - len(plan.tokens)
        if room < 1:
            raise ContextOverflowError(
                f"the prompt is {len(plan.tokens)} tokens but the model's context window "
                f"holds {n_ctx}",
                hint="Send fewer or shorter messages, or give the daemon a larger window: "
                "openclaw daemon restart --n-ctx N (or openclaw serve --n-ctx N).",
            )
        max_tokens = min(options.max_tokens or room, room)
        grammar = self._grammar(
            options, ctx
        )  # a schema it cannot take is refused before any prefill
        tier = self._use_cache(plan.tokens, ctx)
        self.cache.live_label = LIVE_LABEL
        call = CallContext(trace, ctx.emit, ctx.cancelled, 0)
        head = prompt.head.of(plan) if prompt.head is not None else 0
        reused = first_prefill(self.calls, self.cache, plan, call, head)
        hide_calls = bool(options.tools) and options.tool_choice != "none"
        generation = self.calls.decode(
            CallOptions(options.temperature, options.seed, tuple(options.stop)),
            max_tokens,
            call,
            grammar=grammar,
            hide_calls=hide_calls,
        )
        result = self._reply(options, prompt, generation, hide_calls)
        self.served += 1
        first = generation.first_token_at
        return {
            **result,
            "model": self.engine.info.model_id,
            "usage": {
                "promptTokens": len(plan.tokens),
                "completionTokens": len(generation.ids),
                "cachedTokens": reused,
            },
            "cacheTier": tier,
            "continuedMessages": prompt.continued,
            "ttftMs": round(trace.offset_ms(first), 3) if first else None,
            "spans": trace.spans,
        }

    # -- the prompt -------------------------------------------------------------------
    def _chat(self, options: ChatOptions, ctx: TurnContext) -> _Prompt:
        if options.messages[-1].role == "assistant":
            raise BadRequestError(
                "the conversation ends with an assistant message; there is nothing to answer",
                hint="End the messages with a user or tool message.",
            )
        with ctx.trace.span("prompt.render") as span:
            section = conversation.tools_section(options.tools, self.format)
            builder, head = self._builder(section)
            keys = conversation.prefix_keys(options.tools, options.messages, salt=self._salt)
            continued, found = self.tapes.longest(keys)
            tape = found or TokenTape()
            new = conversation.template_messages(
                options.messages[continued:], self.format, section=section, at_start=not found
            )
            try:
                messages, full = builder.render_turn(tape, new)
            except ModelError as exc:  # the template refused these messages (role order)
                raise BadRequestError(
                    f"the model's chat template refused the messages: {exc.message}"
                ) from None
            span.update(continuedMessages=continued, newMessages=len(new))
        with ctx.trace.span("prompt.tokenize") as span:
            plan = builder.tokenize_turn(tape, messages, full)
            span["tokens"] = plan.appended
        return _Prompt(plan, builder, head, continued)

    def _completion(self, options: ChatOptions, ctx: TurnContext) -> _Prompt:
        assert options.prompt is not None
        with ctx.trace.span("prompt.tokenize") as span:
            # As llama-server's /completion: special tokens in the text are parsed.
            tokens = self.engine.tokenize(options.prompt, add_bos=self.engine.add_bos, special=True)
            span["tokens"] = len(tokens)
        if not tokens:
            raise BadRequestError("the prompt is empty", hint="Send some prompt text.")
        return _Prompt(PromptPlan(tokens, options.prompt, [], len(tokens), False), None, None, 0)

    @property
    def _salt(self) -> str:
        return self.cache.store.dir.name  # the model's fingerprint

    def _builder(self, section: str) -> tuple[TapeBuilder, HeadBoundary]:
        found = self._builders.get(section)
        if found is None:
            builder = TapeBuilder(
                self.engine.template,
                self.engine,
                add_bos=self.engine.add_bos,
                trusted=markup.Trusted(section, tuple(self.calls.control)),
                spelled=self.calls.spelled,
            )
            found = (builder, HeadBoundary(self.engine, builder))
            if len(self._builders) >= 16:
                self._builders.pop(next(iter(self._builders)))
            self._builders[section] = found
        return found

    # -- the model ------------------------------------------------------------------
    def _use_cache(self, tokens: list[int], ctx: TurnContext) -> str:
        trace = ctx.trace
        with trace.span("cache.lookup") as span:
            decision = self.cache.plan(tokens)
            span.update(cachedTokens=decision.cached, tier=decision.tier)
        start = trace.clock()
        decision = self.cache.apply(decision, tokens)
        trace.add(
            "cache.restore",
            start,
            trace.clock(),
            tier=decision.tier,
            tokens=decision.cached,
            restored=decision.entry is not None,
        )
        for notice in decision.notices:
            ctx.emit({"type": "notice", "text": notice})
        return str(decision.tier)

    def _grammar(self, options: ChatOptions, ctx: TurnContext) -> str | None:
        """A call is forced by ``tool_choice`` required (any of the tools) or a name."""
        choice = options.tool_choice
        if choice in ("auto", "none"):
            return None
        tools = [t for t in options.tools if choice == "required" or choice == f"function:{t.name}"]
        specs = conversation.tool_specs(tools)
        calls = MAX_CALLS_PER_STEP if options.parallel_tool_calls else 1
        key = json.dumps([calls, [[t.name, t.parameters] for t in tools]], sort_keys=True)
        if key not in self._grammars:
            with ctx.trace.span("prompt.grammar"):
                try:
                    gbnf = client_grammar(
                        specs, self.engine.schema_to_gbnf, tool_format=self.format
                    )
                except Exception as exc:  # the converter refuses some schemas
                    raise BadRequestError(
                        f"cannot constrain the reply to the tools' parameters: {exc}",
                        hint="Simplify the tools' JSON schemas, or use tool_choice auto.",
                    ) from None
            if len(self._grammars) >= 16:
                self._grammars.pop(next(iter(self._grammars)))
            self._grammars[key] = gbnf
        return self._grammars[key]

    # -- the reply --------------------------------------------------------------------
    def _reply(
        self, options: ChatOptions, prompt: _Prompt, generation: Generation, hide_calls: bool
    ) -> dict[str, Any]:
        """The reply in OpenAI's terms, its tape registered under the conversation
        as the client will send it back.

        With tools, the text is what was streamed: up to the first call (text after
        the calls stays in the tape but is not content, or a streaming client and a
        plain one would send different histories back). A call cut off by
        ``max_tokens`` is dropped, from the tape too; the calls before it stand."""
        raw, ids = generation.text, generation.ids
        text, calls, hidden = raw, [], ""
        if hide_calls:
            call_open = self.format.tags.call_open
            names = {tool.name for tool in options.tools}
            parsed = self.format.parse(raw, f"call_{new_entry_id()[:8]}")
            cut = generation.stop_reason == "length" and parsed.calls
            if cut and not _client_call(parsed.calls[-1], names) and call_open in raw:
                raw = raw[: raw.rfind(call_open)]
                parsed = self.format.parse(raw, f"call_{new_entry_id()[:8]}")
            shown = raw.split(call_open, 1)[0]
            calls = [c for c in parsed.calls if _client_call(c, names)]
            if calls and len(calls) == len(parsed.calls):
                text = shown.strip()
            else:  # a malformed call is the model's text, not a call
                calls, text, hidden = [], raw, raw[len(shown) :]
        finish = "tool_calls" if calls else generation.stop_reason
        out_calls = [ChatCall(c.id, c.name, c.arguments) for c in calls]
        if prompt.builder is not None:
            # ``commit_reply`` keeps the generated ids that spell ``raw`` (all of them
            # unless a cut call was dropped) and tokenizes the rest.
            tape = prompt.builder.commit_reply(prompt.plan, ids, raw)
            reply = conversation.reply_message(text, out_calls)
            keys = conversation.prefix_keys(
                options.tools, [*options.messages, reply], salt=self._salt
            )
            self.tapes.put(keys[-1], tape)
        return {
            "text": text,
            "hiddenText": hidden,  # streamed as a last piece when a call did not parse
            "toolCalls": [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in out_calls
            ],
            "finishReason": "stop" if finish not in ("length", "tool_calls") else finish,
        }

    def park(self) -> None:
        """Idle time: save the tapes made since the last park (the live KV state is
        parked by the session tapes' park, which runs first)."""
        self.tapes.save()


def _client_call(call: ToolCall, names: set[str]) -> bool:
    """A parsed call of one of the client's tools (the formats' parsers check names
    against the daemon's own tools, so "unknown tool" is expected here)."""
    if call.name not in names:
        return False
    return call.error is None or call.error.startswith("unknown tool")
