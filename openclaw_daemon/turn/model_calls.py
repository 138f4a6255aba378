"""One model call of a turn: prefill the prompt (with progress), decode the reply
(streamed), each as a trace span.

A turn with tools makes several calls; each extends the live KV state, so
every call after the first prefills only what the previous step appended.
Text from a call's opening tag (the model's tool-call format's) on is not
streamed to the user: it is the call, reported as ``tool`` frames instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openclaw_daemon.model.base import DecodeStats, SamplingParams
from openclaw_daemon.model.tape import PromptPlan
from openclaw_daemon.model.text_stream import TextStream, control_tokens
from openclaw_daemon.tools.formats.base import CallTags
from openclaw_daemon.wire.errors import OpenClawError

if TYPE_CHECKING:
    from openclaw_daemon.model.base import Checkpoint, ModelEngine
    from openclaw_daemon.observability.tracing import Trace


@dataclass
class Generation:
    text: str
    ids: list[int]
    stop_reason: str
    first_token_at: float | None


@dataclass(frozen=True)
class CallOptions:
    """How one model call samples: a turn's from its checked request, the
    compactor's its own (a summary is greedy)."""

    temperature: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Drafts from the tape, verified in batches; None: where lossless (docs/internals.md).
    prompt_lookup: bool | None = None
    thinking: str = "off"  # --thinking: an upstream reasoning model's effort (upstream.model_call)


@dataclass
class CallContext:
    trace: Trace
    emit: Callable[[dict[str, Any]], None]
    cancelled: Callable[[], bool]
    index: int  # which model call of the turn, from 0


class ModelCalls:
    def __init__(
        self,
        engine: ModelEngine,
        *,
        prefill_batch: int,
        observe_prefill: Callable[[int, float], None],
        tags: CallTags,
    ) -> None:
        self.engine = engine
        self.tags = tags
        # The format's tags that are control tokens here: decoded with their
        # spelling, or ``[TOOL_CALLS]`` would vanish before the parser sees it.
        self.control = control_tokens(engine, tags.control)
        self.spelled = frozenset(self.control.values())
        self.prefill_batch = prefill_batch
        self.observe_prefill = observe_prefill
        # What the last interrupted decode had generated (its text was streamed
        # to the user), for the turn to store; None if no decode was cut short.
        # Per thread: turns on parallel sequences run on their own threads.
        self._local = threading.local()

    @property
    def partial(self) -> Generation | None:
        partial: Generation | None = getattr(self._local, "partial", None)
        return partial

    @partial.setter
    def partial(self, value: Generation | None) -> None:
        self._local.partial = value

    def prefill(
        self, plan: PromptPlan, call: CallContext, checkpoint: Checkpoint | None = None
    ) -> int:
        """Prefill what the live state lacks of ``plan``; returns the tokens reused.
        A ``checkpoint`` parks the state where it says, on the way."""
        clock = call.trace.clock
        start = clock()
        progress = [0]

        def on_progress(done: int, total: int) -> None:
            progress[0] = done
            elapsed = clock() - start
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = (total - done) / rate if rate > 0 else 0.0
            call.emit(
                {
                    "type": "progress",
                    "phase": "prefill",
                    "done": done,
                    "total": total,
                    "rate": round(rate, 1),
                    "etaS": round(eta, 2),
                }
            )

        try:
            reused = self.engine.prefill(
                plan.tokens,
                batch_size=self.prefill_batch,
                on_progress=on_progress,
                cancelled=call.cancelled,
                checkpoint=checkpoint,
            )
        except OpenClawError as exc:
            # A timed-out or cancelled turn keeps the time it spent here in its
            # trace. The live context holds the reused prefix plus the whole
            # batches done (an aborted batch leaves nothing).
            call.trace.add(
                "model.prefill",
                start,
                clock(),
                call=call.index,
                tokens=progress[0],
                cachedTokens=max(0, len(self.engine.live_tokens) - progress[0]),
                interrupted=exc.code,
            )
            raise
        end = clock()
        prefilled = len(plan.tokens) - reused
        self.observe_prefill(prefilled, end - start)
        call.trace.add(
            "model.prefill",
            start,
            end,
            call=call.index,
            tokens=prefilled,
            cachedTokens=reused,
            tokPerS=round(prefilled / (end - start), 1) if end > start else None,
            **({"checkpointAt": checkpoint[0]} if checkpoint and reused < checkpoint[0] else {}),
            # Which template rendered this prompt, and why (the trace answers
            # "was this Gemma prompt really Gemma's markup?").
            templateFamily=self.engine.info.template_family,
            templateSource=self.engine.info.template_source,
        )
        return reused

    def decode(
        self,
        options: CallOptions,
        max_tokens: int,
        call: CallContext,
        *,
        grammar: str | None,
        hide_calls: bool,
    ) -> Generation:
        params = SamplingParams(
            temperature=options.temperature, seed=options.seed, prompt_lookup=options.prompt_lookup
        )
        drafts = DecodeStats()
        stream, shown = self._streams(options, hide_calls=hide_calls)
        clock = call.trace.clock
        start = clock()
        first_token_at: float | None = None
        ids: list[int] = []
        stop_reason = "length"
        self.partial = None
        spelled, detokenize = self.spelled, self.engine.detokenize
        tokens = self.engine.generate(
            params, max_tokens=max_tokens, cancelled=call.cancelled, grammar=grammar, stats=drafts
        )
        try:
            # The per-token loop: keep extra calls and allocations out of it.
            for token in tokens:
                if first_token_at is None:
                    first_token_at = clock()
                if self.engine.is_end_of_generation(token):
                    stop_reason = "stop"
                    break
                ids.append(token)
                piece = detokenize([token], special=token in spelled)
                self._show(shown, stream.push(piece), call)
                if stream.stopped:
                    stop_reason = "stop"
                    break
        except OpenClawError as exc:
            self.partial = Generation(stream.text, ids, exc.code, first_token_at)
            call.trace.add(
                "model.decode",
                start,
                clock(),
                call=call.index,
                tokens=len(ids),
                interrupted=exc.code,
            )
            raise
        finally:
            # Closed here, not when collected: the live sequence must hold exactly
            # the reply before anything else uses the engine (drafts past a stop).
            close = getattr(tokens, "close", None)
            if close is not None:
                close()
        self._show(shown, stream.finish(), call)
        self._emit(shown.finish(), call)
        _trace_decode(call, start, clock(), len(ids), first_token_at, drafts)
        return Generation(stream.text, ids, stop_reason, first_token_at)

    def _streams(self, options: CallOptions, *, hide_calls: bool) -> tuple[TextStream, TextStream]:
        return reply_streams(options.stop, self.tags, hide_calls=hide_calls)

    @staticmethod
    def _show(shown: TextStream, piece: str, call: CallContext) -> None:
        show(shown, piece, call)

    @staticmethod
    def _emit(text: str, call: CallContext) -> None:
        emit_text(text, call)


