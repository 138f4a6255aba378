"""A session's transcript as this model's chat messages.

Tool calls and results are written in the tool-call format the prompt
teaches; results go in the role the model's template accepts. The tape
registry, the agent loop and the compactor share one ``Transcript``, so a
rebuilt tape and a live one render a session the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openclaw_daemon.model.chat_template import ChatMessage
from openclaw_daemon.tools.spec import ToolCall, format_call, format_result, tools_prompt
from openclaw_daemon.wire.errors import ModelError
from openclaw_sessions.prompt import chat_messages, head, results_message

if TYPE_CHECKING:
    from openclaw_daemon.model.llama_engine import Engine


class Transcript:
    def __init__(self, engine: Engine) -> None:
        self.tools_section = tools_prompt()
        # Templates that know the tool role wrap results themselves; those that
        # refuse it (e.g. Gemma's) get the results as a user message.
        self.wrap_result = "tool_response" not in engine.template.source
        self.result_role = "tool" if _renders_tool_role(engine) else "user"

    def head(self, system: str) -> str:
        """The system message of a session whose system prompt is ``system``."""
        return head(system, self.tools_section)

    def result_text(self, content: str) -> str:
        return format_result(content) if self.wrap_result else content

    def results(self, contents: list[str]) -> ChatMessage:
        """One message with every tool result of a step."""
        return results_message([self.result_text(c) for c in contents], self.result_role)

    def messages(self, entries: list[dict[str, Any]], system: str) -> list[dict[str, str]]:
        return chat_messages(
            entries,
            system_prompt=system,
            call_text=lambda c: format_call(ToolCall(c.get("id", ""), c["name"], c["arguments"])),
            result_text=self.result_text,
            result_role=self.result_role,
        )


def _renders_tool_role(engine: Engine) -> bool:
    probe = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
        {"role": "tool", "content": "t"},
    ]
    try:
        return "t" in engine.template.render(probe, add_generation_prompt=True)
    except ModelError:
        return False
