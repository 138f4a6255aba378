"""The snapshot buffer pool: the RAM that parked L2 copies live in, recycled.

Buffers are anonymous mappings from ``anon_memory`` (faulted in off the GIL);
``held_bytes`` says what one costs the RAM budget, headroom included. No
llama_cpp: the engine copies its state into what ``take`` hands out.
"""

from __future__ import annotations

import mmap
import threading

from openclaw_daemon.cache import anon_memory
from openclaw_daemon.cache.kv_files import Blob


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

    def give(self, blob: Blob) -> None:
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


def pooled_capacity(blob: Blob | None) -> int | None:
    """The capacity of a buffer the pool handed out; None for anything else
    (bytes read from a file)."""
    if isinstance(blob, memoryview) and isinstance(blob.obj, mmap.mmap):
        return len(blob.obj)
    return None


def held_bytes(blob: Blob) -> int:
    """RAM a blob holds: a pooled buffer's whole capacity, headroom included."""
    if isinstance(blob, memoryview):
        return len(blob.obj) if isinstance(blob.obj, mmap.mmap) else blob.nbytes
    return len(blob)
