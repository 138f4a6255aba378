"""OpenClaw-compatible session storage.

Layout under ``<state>/agents/<agentId>/sessions/``:

- ``sessions.json``: session key (``agent:<agentId>:main`` and friends) -> entry
  ``{sessionId, updatedAt, sessionFile, ...}``; rewritten atomically.
- ``<sessionId>.jsonl``: a ``session`` header line, then one entry per line with
  ``type``, ``id``, ``parentId`` and ``timestamp``.

Appends are crash-safe: each batch of lines goes out in one ``write`` on an
``O_APPEND`` descriptor and is fsynced; a torn last line left by a killed
process is ignored on load and cut off before the next append.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from openclaw_daemon.wire import ids
from openclaw_daemon.wire.errors import SessionError

SESSION_VERSION = 3
Entry = dict[str, Any]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_ms() -> int:
    return int(time.time() * 1000)


def new_entry_id() -> str:
    return secrets.token_hex(4)


def main_session_key(agent_id: str) -> str:
    return f"agent:{agent_id}:main"


def explicit_session_key(agent_id: str, session_id: str) -> str:
    return f"agent:{agent_id}:explicit:{session_id}"


@dataclass(frozen=True)
class SessionRef:
    agent_id: str
    key: str
    session_id: str
    file: Path


class SessionStore:
    """Reads and writes one agent's sessions directory."""

    def __init__(self, sessions_dir: Path, agent_id: str, *, cwd: str | None = None) -> None:
        self.dir = sessions_dir
        self.agent_id = agent_id
        self.cwd = cwd  # the user's working directory, for new session headers
        self.index_file = sessions_dir / "sessions.json"

    # -- index ---------------------------------------------------------------
    def load_index(self) -> dict[str, Entry]:
        try:
            data = json.loads(self.index_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SessionError(
                f"cannot read {self.index_file}: {exc}",
                hint="Move the file aside; transcripts (*.jsonl) are untouched.",
            ) from exc
        if not isinstance(data, dict):
            raise SessionError(f"{self.index_file} is not a JSON object")
        return data

    def _write_index(self, index: dict[str, Entry]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".sessions.", dir=self.dir)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(index, handle, indent=2)
        # No fsync: the index is small and derivable from the transcripts, and
        # an fsync here costs the turn up to ~80 ms on a busy disk.
        os.replace(tmp, self.index_file)

    def resolve(self, session_id: str | None, *, create: bool = True) -> SessionRef:
        """Find the session to use: the agent's main one, or the one with this id."""
        index = self.load_index()
        if session_id is None:
            key = main_session_key(self.agent_id)
            entry = index.get(key)
            sid = entry["sessionId"] if entry else str(uuid.uuid4())
        else:
            session_id = ids.session_id(session_id)
            found = next((k for k, e in index.items() if e.get("sessionId") == session_id), None)
            key = found or explicit_session_key(self.agent_id, session_id)
            # After ``sessions reset``, the id's key names a new session.
            entry = None if found else index.get(key)
            sid = entry["sessionId"] if entry else session_id
        ref = self._ref(key, sid)
        if create and key not in index:
            self.touch(ref, created=True)
        elif not create and key not in index:
            raise SessionError(f"no session {session_id or key!r} for agent {self.agent_id!r}")
        return ref

    def resolve_key(self, key: str) -> SessionRef:
        """The session stored under this exact key, created (with a new id) if none is."""
        entry = self.load_index().get(key)
        ref = self._ref(key, entry["sessionId"] if entry else str(uuid.uuid4()))
        if entry is None:
            self.touch(ref, created=True)
        return ref

    def forget(self, ref: SessionRef) -> None:
        """Drop the session's index entry (the transcript file is the caller's)."""
        index = self.load_index()
        if index.pop(ref.key, None) is not None:
            self._write_index(index)

    def touch(self, ref: SessionRef, *, created: bool = False, **fields: Any) -> None:
        index = self.load_index()
        entry = index.get(ref.key, {})
        entry.update(
            {"sessionId": ref.session_id, "updatedAt": now_ms(), "sessionFile": str(ref.file)}
        )
        entry.update(fields)
        index[ref.key] = entry
        self._write_index(index)
        if created and not ref.file.exists():
            header = {
                "type": "session",
                "version": SESSION_VERSION,
                "id": ref.session_id,
                "timestamp": now_iso(),
                "cwd": self.cwd or os.getcwd(),
            }
            self._append_lines(ref.file, [header])

    def _ref(self, key: str, sid: str) -> SessionRef:
        # A session id read back from sessions.json (which another program may
        # have written) becomes a file name too: the same rule as on the wire.
        if not isinstance(sid, str) or not ids.is_session_id(sid):
            raise SessionError(
                f"{self.index_file} names an unsafe session id {sid!r:.80} for {key!r:.80}",
                hint="Fix or remove that entry; no file outside the sessions dir is used.",
            )
        return SessionRef(self.agent_id, key, sid, self.dir / f"{sid}.jsonl")

    def find(self, session_id: str) -> SessionRef:
        """Look a session up by id or key, without creating it."""
        # An id, a key, or an id whose explicit key now names another session
        # (after ``sessions reset``).
        explicit = explicit_session_key(self.agent_id, session_id)
        index = self.load_index()
        for key, entry in index.items():
            if session_id in (entry.get("sessionId"), key):
                return self._ref(key, entry["sessionId"])
        if explicit in index:
            return self._ref(explicit, index[explicit]["sessionId"])
        raise SessionError(
            f"no session {session_id!r} for agent {self.agent_id!r}",
            hint="List sessions with: openclaw sessions list",
        )

    # -- transcript ------------------------------------------------------------
    def load_entries(self, ref: SessionRef) -> list[Entry]:
        """All complete entries, header included; a torn last line is skipped."""
        try:
            raw = ref.file.read_bytes()
        except FileNotFoundError:
            return []
        entries: list[Entry] = []
        lines = raw.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except ValueError as exc:
                if number == len(lines):  # unterminated tail from a killed writer
                    break
                raise SessionError(f"{ref.file}:{number} is not valid JSON: {exc}") from exc
        return entries

    def append(self, ref: SessionRef, entries: list[Entry]) -> None:
        self._append_lines(ref.file, entries)

    def _append_lines(self, path: Path, entries: list[Entry]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = b"".join(
            json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            for e in entries
        )
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            _cut_torn_tail(fd)
            os.write(fd, payload)
            getattr(os, "fdatasync", os.fsync)(fd)  # macOS has no fdatasync
        finally:
            os.close(fd)


def _cut_torn_tail(fd: int) -> None:
    """Drop an unterminated last line so the next line starts cleanly."""
    size = os.fstat(fd).st_size
    if size == 0:
        return
    window = min(size, 1 << 20)
    data = os.pread(fd, window, size - window)
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n")
    os.ftruncate(fd, (size - window + cut + 1) if cut >= 0 else 0 if window == size else size)


def last_entry_id(entries: list[Entry]) -> str | None:
    for entry in reversed(entries):
        if entry.get("type") != "session" and "id" in entry:
            return str(entry["id"])
    return None
