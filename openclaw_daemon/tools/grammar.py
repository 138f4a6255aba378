"""GBNF that makes even a 135M model emit well-formed tool calls.

``tool_choice`` = "required" (some tool) or a tool's name constrains the reply
to one or more calls (in the model's tool-call format: its ``call_schema`` and
``wrap_grammar``) whose arguments match the tools' schemas;
"auto" and "none" leave decoding free (calls are still parsed strictly). The
schemas are sanitized first: llama.cpp's converter rejects or explodes on
unanchored ``pattern`` and huge ``maxLength``. The JSON-schema conversion
itself is llama-cpp-python's, passed in by the engine (the one llama_cpp
import).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from openclaw_daemon.tools.formats.base import ToolFormat
from openclaw_daemon.tools.spec import ARGUMENT_BOUNDS, TOOLS, TOOLS_BY_NAME, ToolSpec
from openclaw_daemon.wire.errors import BadRequestError

CHOICES = ("auto", "none", "required")
_MAX_LENGTH_KEPT = 4096
_DROPPED_KEYS = ("format", "$schema", "examples")


def sanitize(schema: Any) -> Any:
    """A copy of ``schema`` without what the GBNF converter cannot take."""
    if isinstance(schema, list):
        return [sanitize(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    clean = {}
    for key, value in schema.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "pattern" and not (
            isinstance(value, str) and value.startswith("^") and value.endswith("$")
        ):
            continue
        if key in ("maxLength", "maxItems") and isinstance(value, int) and value > _MAX_LENGTH_KEPT:
            continue
        clean[key] = sanitize(value)
    return clean


def check_choice(choice: str) -> str:
    if choice in CHOICES or choice in TOOLS_BY_NAME:
        return choice
    raise BadRequestError(
        f"unknown --tool-choice {choice!r}",
        hint=f"Use one of: {', '.join(CHOICES)}, or a tool name: {', '.join(TOOLS_BY_NAME)}.",
    )


# Tools whose "path" must name an existing file: the grammar lists the
# workspace's files, so a small model cannot misspell one.
_EXISTING_PATH_TOOLS = ("read", "edit")
MAX_LISTED_FILES = 200
# Small models repeat a call until the token limit; a step runs at most this many.
MAX_CALLS_PER_STEP = 4


_URL_RE = re.compile(r"https?://[^\s\"'<>`]+")


def urls_in(text: str) -> list[str]:
    """The http(s) URLs a message mentions, for constraining ``web_fetch``."""
    return sorted({url.rstrip(".,;:!?)") for url in _URL_RE.findall(text)})


# Every argument's bounds (spec.ARGUMENT_BOUNDS) go into the grammar only (the
# schemas in the cached head stay as they are). A small model deep in a long
# prompt can loop inside a string ("1.1.1.1...", measured on a 6.6k-token
# prompt) until --max-tokens cuts the call off, or write offset 10^15 (Gemma 3);
# the bounds make it close the string, and keep numbers in the tool's range.


def _arguments(
    tool: ToolSpec, files: list[str], urls: list[str], bounds: dict[str, str]
) -> dict[str, Any]:
    schema = sanitize(tool.parameters)
    for (name, field), bound in ARGUMENT_BOUNDS.items():
        if tool.name == name:
            schema["properties"][field] = {**schema["properties"][field], **bound}
    if tool.name in _EXISTING_PATH_TOOLS and files:
        schema["properties"]["path"] = {"enum": files}
    if tool.name == "web_fetch" and urls:
        schema["properties"]["url"] = {"enum": urls}
    for field, value in schema["properties"].items():
        rule = bounded_rule(value)
        if rule is not None:
            placeholder = f"OPENCLAWBOUND{len(bounds)}"
            bounds[placeholder] = rule
            schema["properties"][field] = {"enum": [placeholder]}
    return schema


# llama.cpp's JSON-schema converter ignores minimum and maximum (a TODO there),
# and writes maxLength as nested optionals; so a bounded value is swapped for
# a placeholder the converter writes as a literal, and the literal replaced by
# the rule below. A JSON string's character, as the converter spells it:
_CHAR_RULE = 'bounded-char ::= [^"\\\\] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})'


def bounded_rule(schema: dict[str, Any]) -> str | None:
    """GBNF for a bounded integer, number or string schema; None for others."""
    if "enum" in schema or "const" in schema:
        return None
    kind = schema.get("type")
    if kind == "integer" and "minimum" in schema and "maximum" in schema:
        return f"({int_range(int(schema['minimum']), int(schema['maximum']))}) space"
    if kind == "number" and "maximum" in schema:
        digits = len(str(int(schema["maximum"])))
        return f'([0-9]{{1,{digits}}} ("." [0-9]{{1,6}})?) space'
    if kind == "string" and isinstance(schema.get("maxLength"), int) and "pattern" not in schema:
        return f'"\\"" bounded-char{{0,{schema["maxLength"]}}} "\\"" space'
    return None


def int_range(low: int, high: int) -> str:
    """GBNF alternatives matching exactly the decimal integers ``low..high`` (>= 0)."""
    parts = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        start = low if digits == len(str(low)) else 10 ** (digits - 1)
        end = high if digits == len(str(high)) else 10**digits - 1
        if start <= end:
            parts.append(_same_length(str(start), str(end)))
    return " | ".join(parts)


def _same_length(low: str, high: str) -> str:
    """Alternatives for ``low..high``, both of the same number of digits."""
    rest = len(low) - 1
    if low[1:] == "0" * rest and high[1:] == "9" * rest:
        return f"[{low[0]}-{high[0]}]" + (f" [0-9]{{{rest}}}" if rest else "")
    if low[0] == high[0]:
        return f'"{low[0]}" ({_same_length(low[1:], high[1:])})'
    parts = [f'"{low[0]}" ({_same_length(low[1:], "9" * rest)})']
    if int(low[0]) + 1 <= int(high[0]) - 1:
        parts.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}] [0-9]{{{rest}}}")
    parts.append(f'"{high[0]}" ({_same_length("0" * rest, high[1:])})')
    return " | ".join(parts)


def _call_schema(
    tool_format: ToolFormat,
    tools: list[ToolSpec],
    files: list[str],
    urls: list[str],
    bounds: dict[str, str],
) -> tuple[dict[str, Any], list[str]]:
    """The schema of one call to any of ``tools``, and its keys in the format's order."""
    alternatives = [
        tool_format.call_schema(tool.name, _arguments(tool, files, urls, bounds)) for tool in tools
    ]
    order = list(alternatives[0].get("properties", {}))
    return (alternatives[0] if len(alternatives) == 1 else {"oneOf": alternatives}), order


