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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openclaw_daemon.cache import anon_memory, kv_files
from openclaw_daemon.cache.prefix_index import Match, PrefixIndex
from openclaw_daemon.wire.errors import CacheCorruptError

log = logging.getLogger("openclawd.cache")
_BUSY_POLL_S = 0.01
_QUIET_BEFORE_WRITE_S = 1.0
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
        buffer = self.reuse(size)
        return buffer if buffer is not None else self.allocate(size)

    def reuse(self, size: int) -> memoryview | None:
        """The smallest spare that fits ``size`` bytes, if any (no allocation)."""
        with self._lock:
            fitting = [m for m in self._spares if len(m) >= size]
            if not fitting:
                return None
            buffer = min(fitting, key=len)
            self._spares.remove(buffer)
            self.reused += 1
            return memoryview(buffer)[:size]

    def allocate(self, size: int) -> memoryview:
        self.allocated += 1
        return memoryview(anon_memory.populated_map(self.capacity_for(size)))[:size]

    @staticmethod
    def capacity_for(size: int) -> int:
        """What a fresh buffer for ``size`` bytes holds: headroom for the session's growth."""
        return size + size // 8 + (8 << 20)

    def give(self, blob: kv_files.Blob) -> None:
        """Take back a buffer nothing else refers to any more."""
        if not isinstance(blob, memoryview) or not isinstance(blob.obj, mmap.mmap):
            return
        with self._lock:
            self._spares.append(blob.obj)
            if len(self._spares) > self.max_spares:
                self._spares.sort(key=len)
                self._spares.pop(0)

    def drop_spares(self) -> None:
        with self._lock:
            self._spares.clear()

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
    # Both change only under the store's lock. While ``writing``, the writer
    # owns ``blob``'s buffer: dropping the entry's reference does not recycle
    # it, the writer does when it is done. A pinned entry is being restored
    # and is never evicted.
    writing: bool = False
    pins: int = 0
    # Not yet offered to the writer: keeps its RAM copy even over budget, so a
    # small RAM budget never keeps an entry out of the disk tier.
    unwritten: bool = False

    @property
    def tier(self) -> str:
        return "L2" if self.blob is not None else "L3"

    @property
    def usable(self) -> bool:
        return self.blob is not None or self.on_disk


class _Abandoned(Exception):
    """The entry being written was superseded or cleared: stop writing it."""


