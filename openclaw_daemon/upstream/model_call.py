"""One model call of a turn on an upstream engine, with retries and fallbacks.

The call streams the reply through the same filters as the embedded engine's
(the reply's stops; a tool call hidden from the user) and returns a ``Generation``
the agent loop parses. A retryable failure before any text reached the user is
retried with capped backoff on the same engine, then the next engine of the chain
is tried (``agents.defaults.model.fallbacks``); once text has streamed, the error
goes up and the turn keeps what the user saw, marked as interrupted.

Spans: ``model.prefill`` runs from the request to the first token (the server's
prefill, and the network), ``model.decode`` from there to the end, both naming the
engine; the token counts are the server's own when it reports them.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import httpx

from openclaw_daemon.model.text_stream import TextStream
from openclaw_daemon.observability.turn_record import usage_buckets
from openclaw_daemon.tools.formats.base import CallTags
from openclaw_daemon.turn import window
from openclaw_daemon.turn.model_calls import (
    CallContext,
    CallOptions,
    Generation,
    emit_text,
    reply_streams,
    show,
)
from openclaw_daemon.upstream import retry
from openclaw_daemon.upstream.chat_stream import ChatEnd, chat_body, stream_chat
from openclaw_daemon.upstream.completion_prompt import CompletionPrompt
from openclaw_daemon.upstream.completion_stream import completion_body, stream_completion
from openclaw_daemon.upstream.native_tools import NativeRequest
from openclaw_daemon.upstream.targets import Target, UpstreamTargets
from openclaw_daemon.upstream.thinking import reasoning_effort
from openclaw_daemon.upstream.usage import ServerUsage, tier_name
from openclaw_daemon.wire.errors import (
    CancelledError,
    UpstreamContextOverflowError,
    UpstreamError,
)
from openclaw_daemon.wire.messages import Usage

T = TypeVar("T")

# llama.cpp's servers (known from the tokenize endpoint they answered): their chat
# endpoint takes a GBNF ``grammar`` (a tool call forced by --tool-choice is then
# well-formed even from a small model, as on the embedded engine) and ``cache_prompt``.
LLAMA_SERVERS = frozenset({"llama-server", "llama-cpp-python"})


def _takes_cache_key(target: Target) -> bool:
    """OpenAI's own API routes requests with one ``prompt_cache_key`` to one cache."""
    return "api.openai.com" in target.client.base_url


