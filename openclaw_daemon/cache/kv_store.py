"""Parked KV states: the RAM tier (L2) and the disk tier (L3) under one prefix index.

Every entry is one sequence snapshot: the exact tokens it holds plus the
``llama_state_seq_get_data`` blob. One ``PrefixIndex`` covers both tiers, so a
lookup finds the longest cached prefix wherever it lives. A new snapshot goes
to RAM and is queued for disk; entries holding a prefix of it are dropped from
both, since it can be trimmed to serve them. The tiers themselves
(``ram_tier``, ``disk_tier``, behind ``base.KVTier``) evict under their own
budgets; this module creates and forgets entries, and forgets one that no
tier holds any more.

Thread-safe: the model worker, the writer thread and status requests share it,
under one lock that the tiers share too. No llama_cpp here: the engine
produces and consumes the blobs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from openclaw_daemon.cache import kv_files
from openclaw_daemon.cache.base import CacheEntry, KVTier
from openclaw_daemon.cache.buffers import held_bytes, pooled_capacity
from openclaw_daemon.cache.disk_tier import DiskTier
from openclaw_daemon.cache.prefix_index import Match, PrefixIndex
from openclaw_daemon.cache.ram_tier import RamTier
from openclaw_daemon.wire.errors import CacheCorruptError
from openclaw_daemon.wire.messages import ParkedTier

log = logging.getLogger("openclawd.cache")

# How long a park waits for the disk writer to give back the buffer it reuses:
# the writer stops within one 8 MiB chunk and a 10 ms poll.
HANDBACK_WAIT_S = 0.25


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
        self.index = PrefixIndex()
        self.entries: dict[str, CacheEntry] = {}
        self.stored = 0
        self._bytes_per_token: float | None = None  # of the last snapshot parked
        self._lock = threading.RLock()
        self.ram = RamTier(ram_budget, self._lock)
        self.disk = DiskTier(
            root,
            fingerprint,
            budget=disk_budget,
            lock=self._lock,
            owner=self,
            quiet_for=quiet_for,
            worker_busy=worker_busy,
        )
        self.tiers: dict[ParkedTier, KVTier] = {self.ram.name: self.ram, self.disk.name: self.disk}
        self.dir = self.disk.dir  # named for the model's fingerprint

    def load_disk_index(self) -> None:
        """Index the files a previous daemon left (headers only; blobs load on use)."""
        for entry in self.disk.scan():
            self.entries[entry.key] = entry
            self.index.insert(entry.key, entry.tokens)
        log.info("cache: %d entries on disk in %s", len(self.entries), self.dir)

    # -- lookups ---------------------------------------------------------------
    def best(self, tokens: list[int]) -> tuple[Match, CacheEntry | None]:
        """The longest cached prefix of ``tokens`` and the cheapest entry that can
        give all of it (``reusable`` without the prefill's last-token limit)."""
        _, entry, match = self.reusable(tokens, len(tokens))
        return match, entry

    def reusable(self, tokens: list[int], limit: int) -> tuple[int, CacheEntry | None, Match]:
        """The most of ``tokens`` (at most ``limit``) a restore can give, the
        cheapest entry giving it, and the longest match (for explanations).

        An entry serves the prompt tokens it shares only down to its trim
        floor: a sliding-window or recurrent state cannot be cut back further.
        Below that, a shorter entry held whole (a head checkpoint, an earlier
        turn's state) serves instead."""
        with self._lock:
            match = self.index.longest_match(tokens)
            shared = min(match.length, limit)
            found = [(shared, self.entries[key]) for key in match.keys]
            for key in self.index.prefixes_of(tokens):
                entry = self.entries[key]
                found.append((min(len(entry.tokens), limit), entry))
            usable = [(n, entry) for n, entry in found if entry.usable and entry.serves(n)]
            if not usable:
                return 0, None, match
            length = max(n for n, _ in usable)
            # RAM before disk, then the smallest blob (cheapest to restore).
            entry = min(
                (e for n, e in usable if n == length), key=lambda e: (e.blob is None, e.blob_bytes)
            )
            return length, entry, match

    def entry_for(self, key: str) -> CacheEntry | None:
        with self._lock:
            return self.entries.get(key)

    def tier_of(self, entry: CacheEntry) -> KVTier:
        """The tier a restore of ``entry`` reads (RAM when it holds a copy)."""
        return self.tiers[entry.tier]

    def pinned(self, entry: CacheEntry) -> AbstractContextManager[None]:
        """Keep ``entry`` in its tiers (no eviction) while it is being restored."""
        return self.tier_of(entry).pinned(entry)

    def fetch(self, entry: CacheEntry) -> kv_files.Blob:
        """The entry's blob, from RAM or disk; a bad file is discarded and raises."""
        with self._lock:
            entry.used_at = time.time()
            if self.ram.holds(entry):
                return self.ram.load(entry)
        try:
            return self.disk.load(entry)
        except CacheCorruptError:
            with self._lock:  # in no tier any more
                self._forget(entry.key)
            raise

    def discard(self, entry: CacheEntry, reason: str) -> None:
        """Drop an entry whose state is bad, from every tier, and report why."""
        with self._lock:
            self._forget(entry.key)
        self.disk.discard_file(self.disk.path(entry.key), reason)

    # -- storing ---------------------------------------------------------------
    def covers(self, tokens: tuple[int, ...]) -> bool:
        """True if some entry holds all of ``tokens`` (exactly, or trimmed from a longer one)."""
        with self._lock:
            match = self.index.longest_match(tokens)
            return match.length == len(tokens) and any(
                (self.entries[key].usable or self.entries[key].writing)
                and self.entries[key].serves(len(tokens))
                for key in match.keys
            )

    def _superseded(self, tokens: tuple[int, ...], trim_floor: int) -> list[str]:
        """Entries a new snapshot of ``tokens`` makes redundant: those holding a
        prefix of it it can be cut back to (not shorter than its trim floor)."""
        return [
            key
            for key in self.index.prefixes_of(tokens)
            if len(self.entries[key].tokens) >= trim_floor
        ]

    def buffer_for(self, tokens: tuple[int, ...], size: int, *, trim_floor: int = 0) -> memoryview:
        """A buffer for the snapshot of ``tokens``.

        ``add`` will drop the entries holding a prefix of ``tokens``; the RAM copy
        of one of them (typically the session's previous state) is taken now as
        the new snapshot's buffer, so parking after a session switch is a plain
        copy, with no fresh memory to fault in and no old buffer to unmap (each
        ~65 ms and ~10 ms for 160 MB, measured; without this a round-robin over
        sessions paid them on every turn). If the disk writer is reading that
        copy, the entry is dropped now, so the writer abandons it within a
        chunk, and its buffer is waited for: a fresh one cost 380-440 ms in
        scenario 9's rounds on a VM (``BufferPool.prepare``).

        A new session has no such entry. If its snapshot would push the RAM
        tier over budget, the least recently used entries are evicted first, so
        the buffer of one of them is reused instead of faulting in fresh memory
        that the eviction right after would balance by unmapping another (the
        ~255 ms wait of the turn after scenario 9's last prime).
        """
        pool = self.ram.pool
        pool.settle()
        with self._lock:
            from_writer = self._recycle_superseded(tokens, size, trim_floor)
        buffer = pool.await_handback(size, HANDBACK_WAIT_S) if from_writer else None
        if buffer is not None:
            return buffer
        with self._lock:
            buffer = pool.reuse(size)
            if buffer is None:
                # What ``add`` frees of the entries this one supersedes needs no room.
                freed = self.ram.freed_by_dropping(
                    [self.entries[key] for key in self._superseded(tokens, trim_floor)]
                )
                self._evict_ram(reserve=max(0, pool.capacity_for(size) - freed))
                # Taken under the lock: the writer's eviction could drop it otherwise.
                buffer = pool.reuse(size)
        # A fresh buffer is faulted in outside the lock (tens of ms for 160 MB).
        return buffer if buffer is not None else pool.allocate(size)

    def _recycle_superseded(self, tokens: tuple[int, ...], size: int, trim_floor: int) -> bool:
        """Forget an entry ``tokens`` supersedes whose buffer fits ``size``: its buffer
        becomes the pool's spare, for ``pool.reuse`` to hand out; True if the disk
        writer holds it, so it comes back through ``pool.await_handback``."""
        for key in self._superseded(tokens, trim_floor):
            entry = self.entries[key]
            if self._recyclable(entry, size) and not entry.pins:
                from_writer = entry.writing
                if from_writer and entry.blob is not None:
                    self.ram.pool.expect(entry.blob)
                self._forget(key)  # its buffer goes to the pool (now, or from the writer)
                self.disk.drop(entry)
                return from_writer
        return False

    @staticmethod
    def _recyclable(entry: CacheEntry, size: int) -> bool:
        capacity = pooled_capacity(entry.blob)
        return capacity is not None and capacity >= size

    def prepare_buffer(self, tokens: tuple[int, ...], *, trim_floor: int = 0) -> bool:
        """Start faulting in the buffer a snapshot of about ``tokens`` will need, if
        parking it would otherwise map fresh memory (``BufferPool.prepare``): no
        spare or superseded entry's buffer fits. Sized from the last snapshot's
        bytes per token; the buffer's headroom covers the reply.

        Past the RAM budget, the least recently used entries the park would
        evict for its buffer are evicted now (to disk, where they already are),
        so the park reuses one of their buffers or this one, not fresh memory
        beyond the budget (scenario 9 after scenarios 1-8: the last primes and
        the first round waited 225-338 ms for that)."""
        with self._lock:
            if self._bytes_per_token is None:
                return False
            size = int(self._bytes_per_token * len(tokens))
            pool = self.ram.pool
            superseded = [self.entries[key] for key in self._superseded(tokens, trim_floor)]
            if any(self._recyclable(entry, size) for entry in superseded):
                return False
            # What the park's ``add`` frees of the entries it supersedes needs no room.
            reserve = max(0, pool.capacity_for(size) - self.ram.freed_by_dropping(superseded))
            self._evict_ram(reserve=reserve)
            if self.ram.used_bytes() + reserve > self.ram.budget:
                return False  # unwritten entries hold the room: the park maps its own
            return pool.prepare(size)

    def add(
        self, tokens: tuple[int, ...], blob: kv_files.Blob, label: str, *, trim_floor: int = 0
    ) -> CacheEntry:
        """Park a snapshot in RAM and queue it for disk. Entries that hold a
        prefix of it are dropped if it can be cut back to serve them."""
        key = kv_files.chain_key(self.dir.name, tokens)
        entry = CacheEntry(
            key,
            tokens,
            held_bytes(blob),
            label,
            used_at=time.time(),
            unwritten=True,
            trim_floor=trim_floor,
        )
        with self._lock:
            if tokens:
                self._bytes_per_token = memoryview(blob).nbytes / len(tokens)
            superseded = [k for k in self._superseded(tokens, trim_floor) if k != key]
            self._forget(key)
            self.entries[key] = entry
            self.index.insert(key, tokens)
            self.stored += 1
            self.ram.store(entry, blob)
            self.disk.store(entry, blob)
            for old in superseded:
                dropped = self.entries.get(old)
                if dropped is not None:
                    self._forget(old)
                    self.disk.drop(dropped)
            self._evict_ram()
        return entry

    def _forget(self, key: str) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.index.remove(key)
            self.ram.drop(entry)

    def _evict_ram(self, reserve: int = 0) -> None:
        self.evicted(self.ram.evict(reserve))

    # -- what the tiers call back (base.TierOwner) -------------------------------
    def written(self, entry: CacheEntry, blob: kv_files.Blob) -> None:
        self.ram.writer_done(entry, blob)
        self._evict_ram()  # it may have waited over budget for this write

    def evicted(self, entries: list[CacheEntry]) -> None:
        with self._lock:
            for entry in entries:
                homeless = not (entry.usable or entry.writing)
                if homeless and self.entries.get(entry.key) is entry:
                    self._forget(entry.key)

    # -- management --------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until queued writes are on disk; False on timeout."""
        return self.disk.flush(timeout)

    def clear(self) -> dict[str, Any]:
        before = self.stats()
        with self._lock:
            for key in list(self.entries):
                self._forget(key)
            self.disk.clear()
        self.flush()
        return {
            "cleared": before["entries"],
            "ramBytes": before["ramBytes"],
            "diskBytes": before["diskBytes"],
        }

    def close(self, timeout: float = 30.0) -> None:
        self.disk.close(timeout)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            entries = list(self.entries.values())
            stored = self.stored
        ram, disk = self.ram.stats(), self.disk.stats()
        return {
            "dir": str(self.dir),
            "entries": len(entries),
            "ramEntries": ram["ramEntries"],
            "diskEntries": sum(1 for e in entries if self.disk.holds(e)),
            "ramBytes": ram["ramBytes"],
            "ramBudget": ram["ramBudget"],
            "diskBytes": disk["diskBytes"],
            "diskBudget": disk["diskBudget"],
            "tokens": sum(len(e.tokens) for e in entries),
            "pendingWrites": disk["pendingWrites"],
            "spareBufferBytes": ram["spareBufferBytes"],
            "buffersReused": ram["buffersReused"],
            "buffersAllocated": ram["buffersAllocated"],
            "buffersPrepared": ram["buffersPrepared"],
            "stored": stored,
            "evictedRam": ram["evictedRam"],
            "evictedDisk": disk["evictedDisk"],
            "discarded": disk["discarded"],
            "problems": disk["problems"],
        }
