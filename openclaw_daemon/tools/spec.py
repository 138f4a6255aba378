"""Tool definitions, their argument checks, and a parsed call, in no model's syntax.

How the definitions read in the head, and how calls and results read in the
model's text, is a tool-call format's (``tools/formats``). The definitions are
rendered once into the system prompt, byte-identical on every turn, so they
live in the cached head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


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

# What each tool accepts, as JSON-schema bounds the tool-call grammar enforces
# (tools/grammar.py), so a small model cannot write a line number of 10^15 or
# loop inside a string until --max-tokens. Kept out of the definitions above:
# those are the cached head's bytes, and the tools check the ranges themselves.
MAX_LINE = 10**9  # workspace.read's own limit
MAX_PATH = 4096  # workspace.MAX_PATH_CHARS
MAX_COMMAND = 4096
MAX_URL = 2048
_PATH_BOUND = {"maxLength": MAX_PATH}
ARGUMENT_BOUNDS: dict[tuple[str, str], dict[str, Any]] = {
    ("read", "path"): _PATH_BOUND,
    ("read", "offset"): {"minimum": 1, "maximum": MAX_LINE},
    ("read", "limit"): {"minimum": 0, "maximum": MAX_LINE},
    ("write", "path"): _PATH_BOUND,
    ("edit", "path"): _PATH_BOUND,
    ("exec", "command"): {"maxLength": MAX_COMMAND},
    ("exec", "timeout"): {"exclusiveMinimum": 0, "maximum": 600},  # exec_tool.MAX_TIMEOUT_S
    ("search", "query"): {"maxLength": 80},
    ("search", "path"): {"maxLength": 200},
    ("web_fetch", "url"): {"maxLength": MAX_URL},
}
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


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    error: str | None = None  # set when the call could not be parsed or is unknown
    # A native call's arguments as the server sent them (upstream.native_tools):
    # the next request repeats these bytes, not a re-serialisation of ``arguments``.
    arguments_text: str | None = None


@dataclass
class ParsedReply:
    text: str  # the reply without its tool calls
    calls: list[ToolCall] = field(default_factory=list)


def known_call(call_id: str, name: str, arguments: dict[str, Any]) -> ToolCall:
    """A parsed call, marked as an error when no tool has its name (every
    format's parser reports an unknown tool the same way)."""
    if name not in TOOLS_BY_NAME:
        known = ", ".join(TOOLS_BY_NAME)
        return ToolCall(call_id, name, arguments, f"unknown tool; known tools: {known}")
    return ToolCall(call_id, name, arguments)
