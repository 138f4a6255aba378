"""Native OpenAI tool calling, for the upstream models ``edge.nativeTools`` names.

By default an upstream turn's tools are our own format in the prompt (Hermes tags in
the system message, ``upstream.turns.TOOL_FORMAT``), which every server carries. A
model listed in ``edge.nativeTools`` gets them the server's way instead:

- the request carries ``tools`` (our specs' JSON schemas, the same bytes on every
  request, so the server's rendering of them stays in its cached prefix) and a
  ``tool_choice`` from the turn's --tool-choice (``tool_choice``);
- the reply's ``tool_calls`` (streamed ``delta.tool_calls`` fragments, or a
  non-streamed message's whole calls) are put together by ``CallAccumulator`` and
  become the ``ToolCall``s the agent loop runs (``parsed_calls``);
- the history goes back natively: the assistant message with ``tool_calls``, each
  result a ``tool`` message (``native_transcript``).

No turn logic, and nothing above the chat stream (``request_tokens`` imports
``counted_content`` from here): the turn's side is ``tool_modes``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from openclaw_daemon.tools.spec import TOOLS, TOOLS_BY_NAME, ToolCall, known_call
from openclaw_daemon.upstream.chat_stream import ChatEnd, stream_chat
from openclaw_daemon.upstream.http_client import UpstreamClient
from openclaw_daemon.wire.errors import UpstreamContextOverflowError, UpstreamError

# Built once: every request of every session sends exactly these bytes.
TOOL_DEFINITIONS = [tool.definition() for tool in TOOLS]
# How our request count sees them: the server renders them into the prompt, in
# its template's words; their JSON is near enough, and the same on every request.
_COUNTED_TOOLS = {"role": "tools", "content": json.dumps(TOOL_DEFINITIONS)}
# What a server that does not take ``tools`` answers (vLLM without
# --enable-auto-tool-choice, a gateway's validation): a request error.
_REFUSALS = (400, 422)

ToolChoice = str | dict[str, Any] | None


def tool_choice(choice: str, index: int, max_steps: int) -> ToolChoice:
    """The OpenAI ``tool_choice`` of model call ``index`` for --tool-choice ``choice``,
    or None to leave it out (the server's default with tools: ``auto``). As on the
    embedded loop (``grammar.constrains``): a named tool forces the first call,
    ``required`` every call but the last one --max-steps allows."""
    if choice == "none":
        return "none"
    if choice in TOOLS_BY_NAME:
        return {"type": "function", "function": {"name": choice}} if index == 0 else None
    if choice == "required" and index < max_steps - 1:
        return "required"
    # "auto" is left out rather than said: llama-cpp-python's chatml-function-calling
    # fails a streamed "auto" reply that calls a tool, and answers in text without it.
    return None


@dataclass
class NativeCall:
    """One call of a reply as the server streamed it; ``arguments`` is its JSON text."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


class CallAccumulator:
    """The calls of one reply, from its events' ``tool_calls`` lists. OpenAI streams
    each call's ``id`` and ``name`` once and its ``arguments`` in fragments, keyed by
    ``index``; llama-cpp-python repeats the id and name in every fragment, and a
    non-streamed message has whole calls without an index (their order is theirs)."""

    def __init__(self) -> None:
        self._calls: dict[int, NativeCall] = {}

    def feed(self, items: Sequence[Any]) -> None:
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            index = item.get("index")
            if not isinstance(index, int) or isinstance(index, bool):
                index = self._slot(item.get("id"), position)
            call = self._calls.setdefault(index, NativeCall(index))
            function = item.get("function")
            function = function if isinstance(function, dict) else {}
            # An id or a name is never sent in pieces: the first one given is it.
            if isinstance(item.get("id"), str) and not call.id:
                call.id = item["id"]
            if isinstance(function.get("name"), str) and not call.name:
                call.name = function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                call.arguments += arguments
            elif isinstance(arguments, dict):  # a server that sends the object itself
                call.arguments += json.dumps(arguments, ensure_ascii=False)

    def _slot(self, call_id: Any, position: int) -> int:
        """Where an item without an index goes: the call with its id, else a new one;
        without an id, the call under way (a stream that numbers nothing), each item
        of one list its own call (a message's whole calls)."""
        if call_id:
            for index, call in self._calls.items():
                if call.id == call_id:
                    return index
            return max(self._calls, default=-1) + 1
        return max(self._calls, default=0) + position

    def calls(self) -> list[NativeCall]:
        return [self._calls[index] for index in sorted(self._calls)]


def parsed_calls(calls: Sequence[NativeCall], id_prefix: str) -> list[ToolCall]:
    """The reply's calls as the agent loop runs them, checked as strictly as our own
    format's: arguments that are not a JSON object make a call with ``error`` set,
    reported to the model. Each keeps its server id (the ``tool`` message answers
    it) and its arguments' text as generated (the history repeats those bytes)."""
    parsed: list[ToolCall] = []
    for number, native in enumerate(calls):
        call_id = native.id or f"{id_prefix}_{number}"
        text = native.arguments
        try:
            arguments = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            call = ToolCall(call_id, native.name or "?", {}, f"the arguments are not JSON: {exc}")
        else:
            if not native.name:
                call = ToolCall(call_id, "?", {}, "the tool call names no function")
            elif not isinstance(arguments, dict):
                call = ToolCall(call_id, native.name, {}, "tool arguments must be a JSON object")
            else:
                call = known_call(call_id, native.name, arguments)
        call.arguments_text = text
        parsed.append(call)
    return parsed


def arguments_text(arguments: dict[str, Any], text: Any) -> str:
    """A call's arguments as the history sends them: as generated when known."""
    return text if isinstance(text, str) else json.dumps(arguments, ensure_ascii=False)


def assistant_message(text: str, calls: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A reply as the next request repeats it; ``calls`` are ``{id, name, arguments,
    argumentsText?}`` (the transcript's toolCall blocks, or a live step's calls)."""
    if not calls:
        return {"role": "assistant", "content": text}
    return {
        "role": "assistant",
        # A string even when empty: OpenAI takes null too, but llama-cpp-python's
        # request validation refuses it (and its tool template needs the key).
        "content": text,
        "tool_calls": [
            {
                "id": call["id"],
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": arguments_text(call["arguments"], call.get("argumentsText")),
                },
            }
            for call in calls
        ],
    }


def tool_message(call_id: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def counted_content(message: dict[str, Any]) -> str:
    """A message's text as our request count sees it: its content, then each native
    call's name and arguments (the server renders those into the prompt too)."""
    text = message.get("content") or ""
    for call in message.get("tool_calls") or ():
        function = call.get("function", {})
        text += f"\n{function.get('name', '')} {function.get('arguments', '')}"
    return str(text)


class NativeRequest:
    """One model call with native tools: what it adds to the chat request, and the
    calls its reply made (``calls``, read by the turn once the call returned)."""

    def __init__(self, choice: ToolChoice) -> None:
        self.choice = choice
        self.accumulator = CallAccumulator()

    def add_to(self, body: dict[str, Any], messages: Sequence[dict[str, Any]]) -> None:
        # The messages whole: native ones carry tool_calls and tool_call_id.
        body["messages"] = [dict(message) for message in messages]
        body["tools"] = TOOL_DEFINITIONS
        if self.choice is not None:
            body["tool_choice"] = self.choice

    def calls(self) -> list[NativeCall]:
        return self.accumulator.calls()

    def counted(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The request as our count of it sees it: the tools, then the messages (the
        window check then holds the tools too, and the append-only check is over the
        same constant prefix every request)."""
        return [_COUNTED_TOOLS, *messages]

    def stream(
        self,
        target_ref: str,
        client: UpstreamClient,
        body: dict[str, Any],
        opened: Callable[[httpx.Response], None] | None = None,
    ) -> Generator[str | ChatEnd, None, None]:
        """``stream_chat`` with the calls accumulated on the way; a server that
        refuses the request is named, with the way back to our own format."""
        self.accumulator = CallAccumulator()  # a retried attempt starts over
        events = stream_chat(client, body, opened, on_tool_calls=self.accumulator.feed)
        with contextlib.closing(events):
            try:
                yield from events
            except UpstreamContextOverflowError:
                raise
            except UpstreamError as exc:
                if exc.status not in _REFUSALS:
                    raise
                raise refused(exc, target_ref) from None


def refused(error: UpstreamError, target_ref: str) -> UpstreamError:
    provider = target_ref.partition("/")[0]
    return UpstreamError(
        f"{error.message}; {target_ref} is in edge.nativeTools, so the request carried "
        f"OpenAI tools, which provider {provider!r} may not support",
        hint=f"Remove {target_ref!r} from edge.nativeTools in openclaw.json to send tools "
        "in the prompt instead (or enable tool calling on the server).",
        status=error.status,
    )
