"""L2: parked snapshots held in RAM, least recently used out first, under a byte budget.

A copy lives in a pooled buffer (``buffers``), and what it costs the budget
is the buffer's whole capacity. Eviction only lets go of the RAM copy; the
store forgets an entry that no tier holds afterwards. Two kinds of entry are
never evicted: a pinned one (being restored) and an unwritten one (not yet
offered to the disk tier, so a small RAM budget cannot keep it off disk).

Shares the store's lock: the same entries are the disk tier's too.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

from openclaw_daemon.cache.base import RAM, CacheEntry, pin
from openclaw_daemon.cache.buffers import BufferPool
from openclaw_daemon.cache.kv_files import Blob
from openclaw_daemon.wire.errors import CacheCorruptError
from openclaw_daemon.wire.messages import ParkedTier


class RamTier:
    name: ParkedTier = RAM

    def __init__(self, budget: int, lock: threading.RLock, pool: BufferPool | None = None) -> None:
        self.budget = budget
        self.pool = pool if pool is not None else BufferPool()
        self._lock = lock
        self._held: dict[str, CacheEntry] = {}  # key -> entry, for the entries with a copy here
        self.evictions = 0

    def holds(self, entry: CacheEntry) -> bool:
        return entry.blob is not None

    def pinned(self, entry: CacheEntry) -> AbstractContextManager[None]:
        return pin(entry, self._lock)

    def load(self, entry: CacheEntry) -> Blob:
        with self._lock:
            if entry.blob is None:
                raise CacheCorruptError("cache entry is no longer held in RAM")
            return entry.blob

    def store(self, entry: CacheEntry, blob: Blob) -> None:
        with self._lock:
            entry.blob = blob
            self._held[entry.key] = entry

    def drop(self, entry: CacheEntry) -> None:
        """Let go of the entry's RAM copy. The buffer goes back to the pool here,
        or, if the writer holds it, when the writer is done: never twice."""
        with self._lock:
            blob, entry.blob = entry.blob, None
            if self._held.get(entry.key) is entry:
                del self._held[entry.key]
            if blob is not None and not entry.writing:
                self.pool.give(blob)

    def writer_done(self, entry: CacheEntry, blob: Blob) -> None:
        """The disk writer let go of ``blob``: if RAM let go of it meanwhile, the
        pool takes it back now (``drop`` left it to the writer)."""
        if entry.blob is not blob:
            self.pool.give(blob)

    def freed_by_dropping(self, entries: list[CacheEntry]) -> int:
        """RAM that dropping ``entries`` would free."""
        return sum(e.blob_bytes for e in entries if e.blob is not None)

    def evict(self, reserve: int = 0) -> list[CacheEntry]:
        """Drop RAM copies, least recently used first, until ``reserve`` more bytes fit."""
        with self._lock:
            held = sorted(
                (e for e in self._held.values() if not e.pins and not e.unwritten),
                key=lambda e: e.used_at,
            )
            used = reserve + sum(e.blob_bytes for e in self._held.values())
            if used + self.pool.spare_bytes > self.budget:
                self.pool.drop_spares()  # an empty spare never costs a parked session
            evicted: list[CacheEntry] = []
            for entry in held:
                if used <= self.budget:
                    break
                self.drop(entry)
                used -= entry.blob_bytes
                self.evictions += 1
                evicted.append(entry)
            return evicted

    def room_for_new(self) -> int:
        """The most a new copy may take: the budget less what eviction cannot free
        now (pinned and unwritten entries)."""
        with self._lock:
            stuck = sum(e.blob_bytes for e in self._held.values() if e.pins or e.unwritten)
            return self.budget - stuck

    def used_bytes(self) -> int:
        with self._lock:
            return sum(e.blob_bytes for e in self._held.values()) + self.pool.spare_bytes

    def stats(self) -> dict[str, Any]:
        with self._lock:
            entries = len(self._held)
        return {
            "ramEntries": entries,
            "ramBytes": self.used_bytes(),
            "ramBudget": self.budget,
            "spareBufferBytes": self.pool.spare_bytes,
            "buffersReused": self.pool.reused,
            "buffersAllocated": self.pool.allocated,
            "buffersPrepared": self.pool.prepared,
            "evictedRam": self.evictions,
        }
