"""Saved token tapes: each session's exact token ids, kept beside the KV cache.

After a restart the daemon would otherwise rebuild a tape by re-tokenizing
the transcript, and re-tokenized replies need not give back the ids the model
generated, so the prompt could leave the parked KV state at the first
assistant message. A saved tape is used only if it was written after the
session's current last entry, with the same system prompt and model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from openclaw_sessions.store import SessionRef


class TapeStore:
    def __init__(self, root: Path, fingerprint_id: str, *, n_vocab: int) -> None:
        self.root = root
        self.fingerprint_id = fingerprint_id
        self.n_vocab = n_vocab  # ids outside the vocabulary would crash llama.cpp

    def _path(self, ref: SessionRef) -> Path:
        # Hashed: agent ids and session keys never become path components.
        return self.root / f"{hashlib.sha256(ref.key.encode()).hexdigest()[:32]}.json"

    def save(self, ref: SessionRef, tokens: list[int], last_entry_id: str, system: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = {
            "key": ref.key,
            "model": self.fingerprint_id,
            "lastEntryId": last_entry_id,
            "system": system,
            "tokens": tokens,
        }
        path = self._path(ref)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, separators=(",", ":")))
        os.replace(tmp, path)

    def load(self, ref: SessionRef, last_entry_id: str, system: str) -> list[int] | None:
        """The saved ids if they belong to exactly this state of the session."""
        try:
            record = json.loads(self._path(ref).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or (
            record.get("key") != ref.key
            or record.get("model") != self.fingerprint_id
            or record.get("lastEntryId") != last_entry_id
            or record.get("system") != system
        ):
            return None
        tokens = record.get("tokens")
        if not isinstance(tokens, list) or not all(
            isinstance(t, int) and 0 <= t < self.n_vocab for t in tokens
        ):
            return None
        return tokens

    def forget(self, ref: SessionRef) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(ref).unlink()