class KVStore:
    def __init__(
        self,
        root: Path,
        fingerprint: dict[str, Any],
        *,
        ram_budget: int,
        disk_budget: int,
        quiet_for: Callable[[], float] = lambda: float("inf"),
        worker_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.root = root
        self.quiet_for = quiet_for  # seconds since the model worker last served a turn
        self.worker_busy = worker_busy  # the worker runs anything: a turn, or parking
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
        self._lock = threading.RLock()
        self._writes: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="cache-writer", daemon=True)
        self._writer.start()

    # -- start-up --------------------------------------------------------------
    def load_disk_index(self) -> None:
        """Index the files a previous daemon left (headers only; blobs load on use)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for tmp in self.dir.glob(".*.tmp"):  # a write cut off by a killed daemon
            with contextlib.suppress(OSError):
                tmp.unlink()
        for path in sorted(self.dir.glob(f"*{kv_files.SUFFIX}")):
            try:
                tokens, blob_bytes = kv_files.read_header(path, self.fingerprint)
                if path.stem != kv_files.chain_key(self.dir.name, tokens):
                    # Renamed or copied under another entry's key: the index
                    # would serve it for a prompt it does not hold.
                    raise CacheCorruptError(f"cache file {path.name} is named for other tokens")
                used_at = path.lstat().st_mtime
            except (CacheCorruptError, OSError) as exc:
                self._discard_file(path, str(exc))
                continue
            entry = CacheEntry(path.stem, tokens, blob_bytes, "disk", on_disk=True, used_at=used_at)
            self.entries[entry.key] = entry
            self.index.insert(entry.key, tokens)
        log.info("cache: %d entries on disk in %s", len(self.entries), self.dir)

    # -- lookups ---------------------------------------------------------------
    def best(self, tokens: list[int]) -> tuple[Match, CacheEntry | None]:
        """The longest cached prefix of ``tokens`` and the cheapest entry holding it."""
        with self._lock:
            match = self.index.longest_match(tokens)
            usable = [self.entries[key] for key in match.keys if self.entries[key].usable]
            if not usable:
                return match, None
            # RAM before disk, then the smallest blob (cheapest to restore).
            entry = min(usable, key=lambda e: (e.blob is None, e.blob_bytes))
            return match, entry

    @contextlib.contextmanager
    def pinned(self, entry: CacheEntry) -> Iterator[None]:
        """Keep ``entry`` in its tier (no eviction) while it is being restored."""
        with self._lock:
            entry.pins += 1
        try:
            yield
        finally:
            with self._lock:
                entry.pins -= 1

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
        except CacheCorruptError as exc:
            self.discard(entry, exc.message)
            raise
        except OSError as exc:  # gone or unreadable: not corruption, but unusable now
            with self._lock:
                self._forget(entry.key)
            raise CacheCorruptError(f"cache file {path.name} could not be read: {exc}") from exc
        with contextlib.suppress(OSError):
            os.utime(path)
        return blob

    def discard(self, entry: CacheEntry, reason: str) -> None:
        """Drop an entry whose state is bad, from every tier, and report why."""
        with self._lock:
            self._forget(entry.key)
        self._discard_file(self.dir / f"{entry.key}{kv_files.SUFFIX}", reason)

    # -- storing ---------------------------------------------------------------
    def covers(self, tokens: tuple[int, ...]) -> bool:
        """True if some entry holds all of ``tokens`` (exactly, or trimmed from a longer one)."""
        with self._lock:
            match = self.index.longest_match(tokens)
            return match.length == len(tokens) and any(
                self.entries[key].usable or self.entries[key].writing for key in match.keys
            )

    def buffer_for(self, tokens: tuple[int, ...], size: int) -> memoryview:
        """A buffer for the snapshot of ``tokens``.

        ``add`` will drop the entries holding a prefix of ``tokens``; the RAM copy
        of one of them (typically the session's previous state) is taken now as
        the new snapshot's buffer, so parking after a session switch is a plain
        copy, with no fresh memory to fault in and no old buffer to unmap (each
        ~65 ms and ~10 ms for 160 MB, measured; without this a round-robin over
        sessions paid them on every turn).

        A new session has no such entry. If its snapshot would push the RAM
        tier over budget, the least recently used entries are evicted first, so
        the buffer of one of them is reused instead of faulting in fresh memory
        that the eviction right after would balance by unmapping another (the
        ~255 ms wait of the turn after scenario 9's last prime).
        """
        with self._lock:
            self._recycle_superseded(tokens, size)
            buffer = self.pool.reuse(size)
            if buffer is None:
                # What ``add`` frees of the entries this one supersedes needs no room.
                freed = sum(
                    self.entries[key].blob_bytes
                    for key in self.index.prefixes_of(tokens)
                    if self.entries[key].blob is not None
                )
                self._evict_ram(reserve=max(0, self.pool.capacity_for(size) - freed))
                # Taken under the lock: the writer's eviction could drop it otherwise.
                buffer = self.pool.reuse(size)
        # A fresh buffer is faulted in outside the lock (tens of ms for 160 MB).
        return buffer if buffer is not None else self.pool.allocate(size)

    def _recycle_superseded(self, tokens: tuple[int, ...], size: int) -> None:
        """Forget an entry ``tokens`` supersedes whose buffer fits ``size``: its buffer
        becomes the pool's spare, for ``pool.reuse`` to hand out."""
        for key in self.index.prefixes_of(tokens):
            entry = self.entries[key]
            buffer = entry.blob
            if (
                isinstance(buffer, memoryview)
                and isinstance(buffer.obj, mmap.mmap)
                and len(buffer.obj) >= size
                and not entry.writing
                and not entry.pins
            ):
                self._forget(key)  # its buffer goes to the pool's spares
                self._writes.put(("delete", key))
                return

    def add(self, tokens: tuple[int, ...], blob: kv_files.Blob, label: str) -> CacheEntry:
        """Park a snapshot in RAM and queue it for disk. Entries that hold a
        prefix of it are dropped: this one can be trimmed to serve them."""
        key = kv_files.chain_key(self.dir.name, tokens)
        entry = CacheEntry(
            key, tokens, _held_bytes(blob), label, blob=blob, used_at=time.time(), unwritten=True
        )
        with self._lock:
            superseded = [k for k in self.index.prefixes_of(tokens) if k != key]
            self._forget(key)
            self.entries[key] = entry
            self.index.insert(key, tokens)
            self.counters["stored"] += 1
            self._writes.put(("write", entry))
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
        """Let go of the entry's RAM copy. The buffer goes back to the pool here,
        or, if the writer holds it, when the writer is done: never twice."""
        blob, entry.blob = entry.blob, None
        if blob is not None and not entry.writing:
            self.pool.give(blob)

    def _evict_ram(self, reserve: int = 0) -> None:
        """Drop RAM copies, least recently used first, until ``reserve`` more bytes fit."""
        held = sorted(
            (
                e
                for e in self.entries.values()
                if e.blob is not None and not e.pins and not e.unwritten
            ),
            key=lambda e: e.used_at,
        )
        used = reserve + sum(e.blob_bytes for e in self.entries.values() if e.blob is not None)
        if used + self.pool.spare_bytes > self.ram_budget:
            self.pool.drop_spares()  # an empty spare never costs a parked session
        for entry in held:
            if used <= self.ram_budget:
                return
            self._drop_blob(entry)
            used -= entry.blob_bytes
            self.counters["evictedRam"] += 1
            if not entry.on_disk and not entry.writing:
                self._forget(entry.key)  # in no tier any more

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
                        (self.dir / f"{item}{kv_files.SUFFIX}").unlink()
                elif op == "clear":
                    self._clear_files()
            except Exception:  # a full disk must not kill the writer
                log.exception("cache writer: %s failed", op)
            finally:
                self._writes.task_done()

    def _write(self, entry: CacheEntry) -> None:
        with self._lock:
            blob = entry.blob
            if self.entries.get(entry.key) is not entry or blob is None:
                return  # superseded or cleared before its turn came
            entry.writing = True
        path = self.dir / f"{entry.key}{kv_files.SUFFIX}"
        written = False
        try:
            self._write_deadline = time.monotonic() + _MAX_WRITE_DELAY_S
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            kv_files.write_blob(
                path, self.fingerprint, entry.tokens, blob, pause=lambda: self._pause(entry)
            )
            written = True
        except _Abandoned:
            pass
        finally:
            with self._lock:
                entry.writing = entry.unwritten = False
                current = self.entries.get(entry.key) is entry
                entry.on_disk = written and current
                if entry.blob is not blob:  # RAM let go of it while we wrote
                    self.pool.give(blob)
                self._evict_ram()  # it may have waited over budget for this write
            if written and not current:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        if written and current:
            self._evict_disk()

    def _pause(self, entry: CacheEntry) -> None:
        """Between chunks: stop if the entry is gone; hold until turns have
        paused. A stream of turns must not starve the disk tier, so past the
        write's deadline it goes on in the gaps between them, never alongside
        a turn or a park (a 150 MB crc32 and write doubled a concurrent park's
        copy on 2 cores, and the next turn waited for that park)."""
        while True:
            with self._lock:
                if self.entries.get(entry.key) is not entry:
                    raise _Abandoned
            if (
                self._closing
                or self.quiet_for() >= _QUIET_BEFORE_WRITE_S
                or (time.monotonic() > self._write_deadline and not self.worker_busy())
            ):
                return
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
            with self._lock:
                entry = self.entries.get(path.stem)
                if entry is not None and entry.pins and path.parent == self.dir:
                    continue  # being restored right now
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
