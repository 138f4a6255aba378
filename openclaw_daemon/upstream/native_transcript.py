"""A session's transcript as native OpenAI messages, for a model in ``edge.nativeTools``.

The system message is the system prompt alone (the tools go in the request's
``tools``); a reply with calls is an assistant message with ``tool_calls``, each
result a ``tool`` message answering its call's id. Built from OpenClaw's JSONL (the
toolCall blocks, each with its arguments' text as the server sent them, and the
toolResult messages), so a session re-renders to the very messages the previous
request sent, turn after turn: the requests stay append-only and the server's
prefix cache holds. A session whose earlier turns ran in our own format (Hermes
tags) re-renders from the same blocks, as native calls.
"""

from __future__ import annotations

from typing import Any

from openclaw_daemon.tools.spec import ToolCall
from openclaw_daemon.turn.agent_loop import Step
from openclaw_daemon.upstream.native_tools import assistant_message, tool_message
from openclaw_sessions.compaction import active_messages
from openclaw_sessions.prompt import message_text, summary_messages
from openclaw_sessions.store import Entry


def head(system: str) -> str:
    """The system message: no tools section, the server renders ``tools`` itself."""
    return system


def messages(entries: list[Entry], system: str) -> list[dict[str, Any]]:
    """The head, then the session's user, assistant and tool messages."""
    rendered: list[dict[str, Any]] = [{"role": "system", "content": system}]
    summary, active = active_messages(entries)
    if summary is not None:
        rendered += summary_messages(summary)
    for entry in active:
        message = entry.get("message", {})
        role = message.get("role")
        if role == "user":
            rendered.append({"role": "user", "content": message_text(message)})
        elif role == "assistant":
            calls = [
                block
                for block in message.get("content", [])
                if isinstance(block, dict) and block.get("type") == "toolCall"
            ]
            rendered.append(assistant_message(message_text(message), calls))
        elif role == "toolResult":
            call_id = str(message.get("toolCallId", ""))
            rendered.append(tool_message(call_id, message_text(message)))
    return rendered


def step_messages(step: Step) -> list[dict[str, Any]]:
    """A step of the turn under way as the next call repeats it: the reply, then its
    results; the same messages ``messages`` renders once the turn is stored."""
    reply = assistant_message(step.shown, [_block(call) for call in step.parsed.calls])
    return [reply, *(tool_message(o.call.id, o.content) for o in step.outcomes)]


def _block(call: ToolCall) -> dict[str, Any]:
    """A call as the transcript's toolCall block holds it (``turn.persist``)."""
    block: dict[str, Any] = {"id": call.id, "name": call.name, "arguments": call.arguments}
    if call.arguments_text is not None:
        block["argumentsText"] = call.arguments_text
    return block
