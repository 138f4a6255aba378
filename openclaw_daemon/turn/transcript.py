"""A session's transcript as this model's chat messages.

Tool calls and results are written in the model's tool-call format
(``tools.formats``, chosen from its template), which also says the role
results go in. The tape registry, the agent loop and the compactor share one
``Transcript``, so a rebuilt tape and a live one render a session the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openclaw_daemon.model.chat_template import ChatMessage
from openclaw_daemon.tools.formats import ToolFormat, format_for
from openclaw_daemon.tools.spec import TOOLS
from openclaw_sessions.prompt import chat_messages, head

if TYPE_CHECKING:
    from openclaw_daemon.model.base import ModelEngine


class Transcript:
    def __init__(
        self, engine: ModelEngine | None = None, *, tool_format: ToolFormat | None = None
    ) -> None:
        """The format ``engine``'s template takes, or ``tool_format`` (an upstream's
        template is the server's, so its format is chosen, not read)."""
        if tool_format is None:
            assert engine is not None, "a Transcript needs an engine or a tool format"
            tool_format = format_for(engine.template)
        self.format: ToolFormat = tool_format
        self.tools_section = self.format.prompt_section(TOOLS)

    def head(self, system: str) -> str:
        """The system message of a session whose system prompt is ``system``."""
        return head(system, self.tools_section)

    def result_text(self, content: str) -> str:
        return self.format.render_result(content)

    def results(self, contents: list[str], call_ids: list[str]) -> list[ChatMessage]:
        """The message(s) with every tool result of a step, in the format's role."""
        return list(self.format.results_messages([self.result_text(c) for c in contents], call_ids))

    def messages(self, entries: list[dict[str, Any]], system: str) -> list[dict[str, str]]:
        return chat_messages(entries, system_prompt=system, tool_text=self.format)
