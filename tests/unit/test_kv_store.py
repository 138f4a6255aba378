"""KV blob files and the L2/L3 store, without a model: integrity, budgets, supersession."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from openclaw_daemon.cache import disk_tier, kv_files
from openclaw_daemon.cache.buffers import BufferPool
from openclaw_daemon.cache.kv_store import KVStore
from openclaw_daemon.model import memory_budget
from openclaw_daemon.wire.errors import CacheCorruptError, ResourceError

FP = {"modelPath": "/m.gguf", "modelBytes": 1, "modelMtimeNs": 1, "nCtx": 8192, "kvType": "f16"}


def blob(size: int, fill: int = 7) -> bytes:
    return bytes([fill]) * size


class Turn:
    """A turn the disk writer holds its writes for while it runs."""

    running = True

    def quiet_for(self) -> float:
        return 0.0 if self.running else 10.0


def store_beside(turn: Turn, tmp_path: Path) -> KVStore:
    store = KVStore(tmp_path, FP, ram_budget=1 << 30, disk_budget=1 << 30, quiet_for=turn.quiet_for)
    store.load_disk_index()
    return store


def test_blob_file_round_trip_and_every_kind_of_damage(tmp_path: Path) -> None:
    path = tmp_path / "a.kvc"
    kv_files.write_blob(path, FP, (1, 2, 3), blob(1000))
    assert kv_files.read_blob(path, FP) == ((1, 2, 3), blob(1000))
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    other = {**FP, "nCtx": 4096}
    with pytest.raises(CacheCorruptError, match="another model, context size or KV type"):
        kv_files.read_blob(path, other)

    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(CacheCorruptError, match="checksum"):
        kv_files.read_blob(path, FP)

    path.write_bytes(data[:-10])
    with pytest.raises(CacheCorruptError, match="wrong size"):
        kv_files.read_header(path, FP)

    path.write_bytes(b"junk" + data[4:])
    with pytest.raises(CacheCorruptError, match="bad header"):
        kv_files.read_header(path, FP)


def test_chain_key_depends_on_every_token_and_the_fingerprint() -> None:
    tokens = list(range(1000))
    key = kv_files.chain_key("fp", tokens)
    assert key == kv_files.chain_key("fp", list(tokens))
    assert key != kv_files.chain_key("fp", tokens[:-1])
    assert key != kv_files.chain_key("fp", [*tokens[:500], 0, *tokens[501:]])
    assert key != kv_files.chain_key("other", tokens)


def test_longer_entry_supersedes_its_prefix_in_ram_and_on_disk(tmp_path: Path) -> None:
    store = KVStore(tmp_path, FP, ram_budget=10_000, disk_budget=1 << 20)
    store.load_disk_index()
    store.add((1, 2, 3), blob(100), "s")
    store.add((1, 2, 3, 4, 5), blob(200), "s")
    assert store.flush()
    assert len(store.entries) == 1
    assert len(list(store.dir.glob("*.kvc"))) == 1
    match, entry = store.best([1, 2, 3, 9])
    assert match.length == 3 and entry is not None and entry.tokens == (1, 2, 3, 4, 5)
    store.close()


def test_ram_budget_evicts_lru_to_disk_and_restart_reindexes(tmp_path: Path) -> None:
    store = KVStore(tmp_path, FP, ram_budget=250, disk_budget=1 << 20)
    store.load_disk_index()
    store.add((1, 1), blob(200, 1), "a")
    store.add((2, 2), blob(200, 2), "b")  # pushes (1, 1) out of RAM
    assert store.flush()
    stats = store.stats()
    assert (stats["ramEntries"], stats["diskEntries"], stats["evictedRam"]) == (1, 2, 1)
    _, entry = store.best([1, 1, 5])
    assert entry is not None and entry.tier == "L3"
    assert store.fetch(entry) == blob(200, 1)
    store.close()

    again = KVStore(tmp_path, FP, ram_budget=250, disk_budget=1 << 20)
    again.load_disk_index()
    assert sorted(e.tokens for e in again.entries.values()) == [(1, 1), (2, 2)]
    again.close()


def test_disk_budget_deletes_least_recently_used_files(tmp_path: Path) -> None:
    store = KVStore(tmp_path, FP, ram_budget=0, disk_budget=900)  # files are ~370 bytes
    store.load_disk_index()
    for n in range(3):
        store.add((n, n), blob(200, n), str(n))
        assert store.flush()
        newest = max(store.dir.glob("*.kvc"), key=lambda p: p.stat().st_mtime_ns)
        os.utime(newest, (1000 + n, 1000 + n))
    files = list(store.dir.glob("*.kvc"))
    assert len(files) == 2
    assert store.stats()["evictedDisk"] == 1
    assert store.best([0, 0])[1] is None  # the oldest is gone from every tier
    store.close()


def test_corrupt_file_is_discarded_at_fetch_and_counted(tmp_path: Path) -> None:
    store = KVStore(tmp_path, FP, ram_budget=0, disk_budget=1 << 20)
    store.load_disk_index()
    store.add((4, 5, 6), blob(300), "s")
    assert store.flush()
    path = next(store.dir.glob("*.kvc"))
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    _, entry = store.best([4, 5, 6])
    assert entry is not None
    with pytest.raises(CacheCorruptError, match="checksum"):
        store.fetch(entry)
    assert not path.exists()
    assert store.best([4, 5, 6])[1] is None
    assert store.stats()["discarded"] == 1
    store.close()


def test_truncated_file_is_discarded_when_the_daemon_starts(tmp_path: Path) -> None:
    store = KVStore(tmp_path, FP, ram_budget=1000, disk_budget=1 << 20)
    store.load_disk_index()
    store.add((7, 8), blob(300), "s")
    store.close()
    path = next(store.dir.glob("*.kvc"))
    path.write_bytes(path.read_bytes()[:-100])
    again = KVStore(tmp_path, FP, ram_budget=1000, disk_budget=1 << 20)
    again.load_disk_index()
    assert len(again.entries) == 0 and not path.exists()
    assert again.stats()["discarded"] == 1
    assert "wrong size" in again.stats()["problems"][0]
    again.close()


def test_memory_prediction_and_refusal() -> None:
    metadata = {
        "general.architecture": "llama",
        "llama.block_count": 30,
        "llama.embedding_length": 576,
        "llama.attention.head_count": 9,
        "llama.attention.head_count_kv": 3,
        "llama.vocab_size": 49152,
    }
    assert memory_budget.kv_bytes_per_token(metadata) == 23040  # SmolLM2-135M, f16
    small = memory_budget.predict(metadata, model_bytes=10, n_ctx=8192, ram_cache_budget=0)
    assert small["kvCache"] == 8192 * 23040
    assert small["peak"] == sum(v for k, v in small.items() if k not in ("peak", "host", "device"))
    assert (small["host"], small["device"]) == (small["peak"], 0)  # nothing offloaded
    memory_budget.check_fits(small, small["peak"], n_ctx=8192)
    with pytest.raises(ResourceError, match="needs about .* GiB"):
        memory_budget.check_fits(small, small["peak"] - 1, n_ctx=8192)


def test_superseded_snapshot_buffers_are_reused(tmp_path: Path) -> None:
    store = KVStore(tmp_path, FP, ram_budget=1 << 30, disk_budget=1 << 30)
    store.load_disk_index()
    first = store.ram.pool.take(1000)
    first[:] = blob(1000, 1)
    store.add((1, 2), first, "s")
    second = store.ram.pool.take(1100)  # the session grew: its next snapshot
    second[:] = blob(1100, 2)
    store.add((1, 2, 3), second, "s")  # supersedes the first
    assert store.flush()
    third = store.ram.pool.take(1200)
    assert third.obj is first.obj  # recycled: headroom covered the growth
    assert (store.ram.pool.allocated, store.ram.pool.reused) == (2, 1)
    assert store.ram.pool.spare_bytes == 0
    # The entry still holding the second buffer is untouched.
    _, entry = store.best([1, 2, 3])
    assert entry is not None and bytes(store.fetch(entry)) == blob(1100, 2)
    assert kv_files.read_blob(next(store.dir.glob("*.kvc")), FP)[1] == blob(1100, 2)
    store.close()


def test_a_snapshot_reuses_the_buffer_of_the_entry_it_supersedes(tmp_path: Path) -> None:
    store = KVStore(tmp_path, FP, ram_budget=1 << 30, disk_budget=1 << 30)
    store.load_disk_index()
    first = store.ram.pool.take(1000)
    first[:] = blob(1000, 1)
    store.add((1, 2), first, "s")
    other = store.ram.pool.take(1000)
    other[:] = blob(1000, 3)
    store.add((7, 8), other, "t")
    assert store.flush()
    # The session grew: its next snapshot goes into its previous state's buffer...
    with store.pinned(store.best([7, 8])[1]):  # ...never into one being restored
        assert store.buffer_for((7, 8, 9), 1000).obj is not other.obj
    second = store.buffer_for((1, 2, 3), 1100)
    assert second.obj is first.obj and store.ram.pool.allocated == 3
    assert store.best([1, 2])[1] is None  # that entry is gone from every tier
    second[:] = blob(1100, 2)
    store.add((1, 2, 3), second, "s")
    assert store.flush()
    _, entry = store.best([1, 2, 3])
    assert entry is not None and bytes(store.fetch(entry)) == blob(1100, 2)
    assert len(list(store.dir.glob("*.kvc"))) == 2  # (1, 2, 3) and (7, 8)
    store.close()


def park(store: KVStore, tokens: tuple[int, ...], fill: int, size: int = 1000) -> memoryview:
    """A snapshot parked as the daemon parks one: in a pooled buffer."""
    buffer = store.ram.pool.take(size)
    buffer[:] = blob(size, fill)
    store.add(tokens, buffer, "s")
    return buffer


def test_a_new_session_over_budget_reuses_the_lru_entrys_buffer(tmp_path: Path) -> None:
    capacity = BufferPool.capacity_for(1000)
    store = KVStore(tmp_path, FP, ram_budget=2 * capacity, disk_budget=1 << 30)
    store.load_disk_index()
    oldest = park(store, (1, 1), 1)
    park(store, (2, 2), 2)
    assert store.flush()  # both on disk: either may leave RAM
    # A third session supersedes nothing; a fresh buffer would exceed the budget.
    third = store.buffer_for((3, 3), 1000)
    assert third.obj is oldest.obj and store.ram.pool.allocated == 2
    _, evicted = store.best([1, 1])
    assert evicted is not None and evicted.tier == "L3"
    assert bytes(store.fetch(evicted)) == blob(1000, 1)  # from its file, intact
    _, kept = store.best([2, 2])
    assert kept is not None and kept.tier == "L2" and bytes(kept.blob or b"") == blob(1000, 2)
    third[:] = blob(1000, 3)
    store.add((3, 3), third, "c")
    assert store.stats()["evictedRam"] == 1  # nothing more to evict after the add
    store.close()


def test_a_fitting_spare_is_reused_and_costs_no_parked_session(tmp_path: Path) -> None:
    capacity = BufferPool.capacity_for(1000)
    store = KVStore(tmp_path, FP, ram_budget=2 * capacity, disk_budget=1 << 30)
    store.load_disk_index()
    park(store, (1, 1), 1)
    store.ram.pool.give(store.ram.pool.take(1000))  # a spare, as an eviction leaves one
    assert store.flush() and store.ram.pool.spare_bytes == capacity
    spare = store.ram.pool._spares[0]
    assert store.buffer_for((3, 3), 1000).obj is spare
    _, entry = store.best([1, 1])
    assert entry is not None and entry.tier == "L2"  # not pushed out for room it had
    assert store.stats()["evictedRam"] == 0
    store.close()


def test_a_session_outgrowing_its_buffer_does_not_push_out_another(tmp_path: Path) -> None:
    small = BufferPool.capacity_for(1000)
    grown_size = small + 1  # past the old buffer's headroom: a fresh one is needed
    grown = BufferPool.capacity_for(grown_size)
    store = KVStore(tmp_path, FP, ram_budget=small + grown, disk_budget=1 << 30)
    store.load_disk_index()
    park(store, (1, 1), 1)
    park(store, (2, 2), 2)
    assert store.flush()
    # Session (1, 1) grew: its old entry is dropped by the add, so only the
    # difference needs room, and session (2, 2) fits beside the new snapshot.
    bigger = store.buffer_for((1, 1, 5), grown_size)
    bigger[:] = blob(grown_size, 3)
    store.add((1, 1, 5), bigger, "s")
    _, other = store.best([2, 2])
    assert other is not None and other.tier == "L2"
    assert store.stats()["evictedRam"] == 0
    store.close()


def test_an_unwritten_lru_entry_keeps_its_buffer(tmp_path: Path) -> None:
    capacity = BufferPool.capacity_for(1000)
    store = KVStore(
        tmp_path, FP, ram_budget=capacity, disk_budget=1 << 30, quiet_for=lambda: 0.0
    )  # turns never pause: nothing reaches the disk
    store.load_disk_index()
    only = park(store, (1, 1), 1)
    fresh = store.buffer_for((2, 2), 1000)
    assert fresh.obj is not only.obj  # its only copy is not taken away
    _, entry = store.best([1, 1])
    assert entry is not None and entry.tier == "L2" and bytes(store.fetch(entry)) == blob(1000, 1)
    store.close()


def test_disk_writes_hold_while_turns_run(tmp_path: Path) -> None:
    turn = Turn()
    store = store_beside(turn, tmp_path)
    store.add((1, 2, 3), blob(3 * kv_files.CHUNK_BYTES), "s")
    assert not store.flush(timeout=0.3)  # held: the worker is busy
    assert list(store.dir.glob("*.kvc")) == []
    turn.running = False
    assert store.flush()
    assert kv_files.read_blob(next(store.dir.glob("*.kvc")), FP)[1] == blob(
        3 * kv_files.CHUNK_BYTES
    )
    store.close()


def test_a_write_past_its_deadline_goes_on_between_turns_never_during_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disk_tier, "_MAX_WRITE_DELAY_S", 0.0)  # every write is overdue
    worker = {"busy": True}
    store = KVStore(
        tmp_path,
        FP,
        ram_budget=1 << 30,
        disk_budget=1 << 30,
        quiet_for=lambda: 0.0,  # turns never pause for a second
        worker_busy=lambda: worker["busy"],
    )
    store.load_disk_index()
    store.add((1, 2, 3), blob(2 * kv_files.CHUNK_BYTES), "s")
    assert not store.flush(timeout=0.3)  # overdue, but the worker is running something
    assert list(store.dir.glob("*.kvc")) == []
    worker["busy"] = False  # a gap between two turns
    assert store.flush()
    assert kv_files.read_blob(next(store.dir.glob("*.kvc")), FP)[1] == blob(
        2 * kv_files.CHUNK_BYTES
    )
    store.close()


def test_an_entry_being_restored_is_not_evicted_by_parking(tmp_path: Path) -> None:
    store = KVStore(tmp_path, FP, ram_budget=300, disk_budget=1 << 20, quiet_for=lambda: 0.0)
    store.load_disk_index()
    old = store.add((1, 1), blob(200, 1), "a")
    store.disk._closing = True  # let the held writes through
    assert store.flush()
    store.disk._closing = False
    with store.pinned(old):
        store.add((2, 2), blob(200, 2), "b")  # the park that precedes a restore
        store.disk._closing = True
        assert store.flush()
        assert old.blob is not None  # over budget, but pinned: still in RAM
        assert bytes(store.fetch(old)) == blob(200, 1)
    store.close()


def test_a_buffer_dropped_mid_write_goes_back_to_the_pool_once(tmp_path: Path) -> None:
    turn = Turn()
    store = store_beside(turn, tmp_path)
    given: list[int] = []
    real_give = store.ram.pool.give
    store.ram.pool.give = lambda b: (given.append(id(b.obj)), real_give(b))  # type: ignore[method-assign]
    first = store.ram.pool.take(2 * kv_files.CHUNK_BYTES)
    store.add((1, 2), first, "s")
    assert not store.flush(timeout=0.2)  # the writer holds it, paused by the turn
    store.add((1, 2, 3), store.ram.pool.take(10), "s")  # supersedes it mid-write
    turn.running = False
    assert store.flush()
    assert given.count(id(first.obj)) == 1
    assert [p.name for p in store.dir.glob("*")] == [
        f"{kv_files.chain_key(store.dir.name, (1, 2, 3))}.kvc"
    ]
    store.close()


def test_a_failed_write_is_not_offered_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kv_files, "write_blob", full_disk)
    store = KVStore(tmp_path, FP, ram_budget=1 << 20, disk_budget=1 << 20)
    store.load_disk_index()
    entry = store.add((5, 6), blob(100), "s")
    assert store.flush()
    assert not entry.on_disk and entry.blob is not None  # still served from RAM
    assert list(store.dir.iterdir()) == []
    store.close()


def test_clear_during_a_held_write_does_not_wait_for_the_turn(tmp_path: Path) -> None:
    store = KVStore(tmp_path, FP, ram_budget=1 << 30, disk_budget=1 << 30, quiet_for=lambda: 0.0)
    store.load_disk_index()
    store.add((1,), blob(3 * kv_files.CHUNK_BYTES), "s")
    time.sleep(0.1)  # the writer has started and is holding for the "turn"
    started = time.monotonic()
    cleared = store.clear()
    assert time.monotonic() - started < 2.0
    assert cleared["cleared"] == 1
    assert list(store.dir.iterdir()) == []
    store.close()


@pytest.mark.parametrize("bad", [-1, 1e400, "12", None])
def test_header_values_out_of_range_are_corruption_not_crashes(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "x.kvc"
    kv_files.write_blob(path, FP, (1, 2), blob(10))
    data = path.read_bytes().replace(b'"nTokens": 2', b'"nTokens": ' + json.dumps(bad).encode())
    path.write_bytes(data)
    with pytest.raises(CacheCorruptError):
        kv_files.read_header(path, FP)


def test_a_park_takes_back_the_buffer_the_writer_is_reading(tmp_path: Path) -> None:
    turn = Turn()
    store = store_beside(turn, tmp_path)
    first = park(store, (1, 2), 1, size=2 * kv_files.CHUNK_BYTES)
    assert not store.flush(timeout=0.2)  # the writer holds it, paused by the turn
    assert store.best([1, 2])[1].writing  # type: ignore[union-attr]
    # The session's next park supersedes it: the writer abandons the old state
    # and gives the buffer back to the park, which maps nothing fresh.
    started = time.monotonic()
    second = store.buffer_for((1, 2, 3), 2 * kv_files.CHUNK_BYTES + 10)
    assert time.monotonic() - started < 1.0
    assert second.obj is first.obj
    assert (store.ram.pool.allocated, store.ram.pool.spare_bytes) == (1, 0)
    second[:] = blob(2 * kv_files.CHUNK_BYTES + 10, 2)
    store.add((1, 2, 3), second, "s")
    turn.running = False
    assert store.flush()
    files = list(store.dir.glob("*.kvc"))  # only the new state reached the disk
    assert [p.name for p in files] == [f"{kv_files.chain_key(store.dir.name, (1, 2, 3))}.kvc"]
    assert kv_files.read_blob(files[0], FP)[1] == blob(2 * kv_files.CHUNK_BYTES + 10, 2)
    store.close()


def test_a_buffer_prepared_beside_a_long_prefill_serves_its_park(tmp_path: Path) -> None:
    capacity = BufferPool.capacity_for(1000)
    store = KVStore(tmp_path, FP, ram_budget=3 * capacity, disk_budget=1 << 30)
    store.load_disk_index()
    assert not store.prepare_buffer((9,) * 10)  # no snapshot yet to size it from
    park(store, (1,) * 10, 1)  # 100 bytes a token
    assert not store.prepare_buffer((1,) * 10 + (2,))  # its own buffer will be reused
    assert store.prepare_buffer((3,) * 10)  # a new session: nothing to reuse
    assert not store.prepare_buffer((4,) * 10)  # one on its way is enough
    store.ram.pool.settle()
    assert store.stats()["buffersPrepared"] == 1 and store.ram.pool.spare_bytes == capacity
    spare = store.ram.pool._spares[0]
    allocated = store.ram.pool.allocated
    assert store.buffer_for((3,) * 10, 1000).obj is spare  # the park maps nothing fresh
    assert store.ram.pool.allocated == allocated
    store.close()


def test_past_the_ram_budget_the_lru_entry_is_evicted_ahead_for_the_park(tmp_path: Path) -> None:
    capacity = BufferPool.capacity_for(1000)
    store = KVStore(tmp_path, FP, ram_budget=2 * capacity, disk_budget=1 << 30)
    store.load_disk_index()
    oldest = park(store, (1,) * 10, 1)
    park(store, (2,) * 10, 2)
    assert store.flush()  # both on disk: either may leave RAM
    # A new session's long prefill starts: the park will need a buffer past the
    # budget, so the least recently used entry leaves RAM now and its buffer waits.
    assert not store.prepare_buffer((3,) * 10)  # nothing fresh to fault in
    _, evicted = store.best([1] * 10)
    assert evicted is not None and evicted.tier == "L3"
    assert bytes(store.fetch(evicted)) == blob(1000, 1)
    allocated = store.ram.pool.allocated
    assert store.buffer_for((3,) * 10, 1000).obj is oldest.obj
    assert store.ram.pool.allocated == allocated
    store.close()


def test_unwritten_entries_holding_the_budget_get_no_prepared_buffer(tmp_path: Path) -> None:
    capacity = BufferPool.capacity_for(1000)
    store = KVStore(
        tmp_path, FP, ram_budget=2 * capacity, disk_budget=1 << 30, quiet_for=lambda: 0.0
    )  # turns never pause: nothing reaches the disk, nothing may leave RAM
    store.load_disk_index()
    park(store, (1,) * 10, 1)
    park(store, (2,) * 10, 2)
    assert not store.prepare_buffer((3,) * 10)
    assert store.stats()["evictedRam"] == 0 and store.stats()["buffersPrepared"] == 0
    store.close()
