"""Retrying a committed turn returns its stored reply instead of running it again.

The CLI sends a ``request_id`` with every turn (a fresh uuid per ``openclaw
agent`` invocation, or ``OPENCLAW_REQUEST_ID`` for a script's retry). The user
entry of a committed turn records it, so the memory survives a restart. If a
turn was committed but the client never got the reply (the connection broke,
the CLI was killed), a retry with the same id finds it and gets the reply from
the transcript: no model call, no second copy of the turn. A turn that was
interrupted (``stopReason`` aborted or error) is not a reply: its retry runs.
"""

from __future__ import annotations

from typing import Any

from openclaw_daemon.wire.errors import BadRequestError
from openclaw_sessions.prompt import message_text
from openclaw_sessions.store import Entry

_INTERRUPTED = ("aborted", "error")
MAX_ID_CHARS = 128


def check_id(value: object) -> str:
    """The request's id ("" for none), refused if it is not a short string."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_ID_CHARS or not value.isprintable():
        raise BadRequestError(
            f"the request id must be printable text of at most {MAX_ID_CHARS} characters",
            hint="Set OPENCLAW_REQUEST_ID to a short id, e.g. a uuid.",
        )
    return value


def committed_turn(entries: list[Entry], request_id: str, message: str) -> list[Entry] | None:
    """The entries of the finished turn ``request_id`` committed, user entry first.

    The same id with another message is a caller's mistake, not a retry."""
    start = next(
        (i for i, e in enumerate(entries) if request_id and e.get("requestId") == request_id),
        None,
    )
    if start is None:
        return None
    if message_text(entries[start].get("message", {})) != message:
        raise BadRequestError(
            f"request id {request_id!r} was already used for another message in this session",
            hint="Use a new OPENCLAW_REQUEST_ID for a new turn.",
        )
    turn = [entries[start]]
    for entry in entries[start + 1 :]:
        if entry.get("message", {}).get("role") == "user":
            break
        turn.append(entry)
    replies = [e for e in turn if e.get("message", {}).get("role") == "assistant"]
    if not replies or replies[-1]["message"].get("stopReason") in _INTERRUPTED:
        return None
    return turn


def reply(turn: list[Entry]) -> dict[str, Any]:
    """The parts of a turn's result its entries hold: the final text, the stop
    reason, and each model call's text and tool calls with their results."""
    results = {
        e["message"].get("toolCallId"): e["message"]
        for e in turn
        if e.get("message", {}).get("role") == "toolResult"
    }
    steps: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    for entry in turn:
        message = entry.get("message", {})
        if message.get("role") != "assistant":
            continue
        final = message
        calls = [b for b in message.get("content", []) if b.get("type") == "toolCall"]
        steps.append(
            {
                "call": len(steps),
                "usage": _zero_usage(),
                "text": message_text(message),
                "toolCalls": [
                    {
                        "id": c.get("id"),
                        "name": c.get("name"),
                        "arguments": c.get("arguments", {}),
                        "isError": bool(results.get(c.get("id"), {}).get("isError")),
                        "cached": True,
                        "truncated": False,
                        "durationMs": 0.0,
                        "result": message_text(results.get(c.get("id"), {})),
                    }
                    for c in calls
                ],
            }
        )
    stop = str(final.get("stopReason") or "stop")
    return {
        "text": message_text(final),
        # The result's vocabulary: a stored "toolUse" ended the loop another way.
        "stopReason": stop,
        # No model call ran for this request: no steps (the stored ones are
        # under ``replayed``), and its own cost is zero (the original turn's
        # usage is there too).
        "steps": [],
        "usage": _zero_usage(),
        "replayed": {"entryId": turn[0].get("id"), "usage": final.get("usage"), "steps": steps},
    }


def _zero_usage() -> dict[str, int]:
    return {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0}
