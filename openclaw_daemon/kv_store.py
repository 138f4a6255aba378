"""Parked KV states: L2 (RAM, LRU under a byte budget) and L3 (disk, under a byte budget).

Every entry is one sequence snapshot: the exact tokens it holds plus the
``llama_state_seq_get_data`` blob. One ``PrefixIndex`` covers both tiers, so a
lookup finds the longest cached prefix wherever it lives. Disk writes and
deletes run on a writer thread, off the turn's critical path; files survive
daemon restarts and are re-indexed (headers only) at start. A file that fails
its checks is deleted and counted, never loaded.

Thread-safe: the model worker, the writer thread and status requests share it.
No llama_cpp here: the engine produces and consumes the blobs.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openclaw_daemon import kv_files
from openclaw_daemon.errors import CacheCorruptError
from openclaw_daemon.prefix_index import Match, PrefixIndex

log = logging.getLogger("openclawd.cache")
_BUSY_POLL_S = 0.01
_MAX_WRITE_DELAY_S = 60.0  # per write: a stream of turns must not starve the disk tier


class BufferPool:
    """Snapshot buffers, reused once the entry that held one is superseded.

    Fresh anonymous memory costs a page fault per 4 KiB on first touch: for a
    6000-token snapshot (138 MB) that is three times the copy itself, and it
    sits on the worker between turns. A session's next snapshot supersedes
    its last, so recycling that buffer (allocated with headroom for growth)
    makes parking a plain memcpy.
    """

    def __init__(self, max_spares: int = 1) -> None:
        self.max_spares = max_spares
        self._spares: list[mmap.mmap] = []
        self._lock = threading.Lock()
        self.reused = 0
        self.allocated = 0

    def take(self, size: int) -> memoryview:
        with self._lock:
            fitting = [m for m in self._spares if len(m) >= size]
            if fitting:
                buffer = min(fitting, key=len)
                self._spares.remove(buffer)
                self.reused += 1
                return memoryview(buffer)[:size]
        self.allocated += 1
        capacity = size + size // 8 + (8 << 20)
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
        return memoryview(mmap.mmap(-1, capacity, flags=flags))[:size]

    def give(self, blob: kv_files.Blob) -> None:
        """Take back a buffer nothing else refers to any more."""
        if not isinstance(blob, memoryview) or not isinstance(blob.obj, mmap.mmap):
            return
        with self._lock:
            self._spares.append(blob.obj)
            if len(self._spares) > self.max_spares:
                self._spares.sort(key=len)
                self._spares.pop(0)

    @property
    def spare_bytes(self) -> int:
        with self._lock:
            return sum(len(m) for m in self._spares)


def _held_bytes(blob: kv_files.Blob) -> int:
    """RAM a blob holds: a pooled buffer's whole capacity, headroom included."""
    if isinstance(blob, memoryview):
        return len(blob.obj) if isinstance(blob.obj, mmap.mmap) else blob.nbytes
    return len(blob)


@dataclass
class CacheEntry:
    key: str
    tokens: tuple[int, ...]
    blob_bytes: int  # RAM held while in L2 (file entries: the blob's size)
    label: str  # the session whose turn produced it, for explanations
    blob: kv_files.Blob | None = None  # the L2 copy, if held in RAM
    on_disk: bool = False
    used_at: float = 0.0

    @property
    def tier(self) -> str:
        return "L2" if self.blob is not None else "L3"


