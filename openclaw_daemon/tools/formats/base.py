"""The tool-call format interface: everything that differs between model families'
tool syntax, behind one small Protocol (as ollama's ``model/parsers``).

A format owns the tools section of the head, the tags the streaming filter
watches, how the ``--tool-choice`` grammar wraps a call, the strict parser, how
a call and a result are written into the template's messages, and the role
results go back in. The agent loop, the grammar builder and the prompt policy
only call these; none of them knows a tag. ``formats.format_for`` picks one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from openclaw_daemon.tools.spec import ParsedReply, ToolSpec


@dataclass(frozen=True)
class CallTags:
    """The strings that delimit a call and a result in the model's text."""

    call_open: str  # the user is shown a reply up to here; the rest is the call
    call_close: str
    result_open: str = ""
    result_close: str = ""
    # The tags the family's vocabulary holds as control tokens (Mistral's
    # ``[TOOL_CALLS]``, Llama 3's ``<|python_tag|>``). Reply text is decoded
    # without control tokens, so the decoder spells exactly these, or the
    # parser would never see them; in the tools section they go in as markup.
    control: tuple[str, ...] = ()

    @property
    def result_stops(self) -> list[str]:
        """Result tags are the runtime's to write: a model imitating one has
        finished its reply, so decoding stops there."""
        return [tag for tag in (self.result_open, self.result_close) if tag]

    @property
    def hidden(self) -> list[str]:
        """Where the text the user is shown ends: at a call, or at any control
        tag (they are tool syntax, never words for the user)."""
        return [self.call_open, *(tag for tag in self.control if tag != self.call_open)]


class ToolFormat(Protocol):
    @property
    def name(self) -> str:
        """A short family name ("hermes"), for logs and tests."""
        ...

    @property
    def tags(self) -> CallTags: ...

    @property
    def result_role(self) -> str:
        """The message role tool results go back in ("tool", or "user" for
        templates that refuse a tool role)."""
        ...

    def prompt_section(self, tools: Sequence[ToolSpec]) -> str:
        """The tool definitions as they go into the head (byte-identical every turn)."""
        ...

    def call_schema(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The JSON schema of one call of tool ``name``, for the grammar."""
        ...

    def wrap_grammar(self, call_gbnf: str, max_calls: int) -> str:
        """The whole GBNF, given the converter's for one call's JSON (its start
        rule named ``root``): up to ``max_calls`` calls in this format's tags."""
        ...

    def parse(self, text: str, call_id_prefix: str) -> ParsedReply:
        """Split a reply into its text and calls, strictly: a malformed call is a
        call with ``error`` set, reported to the model, never guessed at."""
        ...

    def render_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> str:
        """A call as the assistant message holds it (parses back to the same call)."""
        ...

    def render_result(self, content: str) -> str:
        """One tool result's text inside the results message."""
        ...

    def results_messages(self, texts: list[str], call_ids: list[str]) -> list[dict[str, str]]:
        """The messages that carry a step's results (``texts`` from ``render_result``,
        one per call in ``call_ids``), in the role and shape the template takes."""
        ...


def joined_results(texts: list[str], role: str) -> list[dict[str, str]]:
    """All of a step's results in one message: templates that insist on
    alternating roles accept it, and it is how Qwen's template merges them."""
    return [{"role": role, "content": "\n".join(texts)}]
