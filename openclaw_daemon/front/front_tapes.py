"""The OpenAI front's tapes: each reply's exact token ids, by conversation key.

In memory (most recent first, bounded) and saved to disk at idle time, so a
conversation continued after a daemon restart still spells the ids its
parked KV state holds (the session tapes' ``TapeStore`` does the same for
sessions). A saved tape is used only for the model it was made with; one that
fails its checks is ignored, and the prompt is then tokenized afresh.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from openclaw_daemon.model.tape import TokenTape

# Each reply's tape holds its whole conversation, so both bounds count tokens or
# bytes, not replies: the oldest go first.
MEMORY_TOKENS = 2_000_000  # ~250 conversations of 8k tokens
SAVED_BYTES = 64 << 20


class FrontTapes:
    def __init__(self, root: Path, fingerprint_id: str, *, n_vocab: int) -> None:
        self.root = root
        self.fingerprint_id = fingerprint_id
        self.n_vocab = n_vocab
        self._tapes: OrderedDict[str, TokenTape] = OrderedDict()
        self._tokens = 0  # in the tapes held in memory
        self._unsaved: dict[str, TokenTape] = {}

    def __len__(self) -> int:
        return len(self._tapes)

    def put(self, key: str, tape: TokenTape) -> None:
        self._hold(key, tape)
        self._unsaved[key] = tape

    def _hold(self, key: str, tape: TokenTape) -> None:
        old = self._tapes.pop(key, None)
        self._tokens += len(tape.tokens) - (len(old.tokens) if old else 0)
        self._tapes[key] = tape
        while self._tokens > MEMORY_TOKENS and len(self._tapes) > 1:
            dropped_key, dropped = self._tapes.popitem(last=False)
            self._tokens -= len(dropped.tokens)
            self._unsaved.pop(dropped_key, None)

    def longest(self, keys: Sequence[str]) -> tuple[int, TokenTape | None]:
        """The longest prefix with a tape: ``(k, tape)`` for ``keys[k]``, or ``(0, None)``."""
        for k in range(len(keys) - 1, 0, -1):
            tape = self._tapes.get(keys[k]) or self._load(keys[k])
            if tape is not None:
                self._hold(keys[k], tape)  # the most recent now
                return k, tape
        return 0, None

    def save(self) -> int:
        """Write the tapes made since the last save (idle time); how many."""
        if not self._unsaved:
            return 0
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        written = 0
        while self._unsaved:
            key, tape = self._unsaved.popitem()
            record = {
                "model": self.fingerprint_id,
                "tokens": tape.tokens,
                "text": tape.text,
                "messages": tape.messages,
            }
            path = self._path(key)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                tmp.write_text(json.dumps(record, separators=(",", ":")))
                os.replace(tmp, path)
                written += 1
            except OSError:  # a full disk costs a re-tokenization after a restart, no more
                with contextlib.suppress(OSError):
                    tmp.unlink()
        self._prune()
        return written

    def _path(self, key: str) -> Path:
        return self.root / f"{key[:40]}.json"

    def _load(self, key: str) -> TokenTape | None:
        try:
            record = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("model") != self.fingerprint_id:
            return None
        tokens, text, messages = record.get("tokens"), record.get("text"), record.get("messages")
        if (
            not isinstance(tokens, list)
            or not all(isinstance(t, int) and 0 <= t < self.n_vocab for t in tokens)
            or not isinstance(text, str)
            or not isinstance(messages, list)
            or not all(
                isinstance(m, dict) and all(isinstance(v, str) for v in m.values())
                for m in messages
            )
        ):
            return None
        return TokenTape(tokens=tokens, text=text, messages=messages)

    def _prune(self) -> None:
        """The oldest files go until the rest fit ``SAVED_BYTES``."""
        try:
            files = [(p.stat(), p) for p in self.root.glob("*.json")]
        except OSError:
            return
        files.sort(key=lambda item: item[0].st_mtime, reverse=True)
        total = 0
        for stat, path in files:
            total += stat.st_size
            if total > SAVED_BYTES:
                with contextlib.suppress(OSError):
                    path.unlink()
