"""Deleting, resetting and exporting stored sessions (``openclaw sessions delete |
reset | export``), on the store's files.

Nothing is lost by accident: a deleted transcript is renamed aside
(``<id>.jsonl.deleted.<time>``), and a reset, as OpenClaw's ``/reset``, starts a new
session under the same key and keeps the old transcript where it was.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from openclaw_sessions.prompt import message_text
from openclaw_sessions.store import SessionRef, SessionStore


def delete(store: SessionStore, ref: SessionRef) -> Path | None:
    """Unlist the session and rename its transcript aside; the new name, if any."""
    store.forget(ref)
    if not ref.file.exists():
        return None
    aside = ref.file.with_name(f"{ref.file.name}.deleted.{time.strftime('%Y%m%dT%H%M%S')}")
    ref.file.rename(aside)
    return aside


def reset(store: SessionStore, ref: SessionRef) -> SessionRef:
    """A new, empty session under ``ref``'s key; the old transcript stays on disk."""
    session_id = str(uuid.uuid4())
    fresh = SessionRef(ref.agent_id, ref.key, session_id, store.dir / f"{session_id}.jsonl")
    store.forget(ref)  # the old entry's counters are the old session's
    store.touch(fresh, created=True, previousSessionId=ref.session_id)
    return fresh


def export_markdown(ref: SessionRef, entries: list[dict[str, Any]]) -> str:
    """The transcript as Markdown: one section per message, tool calls as JSON."""
    lines = [f"# Session {ref.session_id}", "", f"Key: `{ref.key}`", ""]
    for entry in entries:
        kind = entry.get("type")
        if kind == "compaction":
            lines += ["## Compaction summary", "", str(entry.get("summary", "")).strip(), ""]
            continue
        if kind != "message":
            continue
        message = entry.get("message", {})
        role = str(message.get("role", "?"))
        title = {"user": "User", "assistant": "Assistant", "toolResult": "Tool result"}
        heading = title.get(role, role)
        if role == "toolResult" and message.get("toolName"):
            heading += f" ({message['toolName']})"
        lines += [f"## {heading}", ""]
        text = message_text(message).strip()
        if text:
            lines += [text, ""]
        for block in message.get("content", []) if isinstance(message.get("content"), list) else []:
            if isinstance(block, dict) and block.get("type") == "toolCall":
                arguments = json.dumps(block.get("arguments", {}), ensure_ascii=False, indent=2)
                lines += [f"Tool call `{block.get('name')}`:", "", "```json", arguments, "```", ""]
    return "\n".join(lines).rstrip() + "\n"
