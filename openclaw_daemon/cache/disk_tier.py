"""L3: parked snapshots in files under a byte budget, written by a background thread.

One file per entry, in a directory named for the model's fingerprint, in the
format of ``kv_files`` (unchanged: files a previous daemon wrote load again).
Writes and deletes run on a writer thread, off the turn's critical path, and
hold while turns run. At start the files are indexed from their headers only;
blobs load on use. A file that fails its checks is deleted and counted, never
loaded. The byte budget covers every model's files under the cache root, least
recently used (file mtime) out first.

Shares the store's lock: the same entries are the RAM tier's too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from openclaw_daemon.cache import kv_files
from openclaw_daemon.cache.base import DISK, CacheEntry, TierOwner, pin
from openclaw_daemon.cache.kv_files import Blob
from openclaw_daemon.wire.errors import CacheCorruptError
from openclaw_daemon.wire.messages import ParkedTier

log = logging.getLogger("openclawd.cache")
_BUSY_POLL_S = 0.01
_QUIET_BEFORE_WRITE_S = 1.0
_MAX_WRITE_DELAY_S = 60.0  # per write: a stream of turns must not starve the disk tier


class _Abandoned(Exception):
    """The entry being written was superseded or cleared: stop writing it."""


class DiskTier:
    name: ParkedTier = DISK

    def __init__(
        self,
        root: Path,
        fingerprint: dict[str, Any],
        *,
        budget: int,
        lock: threading.RLock,
        owner: TierOwner,
        quiet_for: Callable[[], float] = lambda: float("inf"),
        worker_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.root = root
        self.fingerprint = fingerprint
        self.dir = root / kv_files.fingerprint_id(fingerprint)
        self.budget = budget
        self.quiet_for = quiet_for  # seconds since the model worker last served a turn
        self.worker_busy = worker_busy  # the worker runs anything: a turn, or parking
        self.counters = {"evictedDisk": 0, "discarded": 0}
        self.problems: list[str] = []  # recent discards, for status and doctor
        self._lock = lock
        self._owner = owner
        self._closing = False  # set at shutdown: finish writes without waiting
        self._write_deadline = 0.0
        self._writes: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="cache-writer", daemon=True)
        self._writer.start()

    def path(self, key: str) -> Path:
        return self.dir / f"{key}{kv_files.SUFFIX}"

    # -- start-up --------------------------------------------------------------
    def scan(self) -> list[CacheEntry]:
        """The entries a previous daemon left (headers only; blobs load on use)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for tmp in self.dir.glob(".*.tmp"):  # a write cut off by a killed daemon
            with contextlib.suppress(OSError):
                tmp.unlink()
        found = []
        for path in sorted(self.dir.glob(f"*{kv_files.SUFFIX}")):
            try:
                tokens, blob_bytes, floor = kv_files.read_header(path, self.fingerprint)
                if path.stem != kv_files.chain_key(self.dir.name, tokens):
                    # Renamed or copied under another entry's key: the index
                    # would serve it for a prompt it does not hold.
                    raise CacheCorruptError(f"cache file {path.name} is named for other tokens")
                used_at = path.lstat().st_mtime
            except (CacheCorruptError, OSError) as exc:
                self.discard_file(path, str(exc))
                continue
            found.append(
                CacheEntry(
                    path.stem,
                    tokens,
                    blob_bytes,
                    "disk",
                    on_disk=True,
                    used_at=used_at,
                    trim_floor=floor,
                )
            )
        return found

    # -- the tier's verbs ------------------------------------------------------
    def holds(self, entry: CacheEntry) -> bool:
        return entry.on_disk

    def pinned(self, entry: CacheEntry) -> AbstractContextManager[None]:
        return pin(entry, self._lock)

    def load(self, entry: CacheEntry) -> Blob:
        """The entry's blob from its file; a damaged file is discarded first. An
        unreadable one (gone, no permission) raises too, but is not corruption."""
        path = self.path(entry.key)
        try:
            tokens, blob = kv_files.read_blob(path, self.fingerprint)
            if tokens != entry.tokens:
                raise CacheCorruptError(f"cache file {path.name} holds other tokens than indexed")
        except CacheCorruptError as exc:
            self.discard_file(path, exc.message)
            raise
        except OSError as exc:
            raise CacheCorruptError(f"cache file {path.name} could not be read: {exc}") from exc
        with contextlib.suppress(OSError):
            os.utime(path)  # the budget's LRU order is the files' mtimes
        return blob

    def store(self, entry: CacheEntry, blob: Blob) -> None:
        """Queue the write. The writer reads ``entry.blob`` when it gets there
        (``blob``, unless the entry was superseded or cleared meanwhile)."""
        self._writes.put(("write", entry))

    def drop(self, entry: CacheEntry) -> None:
        self._writes.put(("delete", entry.key))

    def clear(self) -> None:
        """Delete every model's files (queued behind the writes already queued)."""
        self._writes.put(("clear", None))

    def discard_file(self, path: Path, reason: str) -> None:
        log.warning("cache: discarding %s: %s", path.name, reason)
        with contextlib.suppress(OSError):
            path.unlink()
        with self._lock:
            self.counters["discarded"] += 1
            self.problems = [*self.problems[-9:], reason]

    def evict(self, reserve: int = 0) -> list[CacheEntry]:
        """Delete least recently used files (of any model) until ``reserve`` more
        bytes fit the budget; the entries of this model whose file went."""
        files = self._files()
        used = reserve + sum(size for _, size, _ in files)
        evicted: list[CacheEntry] = []
        for _, size, path in sorted(files):
            if used <= self.budget:
                break
            with self._lock:
                entry = self._owner.entry_for(path.stem) if path.parent == self.dir else None
                if entry is not None and entry.pins:
                    continue  # being restored right now
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            used -= size
            self.counters["evictedDisk"] += 1
            with self._lock:
                entry = self._owner.entry_for(path.stem) if path.parent == self.dir else None
                if entry is not None:
                    entry.on_disk = False
                    evicted.append(entry)
        return evicted

    def _files(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every model's files under the cache root."""
        files = []
        for path in self.root.glob(f"*/*{kv_files.SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                info = path.stat()
                files.append((info.st_mtime, info.st_size, path))
        return files

    def used_bytes(self) -> int:
        return sum(size for _, size, _ in self._files())

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counters = dict(self.counters)
            problems = list(self.problems)
        return {
            "diskBytes": self.used_bytes(),
            "diskBudget": self.budget,
            "pendingWrites": self._writes.unfinished_tasks,
            **counters,
            "problems": problems,
        }

    # -- the writer thread -------------------------------------------------------
    def _write_loop(self) -> None:
        # Writing a blob costs a crc32, a copy into the page cache and the
        # kernel's writeback: on a 2-core laptop that slows a concurrent
        # prefill or CLI start. So the writer runs at low priority and only
        # once turns have paused for a moment (a burst of turns writes each
        # session's latest state once, not every superseded one), and it
        # pauses between chunks when a turn comes in.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            op, item = self._writes.get()
            try:
                if op == "stop":
                    return
                if op == "write":
                    self._write(item)
                elif op == "delete":
                    with contextlib.suppress(FileNotFoundError):
                        self.path(item).unlink()
                elif op == "clear":
                    self._clear_files()
            except Exception:  # a full disk must not kill the writer
                log.exception("cache writer: %s failed", op)
            finally:
                self._writes.task_done()

    def _current(self, entry: CacheEntry) -> bool:
        return self._owner.entry_for(entry.key) is entry

    def _write(self, entry: CacheEntry) -> None:
        with self._lock:
            blob = entry.blob
            if not self._current(entry) or blob is None:
                return  # superseded or cleared before its turn came
            entry.writing = True
        path = self.path(entry.key)
        written = False
        try:
            self._write_deadline = time.monotonic() + _MAX_WRITE_DELAY_S
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            kv_files.write_blob(
                path,
                self.fingerprint,
                entry.tokens,
                blob,
                trim_floor=entry.trim_floor,
                pause=lambda: self._pause(entry),
            )
            written = True
        except _Abandoned:
            pass
        finally:
            with self._lock:
                entry.writing = entry.unwritten = False
                current = self._current(entry)
                entry.on_disk = written and current
                self._owner.written(entry, blob)  # it may have waited over budget for this
            if written and not current:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        if written and current:
            self._owner.evicted(self.evict())

    def _pause(self, entry: CacheEntry) -> None:
        """Between chunks: stop if the entry is gone; hold until turns have
        paused. A stream of turns must not starve the disk tier, so past the
        write's deadline it goes on in the gaps between them, never alongside
        a turn or a park (a 150 MB crc32 and write doubled a concurrent park's
        copy on 2 cores, and the next turn waited for that park)."""
        while True:
            with self._lock:
                if not self._current(entry):
                    raise _Abandoned
            if (
                self._closing
                or self.quiet_for() >= _QUIET_BEFORE_WRITE_S
                or (time.monotonic() > self._write_deadline and not self.worker_busy())
            ):
                return
            time.sleep(_BUSY_POLL_S)

    def _clear_files(self) -> None:
        for path in self.root.glob(f"*/*{kv_files.SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- management --------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until queued writes are on disk; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._writes.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 30.0) -> None:
        self._closing = True
        self.flush(timeout)
        self._writes.put(("stop", None))
        self._writer.join(timeout)
