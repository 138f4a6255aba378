"""``openclaw sessions list|show|delete|reset|export`` work on the session store
directly (no daemon); ``compact`` and ``check-tape`` ask the daemon."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openclaw_cli.views import render
from openclaw_daemon import config
from openclaw_daemon.wire import ids
from openclaw_sessions.prompt import message_text
from openclaw_sessions.store import SessionRef, SessionStore

if TYPE_CHECKING:
    from openclaw_daemon.wire.messages import CompactRequest, TapeRequest


def _store(agent_id: str) -> SessionStore:
    return SessionStore(config.resolve_paths().agent_sessions_dir(agent_id), agent_id)


def _find(session_id: str, agent_id: str) -> tuple[SessionStore, SessionRef]:
    """The agent's store and the session named by id or key (SessionError if none)."""
    store = _store(ids.agent_id(agent_id, field="--agent"))
    return store, store.find(ids.session_ref(session_id, field="session"))


def _agent_ids(agent_id: str, all_agents: bool) -> list[str]:
    if not all_agents:
        return [ids.agent_id(agent_id, field="--agent")]
    agents = config.resolve_paths().state_dir / "agents"
    found = sorted(p.name for p in agents.glob("*") if ids.is_canonical_agent_id(p.name))
    return found or ["main"]


def list_sessions(
    agent_id: str,
    *,
    json_out: bool,
    limit: int | None = 100,
    active_minutes: int | None = None,
    all_agents: bool = False,
) -> None:
    """The sessions, newest first; ``--json`` has the fields of OpenClaw's listing
    (``path``, ``count``, ``totalCount``, ``hasMore``, per row ``agentId``, ``ageMs``)."""
    now = time.time() * 1000
    since = now - active_minutes * 60_000 if active_minutes is not None else None
    stores = [_store(agent) for agent in _agent_ids(agent_id, all_agents)]
    rows = [
        {"key": key, "agentId": store.agent_id, **entry}
        for store in stores
        for key, entry in store.load_index().items()
        if since is None or entry.get("updatedAt", 0) >= since
    ]
    rows.sort(key=lambda row: row.get("updatedAt", 0), reverse=True)
    total = len(rows)
    rows = rows[:limit] if limit is not None else rows
    for row in rows:
        row["ageMs"] = max(0, int(now - row.get("updatedAt", now)))
    if json_out:
        render.print_json(
            {
                "path": None if all_agents else str(stores[0].index_file),
                "stores": [{"agentId": s.agent_id, "path": str(s.index_file)} for s in stores]
                if all_agents
                else None,
                "allAgents": True if all_agents else None,
                "agentId": None if all_agents else stores[0].agent_id,
                "count": len(rows),
                "totalCount": total,
                "limitApplied": limit,
                "hasMore": len(rows) < total,
                "activeMinutes": active_minutes,
                "sessions": rows,
            }
        )
        return
    if not rows:
        render.notice(f"no sessions for agent {agent_id!r}" if not all_agents else "no sessions")
        return
    for row in rows:
        updated = datetime.fromtimestamp(row.get("updatedAt", 0) / 1000).strftime("%Y-%m-%d %H:%M")
        tokens = row.get("totalTokens", "-")
        sys.stdout.write(f"{row['sessionId']:<38} {updated}  {tokens!s:>7} tok  {row['key']}\n")
    if len(rows) < total:
        render.notice(f"{len(rows)} of {total} sessions shown (--limit all shows every one)")


def delete_session(session_id: str, agent_id: str, *, json_out: bool) -> None:
    from openclaw_sessions import lifecycle

    store, ref = _find(session_id, agent_id)
    aside = lifecycle.delete(store, ref)
    if json_out:
        render.print_json(
            {"ok": True, "sessionId": ref.session_id, "key": ref.key, "movedTo": str(aside or "")}
        )
        return
    sys.stdout.write(f"deleted session {ref.session_id} ({ref.key})\n")
    if aside:
        render.notice(f"its transcript was kept as {aside}")


def reset_session(session_id: str, agent_id: str, *, json_out: bool) -> None:
    from openclaw_sessions import lifecycle

    store, ref = _find(session_id, agent_id)
    fresh = lifecycle.reset(store, ref)
    if json_out:
        render.print_json(
            {
                "ok": True,
                "key": fresh.key,
                "sessionId": fresh.session_id,
                "previousSessionId": ref.session_id,
                "previousFile": str(ref.file),
            }
        )
        return
    sys.stdout.write(f"session {fresh.key} is now {fresh.session_id} (new and empty)\n")
    render.notice(f"the previous transcript stays at {ref.file}")


def export_session(session_id: str, agent_id: str, fmt: str, output: str | None) -> None:
    from openclaw_sessions import lifecycle

    store, ref = _find(session_id, agent_id)
    if fmt == "jsonl":
        data = ref.file.read_bytes() if ref.file.exists() else b""
    else:
        data = lifecycle.export_markdown(ref, store.load_entries(ref)).encode("utf-8")
    if output is None or output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    Path(output).write_bytes(data)
    render.notice(f"wrote {len(data)} bytes to {output}")


