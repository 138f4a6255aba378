"""The product's prompt policy: a stable head, then the transcript.

The head (the system prompt plus the tool definitions) is byte-identical on
every turn of every session, so its tokens stay cached. Per-turn content
(time, retrieved context, memory) belongs in the user turn, never in the head.
How tool calls and results read is the model's tool-call format's: it is
passed in (``ToolText``), since sessions sit below the tools layer.
"""

from __future__ import annotations

from typing import Any, Protocol

from openclaw_sessions.compaction import SUMMARY_PREFIX, active_messages
from openclaw_sessions.store import Entry

SYSTEM_PROMPT = (
    "You are OpenClaw, a helpful assistant running locally on the user's machine. "
    "Answer clearly and concisely."
)


def message_text(message: dict[str, Any]) -> str:
    """The text of an OpenClaw message, whose content is a string or a list of blocks."""
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    return "".join(
        block.get("text", "")
        for block in content
        if isinstance(block, dict) and block.get("type") == "text"
    )


def head(system_prompt: str, tools_section: str) -> str:
    """The system message: the tool definitions, then the system prompt.

    The prompt goes last, nearest the conversation: small models otherwise
    tend to continue the tool list instead of answering.
    """
    return f"{tools_section}\n\n{system_prompt}" if tools_section else system_prompt


class ToolText(Protocol):
    """How tool calls and results are written into the template's messages
    (``openclaw_daemon.tools.formats.ToolFormat`` provides it)."""

    @property
    def result_role(self) -> str: ...

    def render_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> str: ...

    def render_result(self, content: str) -> str: ...

    def results_messages(self, texts: list[str], call_ids: list[str]) -> list[dict[str, str]]: ...


SUMMARY_ACK = "Understood."


def summary_messages(summary: str) -> list[dict[str, str]]:
    """The summary of a compacted session, right after the head. An acknowledged
    user message, so templates that insist on alternating roles accept it."""
    return [
        {"role": "user", "content": SUMMARY_PREFIX + summary},
        {"role": "assistant", "content": SUMMARY_ACK},
    ]


def chat_messages(
    entries: list[Entry],
    *,
    tool_text: ToolText,
    system_prompt: str = SYSTEM_PROMPT,
) -> list[dict[str, str]]:
    """Template messages for a transcript: the head, then user, assistant and tool turns."""
    messages = [{"role": "system", "content": system_prompt}]
    summary, active = active_messages(entries)
    if summary is not None:
        messages += summary_messages(summary)
    results: list[str] = []
    call_ids: list[str] = []
    for entry in active:
        message = entry.get("message", {})
        role = message.get("role")
        if role == "toolResult":
            results.append(tool_text.render_result(message_text(message)))
            call_ids.append(str(message.get("toolCallId", "")))
            continue
        if results:
            messages += tool_text.results_messages(results, call_ids)
            results, call_ids = [], []
        if role == "user":
            messages.append({"role": "user", "content": message_text(message)})
        elif role == "assistant" and isinstance(message.get("rawText"), str):
            # The reply as it sat in the prompt (calls as generated): the
            # re-render is then the very text the KV cache held.
            messages.append({"role": "assistant", "content": message["rawText"]})
        elif role == "assistant":
            calls = [
                tool_text.render_call(block.get("id", ""), block["name"], block["arguments"])
                for block in message.get("content", [])
                if isinstance(block, dict) and block.get("type") == "toolCall"
            ]
            text = "\n".join(filter(None, [message_text(message), *calls]))
            messages.append({"role": "assistant", "content": text})
    if results:
        messages += tool_text.results_messages(results, call_ids)
    return messages
