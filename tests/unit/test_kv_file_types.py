"""Cache-dir entries that are not what their name says, without a model.

A FIFO must not block the reader, a symlink must not be followed, and a file
renamed under another entry's key must not be indexed for tokens it lacks.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from openclaw_daemon.cache import kv_files
from openclaw_daemon.cache.kv_store import KVStore
from openclaw_daemon.wire.errors import CacheCorruptError

FP = {"modelPath": "/m.gguf", "modelBytes": 1, "modelMtimeNs": 1, "nCtx": 8192, "kvType": "f16"}


def _in_thread(fn: object) -> BaseException | None:
    """Run ``fn`` with a deadline: a blocking open must fail the test, not hang it."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()  # type: ignore[operator]
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        pytest.fail("reading the cache entry blocked")
    return outcome[0]


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "x.kvc"
    os.mkfifo(fifo)
    for read in (kv_files.read_header, kv_files.read_blob):
        error = _in_thread(lambda read=read: read(fifo, FP))
        assert isinstance(error, CacheCorruptError) and "not a regular file" in error.message


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real.kvc"
    kv_files.write_blob(real, FP, (1, 2, 3), b"\1" * 100)
    link = tmp_path / "link.kvc"
    link.symlink_to(real)
    with pytest.raises(CacheCorruptError, match="symlink"):
        kv_files.read_blob(link, FP)
    assert kv_files.read_blob(real, FP)[0] == (1, 2, 3)


def test_start_up_discards_fifos_symlinks_and_renamed_files(tmp_path: Path) -> None:
    store = KVStore(tmp_path, FP, ram_budget=1 << 20, disk_budget=1 << 30)
    store.dir.mkdir(parents=True)
    good = (5, 6, 7)
    good_name = f"{kv_files.chain_key(store.dir.name, good)}.kvc"
    kv_files.write_blob(store.dir / good_name, FP, good, b"g")
    os.mkfifo(store.dir / f"{'f' * 32}.kvc")
    outside = tmp_path / "outside.kvc"
    kv_files.write_blob(outside, FP, (9,), b"o")
    (store.dir / f"{'e' * 32}.kvc").symlink_to(outside)
    kv_files.write_blob(store.dir / f"{'d' * 32}.kvc", FP, (1, 2), b"r")  # a name for other tokens
    error = _in_thread(store.load_disk_index)
    store.close()
    assert error is None
    assert list(store.entries) == [kv_files.chain_key(store.dir.name, good)]
    assert store.stats()["discarded"] == 3
    assert sorted(p.name for p in store.dir.iterdir()) == [good_name]
    assert outside.exists()  # the symlink went, not its target
    assert any("named for other tokens" in p for p in store.stats()["problems"])