def show_session(session_id: str, agent_id: str, *, json_out: bool) -> None:
    store, ref = _find(session_id, agent_id)
    entries = store.load_entries(ref)
    if json_out:
        render.print_json(
            {"sessionId": ref.session_id, "key": ref.key, "file": str(ref.file), "entries": entries}
        )
        return
    sys.stdout.write(f"session {ref.session_id} ({ref.key})\nfile    {ref.file}\n\n")
    for entry in entries:
        sys.stdout.write(_describe(entry))


def _describe(entry: dict[str, Any]) -> str:
    kind = entry.get("type")
    if kind == "message":
        message = entry.get("message", {})
        usage = message.get("usage")
        meta = (
            f"  [{usage['input']} in, {usage['cacheRead']} cached, {usage['output']} out]"
            if usage
            else ""
        )
        role = message.get("role", "?")
        lines = [f"{role:>10}: {message_text(message)}{meta}\n"] if message_text(message) else []
        for block in message.get("content", []):
            if isinstance(block, dict) and block.get("type") == "toolCall":
                args = json.dumps(block.get("arguments", {}), ensure_ascii=False)
                lines.append(f"{'tool call':>10}: {block.get('name')} {args}{meta}\n")
        if role == "toolResult":
            status = "error" if message.get("isError") else "ok"
            text = " ".join(message_text(message).split())
            lines = [f"{'result':>10}: {message.get('toolName')} {status}: {text[:200]}\n"]
        return "".join(lines)
    if kind == "compaction":
        return (
            f"{'compaction':>10}: {entry.get('tokensBefore')} -> {entry.get('tokensAfter')} "
            f"tokens, kept from {entry.get('firstKeptEntryId')}; summary: "
            f"{' '.join(str(entry.get('summary', '')).split())[:300]}\n"
        )
    return ""


def compact_session(
    session_id: str, agent_id: str, instructions: str | None, *, json_out: bool
) -> None:
    """Ask the daemon to compact a session (it starts the daemon if needed)."""
    from openclaw_cli import daemon_control

    agent_id = ids.agent_id(agent_id, field="--agent")
    session_id = ids.session_ref(session_id, field="session")
    paths = config.resolve_paths()
    progress = render.Progress(enabled=not json_out)
    client, _spawned = daemon_control.connect_or_start(paths, waiting=progress.waiting)
    progress.stop()
    request: CompactRequest = {
        "type": "compact",
        "agentId": agent_id,
        "sessionId": session_id,
        "instructions": instructions,
    }
    with client:
        result = client.call(request, timeout=900)
    if json_out:
        render.print_json(result)
        return
    chunks = int(result.get("summaryChunks") or 1)
    # An over-full session is summarised in chunks (see docs/recovery.md).
    made_in = f" (made in {chunks} chunks: the session was too full for one)" if chunks > 1 else ""
    sys.stdout.write(
        f"compacted session {result['sessionId']}: {result['tokensBefore']} -> "
        f"{result['tokensAfter']} tokens ({result['summarizedEntries']} entries summarised, "
        f"{result['keptEntries']} kept)\n"
        f"the summary cost {result['summaryPrefillTokens']} prefilled tokens "
        f"({result['summaryCachedTokens']} reused from the cache) and "
        f"{result['summaryMs'] / 1000:.1f} s{made_in}\n\nsummary: {result['summary']}\n"
    )


def check_tape(session_id: str | None, agent_id: str, *, json_out: bool) -> int:
    """Ask the daemon whether each session's tape spells its transcript (every
    session of the agent without an id); 1 if any does not."""
    from openclaw_cli import daemon_control

    agent_id = ids.agent_id(agent_id, field="--agent")
    session_id = ids.optional_session_ref(session_id, field="session")
    session_ids = (
        [session_id]
        if session_id
        else [str(row["sessionId"]) for row in _store(agent_id).load_index().values()]
    )
    paths = config.resolve_paths()
    progress = render.Progress(enabled=not json_out)
    client, _spawned = daemon_control.connect_or_start(paths, waiting=progress.waiting)
    progress.stop()
    from openclaw_daemon.wire.client import DaemonClient

    results = []
    for index, sid in enumerate(session_ids):
        # One request per connection (docs/protocol.md): a fresh one after the first.
        with client if index == 0 else DaemonClient(paths.socket) as connection:
            request: TapeRequest = {"type": "tape", "agentId": agent_id, "sessionId": sid}
            results.append(connection.call(request, timeout=300))
    if not session_ids:
        client.close()
    bad = [r for r in results if not r["tapeMatchesTranscript"]]
    if json_out:
        render.print_json(
            results[0] if session_id else {"sessions": results, "mismatched": len(bad)}
        )
        return 1 if bad else 0
    for result in results:
        if result["tapeMatchesTranscript"]:
            sys.stdout.write(
                f"session {result['sessionId']}: the tape ({result['tape']}, "
                f"{result['tapeTokens']} tokens) spells the transcript exactly\n"
            )
        else:
            sys.stdout.write(
                f"session {result['sessionId']}: the tape ({result['tape']}) differs from the "
                f"transcript at byte {result['firstDifference']}:\n"
                f"  tape:       {result['tapeAt']!r}\n  transcript: {result['transcriptAt']!r}\n"
            )
    return 1 if bad else 0