class KVStore:
    def __init__(
        self,
        root: Path,
        fingerprint: dict[str, Any],
        *,
        ram_budget: int,
        disk_budget: int,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.root = root
        self.busy = busy  # the model worker is serving a turn: writes wait
        self.fingerprint = fingerprint
        self.dir = root / kv_files.fingerprint_id(fingerprint)
        self.ram_budget = ram_budget
        self.disk_budget = disk_budget
        self.index = PrefixIndex()
        self.entries: dict[str, CacheEntry] = {}
        self.counters = {"stored": 0, "evictedRam": 0, "evictedDisk": 0, "discarded": 0}
        self.problems: list[str] = []  # recent discards, for status and doctor
        self.pool = BufferPool()
        self._closing = False  # set at shutdown: finish writes without waiting
        self._write_deadline = 0.0
        self._writing: CacheEntry | None = None
        self._lock = threading.RLock()
        self._writes: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="cache-writer", daemon=True)
        self._writer.start()

    # -- start-up --------------------------------------------------------------
    def load_disk_index(self) -> None:
        """Index the files a previous daemon left (headers only; blobs load on use)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in sorted(self.dir.glob(f"*{kv_files.SUFFIX}")):
            try:
                tokens, blob_bytes = kv_files.read_header(path, self.fingerprint)
            except (CacheCorruptError, OSError) as exc:
                self._discard_file(path, str(exc))
                continue
            entry = CacheEntry(
                path.stem, tokens, blob_bytes, "disk", on_disk=True, used_at=path.stat().st_mtime
            )
            self.entries[entry.key] = entry
            self.index.insert(entry.key, tokens)
        for tmp in self.dir.glob(".*.tmp"):  # a write cut off by a killed daemon
            with contextlib.suppress(OSError):
                tmp.unlink()
        log.info("cache: %d entries on disk in %s", len(self.entries), self.dir)

    # -- lookups ---------------------------------------------------------------
    def best(self, tokens: list[int]) -> tuple[Match, CacheEntry | None]:
        """The longest cached prefix of ``tokens`` and the cheapest entry holding it."""
        with self._lock:
            match = self.index.longest_match(tokens)
            usable = [
                self.entries[key]
                for key in match.keys
                if self.entries[key].blob is not None or self.entries[key].on_disk
            ]
            if not usable:
                return match, None
            # RAM before disk, then the smallest blob (cheapest to restore).
            entry = min(usable, key=lambda e: (e.blob is None, e.blob_bytes))
            return match, entry

    def fetch(self, entry: CacheEntry) -> kv_files.Blob:
        """The entry's blob, from RAM or disk; a bad file is discarded and raises."""
        with self._lock:
            entry.used_at = time.time()
            if entry.blob is not None:
                return entry.blob
        path = self.dir / f"{entry.key}{kv_files.SUFFIX}"
        try:
            tokens, blob = kv_files.read_blob(path, self.fingerprint)
            if tokens != entry.tokens:
                raise CacheCorruptError(f"cache file {path.name} holds other tokens than indexed")
        except (CacheCorruptError, OSError) as exc:
            with self._lock:
                self._forget(entry.key)
            self._discard_file(path, str(exc))
            raise CacheCorruptError(str(exc)) from exc
        with contextlib.suppress(OSError):
            os.utime(path)
        return blob

    # -- storing ---------------------------------------------------------------
    def covers(self, tokens: tuple[int, ...]) -> bool:
        """True if some entry holds all of ``tokens`` (exactly, or trimmed from a longer one)."""
        with self._lock:
            match = self.index.longest_match(tokens)
            return match.length == len(tokens) and any(
                self.entries[key].blob is not None
                or self.entries[key].on_disk
                or self._write_pending(key)
                for key in match.keys
            )

    def add(self, tokens: tuple[int, ...], blob: kv_files.Blob, label: str) -> CacheEntry:
        """Park a snapshot in RAM and queue it for disk. Entries that hold a
        prefix of it are dropped: this one can be trimmed to serve them."""
        key = kv_files.chain_key(self.dir.name, tokens)
        entry = CacheEntry(key, tokens, _held_bytes(blob), label, blob=blob, used_at=time.time())
        with self._lock:
            superseded = [k for k in self.index.prefixes_of(tokens) if k != key]
            self._forget(key)
            self.entries[key] = entry
            self.index.insert(key, tokens)
            self.counters["stored"] += 1
            self._writes.put(("write", (entry, blob)))
            for old in superseded:
                self._forget(old)
                self._writes.put(("delete", old))
            self._evict_ram()
        return entry

    def _forget(self, key: str) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.index.remove(key)
            self._drop_blob(entry)

    def _drop_blob(self, entry: CacheEntry) -> None:
        """Let go of the entry's RAM copy; recycle it unless the writer still needs it."""
        blob, entry.blob = entry.blob, None
        if blob is not None and self._writing is not entry and not self._write_pending(entry.key):
            self.pool.give(blob)

    def _evict_ram(self) -> None:
        held = sorted(
            (e for e in self.entries.values() if e.blob is not None), key=lambda e: e.used_at
        )
        # The spare buffer counts too: it is RAM the cache holds.
        used = sum(e.blob_bytes for e in held) + self.pool.spare_bytes
        for entry in held:
            if used <= self.ram_budget:
                return
            self._drop_blob(entry)
            used -= entry.blob_bytes
            self.counters["evictedRam"] += 1
            if not entry.on_disk and not self._write_pending(entry.key):
                self._forget(entry.key)

    def _write_pending(self, key: str) -> bool:
        with self._writes.mutex:
            return any(op == "write" and item[0].key == key for op, item in self._writes.queue)

    # -- the writer thread -------------------------------------------------------
    def _write_loop(self) -> None:
        # Writing a blob costs a crc32 and a copy into the page cache: on a
        # 2-core laptop that would slow a concurrent prefill, so the writer
        # runs at low priority and pauses between chunks while a turn runs.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            op, item = self._writes.get()
            try:
                if op == "stop":
                    return
                if op == "write":
                    self._write(*item)
                elif op == "delete":
                    with contextlib.suppress(FileNotFoundError):
                        (self.dir / f"{item}{kv_files.SUFFIX}").unlink()
                elif op == "clear":
                    self._clear_files()
            except Exception:  # a full disk must not kill the writer
                log.exception("cache writer: %s failed", op)
            finally:
                self._writes.task_done()

    def _write(self, entry: CacheEntry, blob: kv_files.Blob) -> None:
        with self._lock:
            current = self.entries.get(entry.key) is entry
            if current:
                self._writing = entry
        try:
            if current:  # else superseded or cleared before its turn came
                self._write_deadline = time.monotonic() + _MAX_WRITE_DELAY_S
                self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                path = self.dir / f"{entry.key}{kv_files.SUFFIX}"
                kv_files.write_blob(
                    path, self.fingerprint, entry.tokens, blob, pause=self._wait_for_gap
                )
        finally:
            with self._lock:
                self._writing = None
                if current:
                    entry.on_disk = True
                if entry.blob is not blob and not self._write_pending(entry.key):
                    self.pool.give(blob)  # RAM let go of it while it was being written
        if current:
            self._evict_disk()

    def _wait_for_gap(self) -> None:
        """Hold a write while a turn runs (bounded: the disk tier must not starve)."""
        while self.busy() and time.monotonic() < self._write_deadline and not self._closing:
            time.sleep(_BUSY_POLL_S)

    def _evict_disk(self) -> None:
        """Delete least recently used files (of any model) until under the budget."""
        files = []
        for path in self.root.glob(f"*/*{kv_files.SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                info = path.stat()
                files.append((info.st_mtime, info.st_size, path))
        used = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if used <= self.disk_budget:
                return
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            used -= size
            self.counters["evictedDisk"] += 1
            with self._lock:
                entry = self.entries.get(path.stem)
                if entry is not None and path.parent == self.dir:
                    entry.on_disk = False
                    if entry.blob is None:
                        self._forget(entry.key)

    def _discard_file(self, path: Path, reason: str) -> None:
        log.warning("cache: discarding %s: %s", path.name, reason)
        with contextlib.suppress(OSError):
            path.unlink()
        with self._lock:
            self.counters["discarded"] += 1
            self.problems = [*self.problems[-9:], reason]

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

    def clear(self) -> dict[str, Any]:
        before = self.stats()
        with self._lock:
            for key in list(self.entries):
                self._forget(key)
            self._writes.put(("clear", None))
        self.flush()
        return {
            "cleared": before["entries"],
            "ramBytes": before["ramBytes"],
            "diskBytes": before["diskBytes"],
        }

    def close(self, timeout: float = 30.0) -> None:
        self._closing = True
        self.flush(timeout)
        self._writes.put(("stop", None))
        self._writer.join(timeout)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            entries = list(self.entries.values())
            problems = list(self.problems)
            counters = dict(self.counters)
        disk_bytes = 0
        for path in self.root.glob(f"*/*{kv_files.SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                disk_bytes += path.stat().st_size
        return {
            "dir": str(self.dir),
            "entries": len(entries),
            "ramEntries": sum(1 for e in entries if e.blob is not None),
            "diskEntries": sum(1 for e in entries if e.on_disk),
            "ramBytes": sum(e.blob_bytes for e in entries if e.blob is not None)
            + self.pool.spare_bytes,
            "ramBudget": self.ram_budget,
            "diskBytes": disk_bytes,
            "diskBudget": self.disk_budget,
            "tokens": sum(len(e.tokens) for e in entries),
            "pendingWrites": self._writes.unfinished_tasks,
            "spareBufferBytes": self.pool.spare_bytes,
            "buffersReused": self.pool.reused,
            "buffersAllocated": self.pool.allocated,
            **counters,
            "problems": problems,
        }
