"""Tool definitions and the tool-call text format (Hermes / Qwen style, for ChatML models).

The definitions are rendered once into the system prompt, byte-identical on
every turn, so they live in the cached head. A call is a JSON object inside
``<tool_call>`` tags; a result goes back as a ``tool`` message wrapped in
``<tool_response>`` tags. Parsing is strict: a malformed call is reported to
the model as an error result, never guessed at.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
RESULT_TAGS = ("<tool_response>", "</tool_response>")
_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]
    permission: str | None = None  # "write", "edit" or "exec": needs --allow
    idempotent: bool = False  # results may be served from a short-lived cache

    def definition(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


_PATH = {"type": "string", "description": "file path, relative to the workspace"}

TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "read",
        "Read a text file from the workspace.",
        _object(
            {
                "path": _PATH,
                "offset": {"type": "integer", "description": "first line, from 1"},
                "limit": {"type": "integer", "description": "number of lines"},
            },
            ["path"],
        ),
        idempotent=True,
    ),
    ToolSpec(
        "write",
        "Write a text file in the workspace, replacing it if it exists.",
        _object({"path": _PATH, "content": {"type": "string"}}, ["path", "content"]),
        permission="write",
    ),
    ToolSpec(
        "edit",
        "Replace an exact string in a workspace file.",
        _object(
            {"path": _PATH, "old": {"type": "string"}, "new": {"type": "string"}},
            ["path", "old", "new"],
        ),
        permission="edit",
    ),
    ToolSpec(
        "exec",
        "Run a shell command in the workspace and return its output.",
        _object(
            {
                "command": {"type": "string"},
                "timeout": {"type": "number", "description": "seconds, default 30"},
            },
            ["command"],
        ),
        permission="exec",
    ),
    ToolSpec(
        "search",
        "Search the workspace's text files for a string; returns matching lines.",
        _object(
            {"query": {"type": "string"}, "path": {"type": "string", "description": "subfolder"}},
            ["query"],
        ),
        idempotent=True,
    ),
    ToolSpec(
        "web_fetch",
        "Fetch an http(s) URL and return its text.",
        _object({"url": {"type": "string"}}, ["url"]),
        idempotent=True,
    ),
)
TOOLS_BY_NAME = {tool.name: tool for tool in TOOLS}
# Opt-ins that widen a tool's policy rather than permit a tool: web_fetch
# refuses private and loopback addresses unless the turn allows them.
PRIVATE_FETCH = "web_fetch:private"
PERMISSIONS = frozenset(t.permission for t in TOOLS if t.permission) | {PRIVATE_FETCH}

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int, float),  # 3.0 is an integer in JSON; the tool checks it is whole
    "number": (int, float),
    "object": (dict,),
}


def check_arguments(tool: ToolSpec, arguments: dict[str, Any]) -> str | None:
    """Why ``arguments`` do not fit ``tool``'s schema, or None when they do.

    Only declared properties, each of its declared type (a bool is no number,
    NaN and inf are no numbers either), and every required one present. The
    tools check ranges themselves; this is the part every tool shares.
    """
    properties: dict[str, Any] = tool.parameters["properties"]
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        return f"{tool.name} takes no argument {', '.join(map(repr, unknown))}"
    for name in tool.parameters.get("required", []):
        if arguments.get(name) is None:
            return f"{tool.name} needs the argument {name!r}"
    for name, value in arguments.items():
        if value is None:
            continue
        kind = properties[name].get("type", "string")
        if isinstance(value, bool) or not isinstance(value, _JSON_TYPES.get(kind, (object,))):
            return f"{tool.name}: {name!r} must be a {kind}, not {type(value).__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{tool.name}: {name!r} must be a finite number, not {value!r}"
    return None


def tools_prompt(tools: tuple[ToolSpec, ...] = TOOLS) -> str:
    """The tools section of the system prompt (the format Qwen 2.5 and Hermes use)."""
    lines = "\n".join(json.dumps(t.definition(), separators=(", ", ": ")) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{lines}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    error: str | None = None  # set when the call could not be parsed or is unknown


@dataclass
class ParsedReply:
    text: str  # the reply without its tool calls
    calls: list[ToolCall] = field(default_factory=list)


def parse_reply(text: str, call_id_prefix: str) -> ParsedReply:
    """Split a reply into its text and its tool calls, strictly.

    An exact repeat of an earlier call in the same reply is dropped: small
    models repeat themselves, and running the same call twice helps nobody.
    """
    calls: list[ToolCall] = []
    seen: set[str] = set()
    for match in _CALL_RE.finditer(text):
        call = _parse_call(match.group(1), f"{call_id_prefix}_{len(calls)}")
        signature = json.dumps([call.name, call.arguments, call.error], sort_keys=True)
        if signature not in seen:
            seen.add(signature)
            calls.append(call)
    if CALL_OPEN in _CALL_RE.sub("", text):
        calls.append(
            ToolCall(f"{call_id_prefix}_{len(calls)}", "?", {}, "unterminated <tool_call>")
        )
    return ParsedReply(_CALL_RE.sub("", text).split(CALL_OPEN)[0].strip(), calls)


def _parse_call(body: str, call_id: str) -> ToolCall:
    try:
        data = json.loads(body)
    except ValueError as exc:
        return ToolCall(call_id, "?", {}, f"the tool call is not valid JSON: {exc}")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return ToolCall(call_id, "?", {}, 'a tool call needs {"name": ..., "arguments": {...}}')
    arguments = data.get("arguments", {})
    if isinstance(arguments, str):  # some models double-encode
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments)
    if not isinstance(arguments, dict):
        return ToolCall(call_id, data["name"], {}, "tool arguments must be a JSON object")
    if data["name"] not in TOOLS_BY_NAME:
        known = ", ".join(TOOLS_BY_NAME)
        return ToolCall(call_id, data["name"], arguments, f"unknown tool; known tools: {known}")
    return ToolCall(call_id, data["name"], arguments)


def format_call(call: ToolCall) -> str:
    body = json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
    return f"{CALL_OPEN}\n{body}\n{CALL_CLOSE}"


def format_result(content: str) -> str:
    return f"{RESULT_TAGS[0]}\n{content}\n{RESULT_TAGS[1]}"
