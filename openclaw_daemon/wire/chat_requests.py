"""Parse a ``chat`` request (``openclaw serve``'s OpenAI-style completions) into typed options.

The HTTP front forwards the client's body nearly as it came, so everything an
OpenAI client can send is checked here, once, with an error that names the
field the way the client spelled it (``messages[2].tool_calls[0].function.arguments``).
Content parts other than text (images, audio) are refused, not dropped: a
model that never saw the picture must not answer as if it had.

Standard library only (plus the error hierarchy and ``requests``' field checks).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openclaw_daemon.wire.errors import BadRequestError
from openclaw_daemon.wire.requests import (
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    MAX_SEED,
    MAX_STOP_CHARS,
    MAX_STOPS,
    MAX_TEMPERATURE,
    MAX_TIMEOUT_S,
    MAX_TOKENS_LIMIT,
    flag,
    integer,
    number,
    text,
    text_list,
)

MAX_CHAT_MESSAGES = 4096
MAX_CHAT_TOOLS = 128
MAX_TOOL_CALLS = 64
MAX_SCHEMA_CHARS = 64 * 1024
ROLES = ("system", "developer", "user", "assistant", "tool")
TOOL_CHOICES = ("auto", "none", "required")  # or "function:NAME"


@dataclass(frozen=True)
class ChatCall:
    """A tool call in an assistant message, as the client sent it back."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatTurnMessage:
    """One OpenAI chat message, its content flattened to text."""

    role: str  # developer is read as system
    content: str
    calls: tuple[ChatCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True)
class ChatTool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ChatOptions:
    """A ``chat`` request, every field checked (``messages.ChatRequest`` on the wire)."""

    messages: tuple[ChatTurnMessage, ...] = ()
    prompt: str | None = None  # a plain completion: no template, no tools
    tools: tuple[ChatTool, ...] = ()
    tool_choice: str = "auto"  # auto | none | required | function:NAME
    parallel_tool_calls: bool = True  # false: a forced reply holds one call
    max_tokens: int | None = None
    temperature: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    timeout_s: float | None = None


def _fail(name: str, problem: str, hint: str = "") -> BadRequestError:
    return BadRequestError(f"bad request field {name!r}: {problem}", hint=hint)


def _content(value: Any, name: str) -> str:
    """A message's content: a string, null, or a list of text parts."""
    if value is None:
        return ""
    if isinstance(value, str):
        checked = text({name: value}, name, limit=MAX_MESSAGE_CHARS)
        return checked or ""
    if not isinstance(value, list):
        raise _fail(name, f"must be a string or a list of parts, not {type(value).__name__}")
    pieces = []
    for index, part in enumerate(value):
        label = f"{name}[{index}]"
        if not isinstance(part, dict):
            raise _fail(label, "must be an object")
        if part.get("type") != "text":
            raise _fail(
                label,
                f"content parts of type {part.get('type')!r} are not supported",
                hint="Send text parts only; this model reads text.",
            )
        pieces.append(text(part, "text", limit=MAX_MESSAGE_CHARS, required=True) or "")
    joined = "".join(pieces)
    if len(joined) > MAX_MESSAGE_CHARS:
        raise _fail(name, f"is {len(joined)} characters long; the limit is {MAX_MESSAGE_CHARS}")
    return joined


