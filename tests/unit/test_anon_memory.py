"""Snapshot buffers: populated up front, off the GIL, and usable without it too."""

from __future__ import annotations

import sys

import psutil
import pytest

from openclaw_daemon.cache import anon_memory
from openclaw_daemon.cache.buffers import BufferPool

SIZE = 64 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_POPULATE_WRITE is Linux")
def test_populated_map_is_resident_before_first_touch() -> None:
    assert anon_memory._madvise is not None
    process = psutil.Process()
    before = process.memory_info().rss
    mapping = anon_memory.populated_map(SIZE)
    grown = process.memory_info().rss - before
    try:
        # Every page present without a write from Python: the kernel faulted them in.
        assert grown >= SIZE * 0.9, f"RSS grew by {grown} bytes for a {SIZE}-byte map"
    finally:
        mapping.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_DONTNEED in steps is Linux")
def test_release_gives_the_pages_back_and_unmaps() -> None:
    process = psutil.Process()
    mapping = anon_memory.populated_map(SIZE)
    resident = process.memory_info().rss
    mapping.release()
    assert mapping.closed
    assert resident - process.memory_info().rss >= SIZE * 0.9
    mapping.release()  # twice is harmless


def test_populated_map_is_zeroed_writable_and_closable(monkeypatch: pytest.MonkeyPatch) -> None:
    for madvise in (anon_memory._madvise, None):  # with the kernel's help, and without
        monkeypatch.setattr(anon_memory, "_madvise", madvise)
        mapping = anon_memory.populated_map(1 << 20)
        assert len(mapping) == 1 << 20
        assert mapping[:16] == bytes(16) and mapping[-1] == 0
        mapping[:4] = b"oc\x00\x01"
        assert mapping[:4] == b"oc\x00\x01"
        mapping.close()  # no buffer export left behind by the populate call
        assert mapping.closed


def test_buffer_pool_hands_out_populated_buffers_and_recycles_them() -> None:
    pool = BufferPool()
    first = pool.take(1 << 20)
    assert first.nbytes == 1 << 20 and not first.readonly
    first[:3] = b"abc"
    pool.give(first)
    again = pool.take(1 << 20)
    assert again.obj is first.obj and (pool.allocated, pool.reused) == (1, 1)
