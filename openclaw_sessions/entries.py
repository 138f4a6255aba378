"""Transcript entries as OpenClaw stores them: user and assistant messages, tool results.

An assistant entry carries ``text`` and ``toolCall {id, name, arguments}``
content blocks plus its usage; each tool's answer is a ``toolResult`` message
with ``toolCallId``, ``toolName``, ``content`` and ``isError``. Every entry has
an ``id`` and the ``parentId`` of the entry before it.

Two fields of ours ride along: an assistant message's ``rawText`` is the reply
exactly as it sits in the prompt (tool-call markup as generated, a call cut
off by --max-tokens removed), so a transcript re-renders to the very tokens
the KV cache held; a user entry's ``requestId`` marks the request that
committed the turn, so a retry of it is answered from the transcript. An
interrupted reply is kept with ``stopReason`` ``aborted`` (or ``error``) and an
``errorMessage``, as OpenClaw marks one. A toolCall block of a call made through an
upstream's native tool calling also keeps ``argumentsText``, its arguments' JSON as the
server sent them, which the next request repeats byte for byte.
"""

from __future__ import annotations

from typing import Any

from openclaw_sessions.store import Entry, new_entry_id, now_iso, now_ms

ZERO_COST = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0}


def _entry(parent: str | None, message: dict[str, Any]) -> Entry:
    return {
        "type": "message",
        "id": new_entry_id(),
        "parentId": parent,
        "timestamp": now_iso(),
        "message": {**message, "timestamp": now_ms()},
    }


def user_entry(parent: str | None, text: str, *, request_id: str | None = None) -> Entry:
    entry = _entry(parent, {"role": "user", "content": [{"type": "text", "text": text}]})
    if request_id:
        entry["requestId"] = request_id
    return entry


def assistant_entry(
    parent: str | None,
    *,
    text: str,
    tool_calls: list[dict[str, Any]],
    usage: dict[str, int],
    model: str,
    provider: str,
    api: str,
    stop_reason: str,
    raw_text: str | None = None,
    error_message: str | None = None,
) -> Entry:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "toolCall", **call} for call in tool_calls]
    extra: dict[str, Any] = {}
    if raw_text is not None:
        extra["rawText"] = raw_text
    if error_message is not None:
        extra["errorMessage"] = error_message
    return _entry(
        parent,
        {
            "role": "assistant",
            "content": content,
            "api": api,
            "provider": provider,
            "model": model,
            "usage": {
                "input": usage["input"],
                "output": usage["output"],
                "cacheRead": usage["cacheRead"],
                "cacheWrite": usage["cacheWrite"],
                "totalTokens": usage["total"],
                "cost": dict(ZERO_COST),
            },
            "stopReason": stop_reason,
            **extra,
        },
    )


def tool_result_entry(
    parent: str | None, *, call_id: str, tool_name: str, text: str, is_error: bool
) -> Entry:
    return _entry(
        parent,
        {
            "role": "toolResult",
            "toolCallId": call_id,
            "toolName": tool_name,
            "content": [{"type": "text", "text": text}],
            "isError": is_error,
        },
    )
