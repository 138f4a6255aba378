"""The L2 (RAM) and L3 (disk) tiers through their one interface, ``base.KVTier``, without a model.

The same tests run against both tiers: store and look up, evict least
recently used under the byte budget, a pin protects from eviction. Then what
only one tier does: the disk tier discards a damaged file, the RAM tier
keeps an unwritten copy and hands each buffer back to the pool once. Last, a
file in the layout the daemon has always written still loads.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from openclaw_daemon.cache import kv_files
from openclaw_daemon.cache.base import CacheEntry, KVTier
from openclaw_daemon.cache.buffers import BufferPool
from openclaw_daemon.cache.disk_tier import DiskTier
from openclaw_daemon.cache.kv_store import KVStore
from openclaw_daemon.cache.ram_tier import RamTier
from openclaw_daemon.wire.errors import CacheCorruptError

FP = {"modelPath": "/m.gguf", "modelBytes": 1, "modelMtimeNs": 1, "nCtx": 8192, "kvType": "f16"}


@dataclass
class Owner:
    """What the store is to a tier (``base.TierOwner``): the current entries."""

    entries: dict[str, CacheEntry] = field(default_factory=dict)
    written_blobs: list[kv_files.Blob] = field(default_factory=list)
    evicted_entries: list[CacheEntry] = field(default_factory=list)

    def entry_for(self, key: str) -> CacheEntry | None:
        return self.entries.get(key)

    def written(self, entry: CacheEntry, blob: kv_files.Blob) -> None:
        self.written_blobs.append(blob)

    def evicted(self, entries: list[CacheEntry]) -> None:
        self.evicted_entries.extend(entries)


@dataclass
class Rig:
    """One tier, and how a test parks a snapshot in it as the store would."""

    tier: KVTier
    owner: Owner

    def park(self, tokens: tuple[int, ...], fill: int, used_at: float) -> CacheEntry:
        blob = bytes([fill]) * 200
        key = kv_files.chain_key("fp", tokens)
        entry = CacheEntry(key, tokens, len(blob), "s", used_at=used_at)
        self.owner.entries[key] = entry
        if isinstance(self.tier, DiskTier):
            entry.blob = blob  # the disk tier writes the entry's RAM copy...
            self.tier.store(entry, blob)
            assert self.tier.flush()
            entry.blob = None  # ...and RAM let go of it: loads come from the file
            os.utime(self.tier.path(key), (used_at, used_at))
        else:
            self.tier.store(entry, blob)
        return entry

    def size(self, entry: CacheEntry) -> int:
        """What one entry costs the tier's budget."""
        if isinstance(self.tier, DiskTier):
            return self.tier.path(entry.key).stat().st_size
        return entry.blob_bytes