def until_cancelled(fn: Callable[[], T], cancelled: Callable[[], bool]) -> T:
    """``fn()`` on a helper thread, given up on as soon as ``cancelled()``: a server
    that has not sent its headers yet cannot be interrupted otherwise. The helper sees
    the cancel at its next chunk (or its own timeout) and ends by itself."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name="upstream-call").start()
    while not done.wait(CancelWatch.POLL_S):
        if cancelled():
            raise CancelledError("the turn was cancelled")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _request_error(error: UpstreamError) -> bool:
    """A 4xx the request itself caused (not auth, not "no such model here", not
    rate limiting): another engine would refuse it too, so no fallback."""
    return 400 <= error.status < 500 and error.status not in (401, 403, 404, 408, 429)


class CancelWatch:
    """Closes a streaming response from another thread once the turn is cancelled (or
    times out), so a stalled upstream does not hold the turn for its chunk timeout:
    the blocked read fails at once and the call ends as cancelled."""

    POLL_S = 0.05

    def __init__(self, cancelled: Callable[[], bool]) -> None:
        self._cancelled = cancelled
        self._done = threading.Event()
        self.fired = False

    def opened(self, response: httpx.Response) -> None:
        threading.Thread(target=self._watch, args=(response,), daemon=True).start()

    def _watch(self, response: httpx.Response) -> None:
        while not self._done.wait(self.POLL_S):
            if self._cancelled():
                self.fired = True
                # Response.close() would wait for the read in progress; shutting the
                # socket down makes that read return now (the connection is dropped).
                stream = response.extensions.get("network_stream")
                sock = stream.get_extra_info("socket") if stream is not None else None
                with contextlib.suppress(OSError):  # it may be closed already
                    if sock is not None:
                        sock.shutdown(socket.SHUT_RDWR)
                return

    def stop(self) -> None:
        self._done.set()


class _Request(NamedTuple):
    messages: Sequence[dict[str, Any]]
    prompt_tokens: list[int]  # as counted: exactly the ids sent on the raw path
    completion: CompletionPrompt | None  # the raw path's prompt; None: chat completions
    tokenizer_source: str
    native: NativeRequest | None  # native tool calling (never on the raw path)


@dataclass
class CallResult:
    generation: Generation
    usage: Usage
    target: Target  # the engine that answered
    server: ServerUsage  # what it reported (source "none": nothing)
    prompt_tokens: list[int]  # the request as we counted it
    estimate: bool  # the counts are the offline estimate's, not the server's tokenizer
    failed: list[str]  # engines tried before it, with why


class UpstreamCalls:
    def __init__(self, targets: UpstreamTargets, tags: CallTags) -> None:
        self.targets = targets
        self.tags = tags
        # One per turn (turns run at once). The reply an error cut short (its text
        # reached the user), for the turn to keep; the engines that failed before the
        # last call's answer; the engine that said the prompt overflows.
        self.partial: Generation | None = None
        self.failed: list[str] = []
        self.overflowed_on: Target | None = None

    def call(
        self,
        chain: Sequence[Target],
        messages: Sequence[dict[str, Any]],
        options: CallOptions,
        max_tokens: int,
        call: CallContext,
        *,
        hide_calls: bool,
        cache_key: str,
        grammar: str | None = None,
        native: NativeRequest | None = None,
    ) -> CallResult:
        """The reply from the first engine of ``chain`` that gives one. ``grammar``
        (GBNF) constrains it on the servers that take one (llama.cpp's); ``native``:
        the tools go as OpenAI ``tools`` and its reply's calls are collected there."""
        failed: list[str] = []
        self.partial, self.failed, self.overflowed_on = None, failed, None
        for index, target in enumerate(chain):
            try:
                # On a helper thread, given up on at a cancel: a stalled server (its
                # tokenize or its reply's headers) cannot hold the turn past --timeout.
                return until_cancelled(
                    functools.partial(
                        self._call_on, target, messages, options, max_tokens, call, hide_calls,
                        cache_key, failed, grammar, native,
                    ),
                    call.cancelled,
                )  # fmt: skip
            except UpstreamContextOverflowError:
                self.overflowed_on = target  # the turn compacts for this engine's window
                raise
            except UpstreamError as exc:
                last = index + 1 == len(chain)
                if last or self.partial is not None or _request_error(exc):
                    raise
                if call.cancelled():
                    raise CancelledError("the turn was cancelled") from None
                following = chain[index + 1]
                failed.append(f"{target.ref}: {exc.message}")
                call.trace.add(
                    "upstream.fallback",
                    call.trace.clock(),
                    call.trace.clock(),
                    engine=target.engine,
                    error=exc.message,
                    next=following.engine,
                )
                call.emit(
                    {
                        "type": "notice",
                        "text": f"{target.ref} failed ({exc.message}); trying {following.ref}",
                    }
                )
        raise AssertionError("unreachable: the chain is never empty")

    def _events(
        self,
        target: Target,
        request: _Request,
        options: CallOptions,
        room: int,
        cache_key: str,
        grammar: str | None,
        native: NativeRequest | None = None,
    ) -> Callable[[Callable[[httpx.Response], None]], Generator[str | ChatEnd, None, None]]:
        """The call's request: our own prompt ids to llama-server's raw ``/completion``
        where it shares its template, else the messages to chat completions."""
        completion = request.completion
        if completion is not None:
            body = completion_body(
                request.prompt_tokens,
                max_tokens=room,
                temperature=options.temperature,
                seed=options.seed,
                stop=options.stop,
                grammar=grammar,
            )
            return functools.partial(stream_completion, target.client, completion.url, body)
        llama = request.tokenizer_source in LLAMA_SERVERS
        body = chat_body(
            target.model.id,
            request.messages,
            max_tokens=room,
            temperature=options.temperature,
            seed=options.seed,
            stop=options.stop,
            # Extensions only where known: some gateways refuse unknown fields with a 400.
            cache_key=cache_key if _takes_cache_key(target) else None,
            cache_prompt=llama,
        )
        if grammar and llama:
            body["grammar"] = grammar  # llama.cpp's extension to the OpenAI request
        if options.thinking != "off" and target.model.reasoning:
            body["reasoning_effort"] = reasoning_effort(options.thinking)
        native = request.native
        if native is not None:  # never on /completion: see targets.completion_prompt
            native.add_to(body, request.messages)
            return functools.partial(native.stream, target.ref, target.client, body)
        return functools.partial(stream_chat, target.client, body)

    def _call_on(
        self,
        target: Target,
        messages: Sequence[dict[str, Any]],
        options: CallOptions,
        max_tokens: int,
        call: CallContext,
        hide_calls: bool,
        cache_key: str,
        failed: list[str],
        grammar: str | None,
        native: NativeRequest | None = None,
    ) -> CallResult:
        trace, clock = call.trace, call.trace.clock
        tokenizer = self.targets.tokenizer(target)
        with trace.span("prompt.tokenize", engine=target.engine) as span:
            sized = native.counted(messages) if native is not None else messages
            prompt_tokens, completion = self.targets.prompt_ids(target, sized)
            span.update(tokens=len(prompt_tokens), estimate=tokenizer.estimate,
                        tokenizer=tokenizer.source,
                        endpoint="completion" if completion else "chat")  # fmt: skip
        window_size = target.model.context_window
        room = max_tokens
        if target.model.max_tokens:
            room = min(room, target.model.max_tokens)
        if window_size:
            if not window.admits(len(prompt_tokens), window_size, room):
                raise UpstreamContextOverflowError(
                    f"the prompt is about {len(prompt_tokens)} tokens but {target.ref}'s "
                    f"context window holds {window_size}, with {window.reply_room(room)} "
                    "needed for the reply",
                    hint="Compact the session (openclaw sessions compact ID) or start a new "
                    "one with --session-id NEW.",
                )
            room = max(1, min(room, window_size - len(prompt_tokens)))
        request = _Request(messages, prompt_tokens, completion, tokenizer.source, native)
        events = self._events(target, request, options, room, cache_key, grammar)
        start = clock()
        state: dict[str, Any] = {}

        def attempt() -> tuple[TextStream, float | None, ChatEnd | None]:
            stream, shown = reply_streams(options.stop, self.tags, hide_calls=hide_calls)
            state.update(stream=stream, first=None)
            end: ChatEnd | None = None
            watch = CancelWatch(call.cancelled)
            try:
                with contextlib.closing(events(watch.opened)) as items:
                    for item in items:
                        if call.cancelled():
                            raise CancelledError("the turn was cancelled")
                        if isinstance(item, ChatEnd):
                            end = item
                            break
                        if state["first"] is None:
                            state["first"] = clock()
                        show(shown, stream.push(item.encode("utf-8")), call)
                        if stream.stopped:
                            break  # closing the stream stops the server's generation
            except UpstreamError:
                if watch.fired:  # the watch closed the stream: a cancel, not a failure
                    raise CancelledError("the turn was cancelled") from None
                raise
            finally:
                watch.stop()
            show(shown, stream.finish(), call)
            emit_text(shown.finish(), call)
            return stream, state["first"], end

        def may_retry() -> bool:
            # Never once text was shown, or after a tool ran in the turn (call 0 only).
            return state.get("first") is None and call.index == 0 and not call.cancelled()

        try:
            stream, first, end = retry.call_with_retries(attempt, may_retry=may_retry)
        except (UpstreamError, CancelledError) as exc:
            if call.cancelled() and not isinstance(exc, CancelledError):
                exc = CancelledError("the turn was cancelled")
            streamed: TextStream | None = state.get("stream")
            if streamed is not None and state.get("first") is not None:
                text = streamed.text
                # Counted locally: the server that failed may not answer a tokenize.
                counted = self.targets.estimate().tokenize(text) if text else []
                self.partial = Generation(text, counted, exc.code, state["first"])
            trace.add("model.decode", start, clock(), call=call.index, engine=target.engine,
                      interrupted=exc.code)  # fmt: skip
            raise exc from None
        ended = clock()
        stop_reason = "stop" if stream.stopped or (end and end.finish_reason != "length") else ""
        stop_reason = stop_reason or "length"
        server = end.usage if end is not None else ServerUsage(None, None, None, "none")
        # The reply's ids only count its tokens here (the transcript keeps its text):
        # a server that reports the count spares a tokenize round trip per call.
        ids: list[int] = []
        if server.output is None and stream.text:
            try:
                ids = tokenizer.tokenize(stream.text)
            except UpstreamError:  # the reply is complete; only its count is lost
                ids = self.targets.estimate().tokenize(stream.text)
        prompt = server.prompt if server.prompt is not None else len(prompt_tokens)
        cached = server.cached or 0
        output = server.output if server.output is not None else len(ids)
        first_at = first or ended
        trace.add(
            "model.prefill",
            start,
            first_at,
            call=call.index,
            tokens=prompt - cached,
            cachedTokens=server.cached,
            tier=tier_name(target.provider.id),
            engine=target.engine,
            usageSource=server.source,
        )
        trace.add(
            "model.decode",
            first_at,
            ended,
            call=call.index,
            tokens=output,
            engine=target.engine,
            firstTokenMs=round(trace.offset_ms(first), 3) if first else None,
            tokPerS=round(output / (ended - first_at), 1) if output and ended > first_at else None,
        )
        generation = Generation(stream.text, ids, stop_reason, first)
        return CallResult(
            generation,
            usage_buckets(prompt - cached, cached, output),
            target,
            server,
            prompt_tokens,
            tokenizer.estimate,
            failed,
        )
