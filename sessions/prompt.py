"""The product's prompt policy: a stable head, then the transcript.

The head (the system prompt) is byte-identical on every turn of every session,
so its tokens stay cached. Per-turn content (time, retrieved context, memory)
belongs in the user turn, never in the head.
"""

from __future__ import annotations

from typing import Any

from sessions.store import Entry

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


def chat_messages(
    entries: list[Entry], *, system_prompt: str = SYSTEM_PROMPT
) -> list[dict[str, str]]:
    """Template messages for a transcript: the head, then user/assistant turns."""
    messages = [{"role": "system", "content": system_prompt}]
    for entry in entries:
        if entry.get("type") != "message":
            continue
        message = entry.get("message", {})
        role = message.get("role")
        if role in ("user", "assistant"):
            messages.append({"role": role, "content": message_text(message)})
    return messages
