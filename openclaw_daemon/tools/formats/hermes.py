"""The Hermes tool-call format (Qwen 2.5, Hermes, and SmolLM2, which is tuned on it).

The tool definitions go into the head as JSON lines inside ``<tools>``; a call
is a ``{"name": ..., "arguments": {...}}`` object inside ``<tool_call>`` tags;
a result goes back in a ``tool`` message, wrapped in ``<tool_response>`` tags
unless the template wraps it itself. Parsing is strict: a malformed call is
reported to the model as an error result, never guessed at.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openclaw_daemon.model.chat_template import ChatTemplate
from openclaw_daemon.tools.formats.base import CallTags, joined_results
from openclaw_daemon.tools.spec import ParsedReply, ToolCall, ToolSpec, known_call
from openclaw_daemon.wire.errors import ModelError

# Qwen's vocabulary holds the call tags as plain added tokens (decoded either
# way); a fine-tune that made them control tokens gets them spelled too.
TAGS = CallTags(
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    control=("<tool_call>", "</tool_call>"),
)
_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class HermesFormat:
    # Templates that know Hermes tool results wrap them in <tool_response>
    # themselves; for the others (SmolLM2's plain ChatML) the text carries them.
    wrap_results: bool = True
    result_role: str = "tool"
    name: str = "hermes"
    tags: CallTags = TAGS

    def prompt_section(self, tools: Sequence[ToolSpec]) -> str:
        lines = "\n".join(json.dumps(t.definition(), separators=(", ", ": ")) for t in tools)
        return (
            "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n"
            f"<tools>\n{lines}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments "
            "within <tool_call></tool_call> XML tags:\n"
            '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
        )

    def call_schema(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": arguments},
            "required": ["name", "arguments"],
        }

    def wrap_grammar(self, call_gbnf: str, max_calls: int) -> str:
        body = re.sub(r"^root ::=", "call ::=", call_gbnf, flags=re.MULTILINE)
        block = f'"{TAGS.call_open}\\n" call "\\n{TAGS.call_close}"'
        return f'root ::= {block} ("\\n" {block}){{0,{max_calls - 1}}}\n{body}'

    def parse(self, text: str, call_id_prefix: str) -> ParsedReply:
        # An exact repeat of an earlier call in the same reply is dropped: small
        # models repeat themselves, and running the same call twice helps nobody.
        calls: list[ToolCall] = []
        seen: set[str] = set()
        for match in _CALL_RE.finditer(text):
            call = parse_call_json(match.group(1), f"{call_id_prefix}_{len(calls)}")
            signature = json.dumps([call.name, call.arguments, call.error], sort_keys=True)
            if signature not in seen:
                seen.add(signature)
                calls.append(call)
        rest = _CALL_RE.sub("", text)
        if TAGS.call_open in rest:
            calls.append(
                ToolCall(f"{call_id_prefix}_{len(calls)}", "?", {}, "unterminated <tool_call>")
            )
        return ParsedReply(rest.split(TAGS.call_open)[0].strip(), calls)

    def render_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> str:
        body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
        return f"{TAGS.call_open}\n{body}\n{TAGS.call_close}"

    def render_result(self, content: str) -> str:
        if not self.wrap_results:
            return content
        return f"{TAGS.result_open}\n{content}\n{TAGS.result_close}"

    def results_messages(self, texts: list[str], call_ids: list[str]) -> list[dict[str, str]]:
        return joined_results(texts, self.result_role)


def parse_call_json(body: str, call_id: str) -> ToolCall:
    """A ``{"name": ..., "arguments": {...}}`` call body (the shape several
    families share), checked against the known tools."""
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
    return known_call(call_id, data["name"], arguments)


def for_template(template: ChatTemplate) -> HermesFormat:
    """Hermes as ``template`` takes it: results wrapped unless the template
    wraps them, in the tool role unless the template refuses it (Gemma's)."""
    return HermesFormat(
        wrap_results="tool_response" not in template.source,
        result_role="tool" if _renders_tool_role(template) else "user",
    )


def _renders_tool_role(template: ChatTemplate) -> bool:
    probe = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
        {"role": "tool", "content": "t"},
    ]
    try:
        return "t" in template.render(probe, add_generation_prompt=True)
    except ModelError:
        return False
