"""The Mistral tool-call format (v3 tokenizer and later: Mistral 7B v0.3, Nemo, Small).

The definitions are a ``[AVAILABLE_TOOLS][...][/AVAILABLE_TOOLS]`` block; a
step's calls are one JSON list after ``[TOOL_CALLS]``, each with a 9-character
alphanumeric ``id`` (the templates refuse any other); each result goes back in
its own ``tool`` message carrying that id, which the template renders as
``[TOOL_RESULTS]{"content": ..., "call_id": ...}[/TOOL_RESULTS]``, so the
content is written as a JSON string.

A call's id is the one the model wrote, when it wrote a valid one: the stored
reply (the text as generated) and the result then name the same id. Only a
call without one gets an id derived from ours (``mistral_id``), and the same
call renders, and its result answers, with that id.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openclaw_daemon.tools.formats.base import CallTags
from openclaw_daemon.tools.formats.hermes import parse_call_json
from openclaw_daemon.tools.spec import ParsedReply, ToolCall, ToolSpec

TOOLS_OPEN, TOOLS_CLOSE = "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]"
TAGS = CallTags(
    "[TOOL_CALLS]",
    "]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    control=("[TOOL_CALLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", TOOLS_OPEN, TOOLS_CLOSE),
)
_ID_ALPHABET = string.ascii_letters + string.digits
ID_SCHEMA = {"type": "string", "pattern": "^[a-zA-Z0-9]{9}$"}
_ID_RE = re.compile(r"[a-zA-Z0-9]{9}")


def mistral_id(call_id: str) -> str:
    """A 9-character alphanumeric id, the same for the same ``call_id``; an
    id that is one already (the model's own) is itself."""
    if _ID_RE.fullmatch(call_id):
        return call_id
    number = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    chars = []
    for _ in range(9):
        number, index = divmod(number, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[index])
    return "".join(chars)


@dataclass(frozen=True)
class MistralFormat:
    name: str = "mistral"
    result_role: str = "tool"
    tags: CallTags = TAGS

    def prompt_section(self, tools: Sequence[ToolSpec]) -> str:
        definitions = ", ".join(json.dumps(t.definition()) for t in tools)
        return f"{TOOLS_OPEN}[{definitions}]{TOOLS_CLOSE}"

    def call_schema(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": arguments, "id": ID_SCHEMA},
            "required": ["name", "arguments", "id"],
        }

    def wrap_grammar(self, call_gbnf: str, max_calls: int) -> str:
        body = re.sub(r"^root ::=", "call ::=", call_gbnf, flags=re.MULTILINE)
        return f'root ::= "{TAGS.call_open}[" call (", " call){{0,{max_calls - 1}}} "]"\n{body}'

    def parse(self, text: str, call_id_prefix: str) -> ParsedReply:
        before, tag, after = text.partition(TAGS.call_open)
        if not tag:
            return ParsedReply(text.strip())
        try:
            data, _ = json.JSONDecoder().raw_decode(after.lstrip())
        except ValueError as exc:
            error = f"the tool calls are not a valid JSON list: {exc}"
            return ParsedReply(before.strip(), [ToolCall(f"{call_id_prefix}_0", "?", {}, error)])
        items = data if isinstance(data, list) else [data]
        calls: list[ToolCall] = []
        for item in items:
            call_id = _model_id(item, calls) or mistral_id(f"{call_id_prefix}_{len(calls)}")
            if isinstance(item, dict):
                item = {k: v for k, v in item.items() if k != "id"}
            calls.append(parse_call_json(json.dumps(item), call_id))
        return ParsedReply(before.strip(), calls)

    def render_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> str:
        call = {"name": name, "arguments": arguments, "id": mistral_id(call_id)}
        return f"{TAGS.call_open}[{json.dumps(call, ensure_ascii=False)}]"

    def render_result(self, content: str) -> str:
        return json.dumps(content, ensure_ascii=False)

    def results_messages(self, texts: list[str], call_ids: list[str]) -> list[dict[str, str]]:
        return [
            {"role": "tool", "content": text, "tool_call_id": mistral_id(call_id)}
            for text, call_id in zip(texts, call_ids, strict=True)
        ]


def _model_id(item: Any, earlier: list[ToolCall]) -> str | None:
    """The id the model wrote for a call, if valid and not already taken by an
    earlier call of the same reply (results are matched to calls by id)."""
    wrote = item.get("id") if isinstance(item, dict) else None
    taken = {call.id for call in earlier}
    if isinstance(wrote, str) and _ID_RE.fullmatch(wrote) and wrote not in taken:
        return wrote
    return None


FORMAT = MistralFormat()
