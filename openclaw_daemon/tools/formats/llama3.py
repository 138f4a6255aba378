"""The Llama 3.x JSON tool-call format (Meta's "JSON based tool calling").

The definitions go into the system message as Meta's template writes them
(one JSON object per function, indented by 4); a call is the bare object
``{"name": ..., "parameters": {...}}``, optionally after ``<|python_tag|>``;
a result goes back in the ``ipython`` role (the template renders ``tool`` and
``ipython`` alike, under an ``ipython`` header). Meta's template takes one
call per assistant message, so the grammar allows one; the parser still reads
several, one per line, as some fine-tunes write them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openclaw_daemon.tools.formats.base import CallTags, joined_results
from openclaw_daemon.tools.formats.hermes import parse_call_json
from openclaw_daemon.tools.spec import ParsedReply, ToolCall, ToolSpec

PYTHON_TAG = "<|python_tag|>"
# A call opens with its "name" key: that is where the user stops being shown text.
TAGS = CallTags('{"name": ', "}", control=(PYTHON_TAG,))
_CALL_START = re.compile(r'(?:<\|python_tag\|>\s*)?\{\s*"name"\s*:')


@dataclass(frozen=True)
class Llama3Format:
    name: str = "llama3"
    result_role: str = "ipython"
    tags: CallTags = TAGS

    def prompt_section(self, tools: Sequence[ToolSpec]) -> str:
        definitions = "".join(json.dumps(t.definition(), indent=4) + "\n\n" for t in tools)
        return (
            "You have access to the following functions. To call a function, please respond "
            "with JSON for a function call."
            'Respond in the format {"name": function name, "parameters": dictionary of '
            "argument name and its value}."
            "Do not use variables.\n\n" + definitions.rstrip("\n")
        )

    def call_schema(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"name": {"const": name}, "parameters": arguments},
            "required": ["name", "parameters"],
        }

    def wrap_grammar(self, call_gbnf: str, max_calls: int) -> str:
        body = re.sub(r"^root ::=", "call ::=", call_gbnf, flags=re.MULTILINE)
        return f"root ::= call\n{body}"

    def parse(self, text: str, call_id_prefix: str) -> ParsedReply:
        calls: list[ToolCall] = []
        decoder = json.JSONDecoder()
        first = _CALL_START.search(text)
        position = first.start() if first else len(text)
        rest = text[position:]
        while rest.strip():
            body = rest.strip().removeprefix(PYTHON_TAG).lstrip()
            call_id = f"{call_id_prefix}_{len(calls)}"
            try:
                data, end = decoder.raw_decode(body)
            except ValueError as exc:
                calls.append(ToolCall(call_id, "?", {}, f"the tool call is not valid JSON: {exc}"))
                break
            calls.append(_to_call(data, call_id))
            rest = body[end:].lstrip().removeprefix(";")
        return ParsedReply(text[:position].strip(), calls)

    def render_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> str:
        return json.dumps({"name": name, "parameters": arguments}, ensure_ascii=False)

    def render_result(self, content: str) -> str:
        return content

    def results_messages(self, texts: list[str], call_ids: list[str]) -> list[dict[str, str]]:
        return joined_results(texts, self.result_role)


def _to_call(data: Any, call_id: str) -> ToolCall:
    """Meta's ``parameters`` read as the shared ``arguments`` shape."""
    if isinstance(data, dict) and "parameters" in data and "arguments" not in data:
        data = {"name": data.get("name"), "arguments": data["parameters"]}
    return parse_call_json(json.dumps(data), call_id)


FORMAT = Llama3Format()