SchemaToGbnf = Callable[[str, list[str]], str]  # (schema JSON, property order) -> GBNF


def constrains(choice: str, call_index: int, max_steps: int) -> bool:
    """Whether model call ``call_index`` must be a tool call.

    A named tool constrains the first call; "required" every call but the last
    one --max-steps allows, which answers freely.
    """
    if choice in TOOLS_BY_NAME:
        return call_index == 0
    return choice == "required" and call_index < max_steps - 1


def grammar_for(
    choice: str,
    schema_to_gbnf: SchemaToGbnf,
    files: list[str] | None = None,
    urls: list[str] | None = None,
    *,
    tool_format: ToolFormat,
) -> str | None:
    """GBNF for ``choice``, or None when decoding stays free.

    ``files`` (workspace-relative) constrain the paths of tools that read an
    existing file, and ``urls`` (from the user's message) what ``web_fetch``
    may fetch; too many files, or none, leave the path free.
    """
    if choice in ("auto", "none"):
        return None
    tools = [TOOLS_BY_NAME[choice]] if choice in TOOLS_BY_NAME else list(TOOLS)
    listed = files if files and len(files) <= MAX_LISTED_FILES else []
    bounds: dict[str, str] = {}
    schema, order = _call_schema(tool_format, tools, listed, urls or [], bounds)
    call = schema_to_gbnf(json.dumps(schema), order)
    for placeholder, rule in bounds.items():
        call = call.replace(f'"\\"{placeholder}\\""', f"({rule})")
    if bounds:
        call += "\n" + _CHAR_RULE
    return tool_format.wrap_grammar(call, MAX_CALLS_PER_STEP)


def client_grammar(
    tools: list[ToolSpec],
    schema_to_gbnf: SchemaToGbnf,
    *,
    tool_format: ToolFormat,
    max_calls: int = MAX_CALLS_PER_STEP,
) -> str:
    """GBNF for a call to one of ``tools``, their parameters as the client defined
    them (the OpenAI front's ``tool_choice`` required or a named function)."""
    alternatives = [tool_format.call_schema(tool.name, tool.parameters) for tool in tools]
    order = list(alternatives[0].get("properties", {}))
    schema = alternatives[0] if len(alternatives) == 1 else {"oneOf": alternatives}
    return tool_format.wrap_grammar(schema_to_gbnf(json.dumps(schema), order), max_calls)