@pytest.fixture(params=["L2", "L3"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    lock, owner = threading.RLock(), Owner()
    if request.param == "L2":
        yield Rig(RamTier(1 << 30, lock), owner)
        return
    tier = DiskTier(tmp_path, FP, budget=1 << 30, lock=lock, owner=owner)
    yield Rig(tier, owner)
    tier.close()


def test_a_stored_entry_is_found_and_loads_its_bytes(rig: Rig) -> None:
    entry = rig.park((1, 2, 3), 7, used_at=1000)
    assert rig.tier.holds(entry)
    assert bytes(rig.tier.load(entry)) == bytes([7]) * 200
    rig.tier.drop(entry)
    if isinstance(rig.tier, DiskTier):
        assert rig.tier.flush() and not rig.tier.path(entry.key).exists()
    else:
        assert not rig.tier.holds(entry)


def test_evict_drops_the_least_recently_used_until_the_budget_holds(rig: Rig) -> None:
    old = rig.park((1,), 1, used_at=1000)
    mid = rig.park((2,), 2, used_at=2000)
    new = rig.park((3,), 3, used_at=3000)
    size = rig.size(old)
    assert rig.tier.used_bytes() == 3 * size
    rig.tier.budget = 2 * size
    assert rig.tier.evict() == [old]
    assert not rig.tier.holds(old) and rig.tier.holds(mid) and rig.tier.holds(new)
    assert rig.tier.used_bytes() == 2 * size
    assert rig.tier.evict(reserve=size) == [mid]  # room for one more
    assert rig.tier.evict() == []  # under budget: nothing more goes


def test_a_pinned_entry_is_not_evicted_until_unpinned(rig: Rig) -> None:
    old = rig.park((1,), 1, used_at=1000)
    mid = rig.park((2,), 2, used_at=2000)
    rig.tier.budget = rig.size(old)
    with rig.tier.pinned(old):
        assert old.pins == 1
        assert rig.tier.evict() == [mid]  # the next in LRU order goes instead
        assert rig.tier.holds(old) and bytes(rig.tier.load(old)) == bytes([1]) * 200
    assert old.pins == 0
    rig.tier.budget = 0
    assert rig.tier.evict() == [old]


def test_the_disk_tier_discards_a_damaged_file_at_load(tmp_path: Path) -> None:
    owner = Owner()
    tier = DiskTier(tmp_path, FP, budget=1 << 30, lock=threading.RLock(), owner=owner)
    entry = Rig(tier, owner).park((4, 5, 6), 9, used_at=1000)
    path = tier.path(entry.key)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CacheCorruptError, match="checksum"):
        tier.load(entry)
    assert not path.exists()
    stats = tier.stats()
    assert stats["discarded"] == 1 and "checksum" in stats["problems"][0]
    tier.close()


def test_the_disk_tier_scan_skips_damaged_files_and_keeps_good_ones(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path, FP, budget=1 << 30, lock=threading.RLock(), owner=Owner())
    tier.dir.mkdir(parents=True)
    good, bad = (1, 2), (3, 4)
    for tokens in (good, bad):
        name = kv_files.chain_key(tier.dir.name, tokens)
        kv_files.write_blob(tier.path(name), FP, tokens, b"x" * 50)
    bad_path = tier.path(kv_files.chain_key(tier.dir.name, bad))
    bad_path.write_bytes(bad_path.read_bytes()[:-7])
    (tier.dir / ".half-written.kvc.1.tmp").write_bytes(b"partial")
    found = tier.scan()
    assert [(e.tokens, e.on_disk, e.blob_bytes) for e in found] == [(good, True, 50)]
    assert not bad_path.exists() and not list(tier.dir.glob(".*.tmp"))
    assert tier.stats()["discarded"] == 1
    tier.close()


def test_the_ram_tier_keeps_an_unwritten_copy_over_budget() -> None:
    tier = RamTier(0, threading.RLock())
    entry = CacheEntry("k", (1,), 100, "s", unwritten=True)
    tier.store(entry, b"x" * 100)
    assert tier.evict() == [] and tier.holds(entry)
    entry.unwritten = False  # offered to the disk tier: now it may go
    assert tier.evict() == [entry] and not tier.holds(entry)
    assert tier.stats()["evictedRam"] == 1


def test_a_buffer_held_by_the_writer_goes_back_to_the_pool_when_the_writer_is_done() -> None:
    tier = RamTier(1 << 30, threading.RLock())
    capacity = BufferPool.capacity_for(1000)
    buffer = tier.pool.take(1000)
    entry = CacheEntry("k", (1,), capacity, "s")
    tier.store(entry, buffer)
    entry.writing = True
    tier.drop(entry)  # superseded mid-write: the writer still reads the buffer
    assert not tier.holds(entry) and tier.pool.spare_bytes == 0
    entry.writing = False
    tier.writer_done(entry, buffer)
    assert tier.pool.spare_bytes == capacity
    assert tier.pool.take(1000).obj is buffer.obj and tier.pool.reused == 1
    other = tier.pool.take(1000)  # dropped while no writer holds it: back at once
    held = CacheEntry("j", (2,), capacity, "s")
    tier.store(held, other)
    tier.drop(held)
    assert tier.pool.spare_bytes == capacity


def test_a_file_in_the_daemons_existing_layout_still_loads(tmp_path: Path) -> None:
    """Byte for byte what earlier daemons wrote: the names and format must not drift."""
    fingerprint_dir, key = "f109c5bfe0403e90", "7a173625a398ed54a27eb1f2e4ba0b0b"
    tokens, blob = (1, 2, 3), b"\x07" * 10
    header = (
        b'{"fingerprint": {"modelPath": "/m.gguf", "modelBytes": 1, "modelMtimeNs": 1, '
        b'"nCtx": 8192, "kvType": "f16"}, "nTokens": 3, "blobBytes": 10, "crc32": 1777540015}'
    )
    token_bytes = struct.pack("<3i", *tokens)
    assert zlib.crc32(blob, zlib.crc32(token_bytes)) == 1777540015
    (tmp_path / fingerprint_dir).mkdir()
    path = tmp_path / fingerprint_dir / f"{key}.kvc"
    path.write_bytes(b"OCKV" + struct.pack("<II", 1, len(header)) + header + token_bytes + blob)
    store = KVStore(tmp_path, FP, ram_budget=1 << 20, disk_budget=1 << 20)
    store.load_disk_index()
    match, entry = store.best([1, 2, 3, 4])
    assert match.length == 3 and entry is not None and entry.tier == "L3"
    assert store.fetch(entry) == blob
    store.close()


def test_the_store_forgets_an_entry_once_no_tier_holds_it(tmp_path: Path) -> None:
    store = KVStore(tmp_path, FP, ram_budget=250, disk_budget=1 << 20)
    store.load_disk_index()
    entry = store.add((1, 1), b"\1" * 200, "a")
    assert store.tier_of(entry) is store.ram and store.flush()
    store.add((2, 2), b"\2" * 200, "b")  # RAM over budget: (1, 1) is left on disk only
    assert store.flush()
    assert store.tier_of(entry) is store.disk and entry.key in store.entries
    store.disk.budget = 0
    store.evicted(store.disk.evict())  # both files go
    assert entry.key not in store.entries and store.best([1, 1])[1] is None
    assert store.best([2, 2])[1] is not None  # still in RAM though its file went
    store.close()