def reply_streams(
    stop: tuple[str, ...] | list[str], tags: CallTags, *, hide_calls: bool
) -> tuple[TextStream, TextStream]:
    """The reply's stop filter, and the filter of what the user is shown (every
    engine's decode streams through both)."""
    stops = list(stop)
    # Tool responses are the runtime's to write; a small model imitating
    # one has finished its reply.
    stream = TextStream(stops + tags.result_stops if hide_calls else stops)
    # A second filter only for what the user sees: it stops at a tool call.
    shown = TextStream(tags.hidden if hide_calls else [])
    return stream, shown


def show(shown: TextStream, piece: str, call: CallContext) -> None:
    """Pass a piece of the reply on to what the user is shown."""
    if piece and not shown.stopped:
        emit_text(shown.push(piece.encode("utf-8")), call)


def emit_text(text: str, call: CallContext) -> None:
    if text:
        call.emit({"type": "token", "text": text})


def _trace_decode(
    call: CallContext,
    start: float,
    end: float,
    tokens: int,
    first_token_at: float | None,
    drafts: DecodeStats | None = None,
) -> None:
    """The span of a decode that finished (a stop, or the token limit); with
    prompt lookup, how many draft tokens were verified and kept."""
    lookup = (
        {
            "drafted": drafts.drafted,
            "draftAccepted": drafts.accepted,
            "draftBatches": drafts.batches,
            "draftsExact": drafts.exact,  # the reply is plain decoding's
        }
        if drafts is not None and drafts.lookup
        else {}
    )
    if drafts is not None and drafts.shared_steps:  # --parallel: steps with other turns
        lookup |= {
            "steps": drafts.steps,
            "sharedSteps": drafts.shared_steps,
            "mostSequences": drafts.most_sequences,
        }
    call.trace.add(
        "model.decode",
        start,
        end,
        call=call.index,
        tokens=tokens,
        firstTokenMs=round(call.trace.offset_ms(first_token_at), 3) if first_token_at else None,
        tokPerS=round(tokens / (end - start), 1) if tokens and end > start else None,
        **lookup,
    )