def _arguments(value: Any, name: str) -> dict[str, Any]:
    """A call's ``arguments``: a JSON object, as a string (OpenAI's way) or an object."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise _fail(name, f"is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _fail(name, "must be a JSON object")
    return value


def _calls(value: Any, name: str) -> tuple[ChatCall, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_TOOL_CALLS:
        raise _fail(name, f"must be a list of at most {MAX_TOOL_CALLS} calls")
    calls = []
    for index, raw in enumerate(value):
        label = f"{name}[{index}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("function"), dict):
            raise _fail(label, "must be an object with a 'function'")
        function = raw["function"]
        call_name = text(function, "name", limit=MAX_NAME_CHARS, required=True) or ""
        calls.append(
            ChatCall(
                id=text(raw, "id", limit=MAX_NAME_CHARS * 4, default="") or "",
                name=call_name,
                arguments=_arguments(function.get("arguments"), f"{label}.function.arguments"),
            )
        )
    return tuple(calls)


def _message(raw: Any, index: int) -> ChatTurnMessage:
    name = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise _fail(name, "must be an object with a role and content")
    role = raw.get("role")
    if role not in ROLES:
        raise _fail(f"{name}.role", f"must be one of {', '.join(ROLES)}, not {role!r}")
    content = _content(raw.get("content"), f"{name}.content")
    calls = _calls(raw.get("tool_calls"), f"{name}.tool_calls") if role == "assistant" else ()
    call_id = ""
    if role == "tool":
        call_id = text(raw, "tool_call_id", limit=MAX_NAME_CHARS * 4, default="") or ""
    return ChatTurnMessage(
        role="system" if role == "developer" else role,
        content=content,
        calls=calls,
        tool_call_id=call_id,
    )


def _tool(raw: Any, index: int) -> ChatTool:
    name = f"tools[{index}]"
    if not isinstance(raw, dict) or raw.get("type", "function") != "function":
        raise _fail(name, "must be a function tool ({'type': 'function', 'function': {...}})")
    function = raw.get("function")
    if not isinstance(function, dict):
        raise _fail(f"{name}.function", "is required")
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise _fail(f"{name}.function.parameters", "must be a JSON schema object")
    if len(json.dumps(parameters)) > MAX_SCHEMA_CHARS:
        raise _fail(f"{name}.function.parameters", f"is over {MAX_SCHEMA_CHARS} characters")
    return ChatTool(
        name=text(function, "name", limit=MAX_NAME_CHARS, required=True) or "",
        description=text(function, "description", limit=MAX_SCHEMA_CHARS, default="") or "",
        parameters=parameters,
    )


def _list(message: Mapping[str, Any], name: str, limit: int) -> list[Any]:
    value = message.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(name, f"must be a list, not {type(value).__name__}")
    if len(value) > limit:
        raise _fail(name, f"has {len(value)} items; the limit is {limit}")
    return value


def _stop(message: Mapping[str, Any]) -> list[str]:
    # OpenAI takes one string or a list of them.
    value = message.get("stop")
    wrapped = {"stop": [value] if isinstance(value, str) else value}
    return text_list(wrapped, "stop", count=MAX_STOPS, limit=MAX_STOP_CHARS, allow_empty=False)


def parse_chat(message: Mapping[str, Any]) -> ChatOptions:
    prompt = text(message, "prompt", limit=MAX_MESSAGE_CHARS)
    messages = tuple(
        _message(raw, i) for i, raw in enumerate(_list(message, "messages", MAX_CHAT_MESSAGES))
    )
    if prompt is None and not messages:
        raise BadRequestError(
            "the request has no messages", hint="Send at least one message (or a prompt)."
        )
    if prompt is not None and messages:
        raise BadRequestError("give messages or a prompt, not both")
    tools = tuple(_tool(raw, i) for i, raw in enumerate(_list(message, "tools", MAX_CHAT_TOOLS)))
    if len({tool.name for tool in tools}) < len(tools):
        raise _fail("tools", "two tools have the same name")
    choice = text(message, "toolChoice", limit=MAX_NAME_CHARS + 9, default="auto") or "auto"
    named = choice.removeprefix("function:") if choice.startswith("function:") else None
    if choice not in TOOL_CHOICES and named is None:
        raise _fail(
            "tool_choice",
            f"{choice!r} is not a choice",
            hint="Use auto, none, required or {'type': 'function', 'function': {'name': ...}}.",
        )
    if named is not None and named not in {tool.name for tool in tools}:
        raise _fail("tool_choice", f"names {named!r}, which is not one of the request's tools")
    if choice == "required" and not tools:
        raise _fail("tool_choice", "is required, but the request has no tools")
    return ChatOptions(
        messages=messages,
        prompt=prompt,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=flag(message, "parallelToolCalls", default=True),
        max_tokens=integer(message, "maxTokens", low=1, high=MAX_TOKENS_LIMIT),
        temperature=number(message, "temperature", low=0.0, high=MAX_TEMPERATURE, default=0.0)
        or 0.0,
        seed=integer(message, "seed", low=0, high=MAX_SEED),
        stop=_stop(message),
        timeout_s=number(message, "timeoutS", low=0.0, high=MAX_TIMEOUT_S, positive=True),
    )
