"""The snapshot buffer pool: the RAM that parked L2 copies live in, recycled.

Buffers are anonymous mappings from ``anon_memory`` (faulted in off the GIL);
``held_bytes`` says what one costs the RAM budget, headroom included. No
llama_cpp: the engine copies its state into what ``take`` hands out.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import threading

from openclaw_daemon.cache import anon_memory
from openclaw_daemon.cache.kv_files import Blob

log = logging.getLogger("openclawd.cache")


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
        self._preparing: threading.Thread | None = None
        # A buffer the disk writer still reads, which a park is waiting to reuse.
        self._handed_back = threading.Condition(self._lock)
        self._awaited: mmap.mmap | None = None
        self._handed: mmap.mmap | None = None
        self.reused = 0
        self.allocated = 0
        self.prepared = 0

    def take(self, size: int) -> memoryview:
        buffer = self.reuse(size)
        return buffer if buffer is not None else self.allocate(size)

    def prepare(self, size: int) -> bool:
        """Fault in a spare for ``size`` bytes on a low-priority thread, unless one
        fits or is on its way; True if it started one.

        For a park that will need fresh memory (a new session's first snapshot),
        asked while the turn before it prefills: its page faults then fall in a
        long prefill instead of on the next turn's path. Fresh pages can cost far
        more than the tens of ms a laptop pays: in a VM whose host backs guest
        memory on first touch, 180 MB took 470-500 ms (docs/internals.md)."""
        with self._lock:
            if self._preparing is not None or any(len(m) >= size for m in self._spares):
                return False
            thread = threading.Thread(
                target=self._fill,
                args=(self.capacity_for(size),),
                name="buffer-prepare",
                daemon=True,
            )
            self._preparing = thread
        thread.start()
        return True

    def _fill(self, capacity: int) -> None:
        # Below the prefill it runs beside: it takes what the prefill leaves.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        mapping: mmap.mmap | None = None
        try:
            mapping = anon_memory.populated_map(capacity)
        except (OSError, MemoryError, ValueError) as exc:  # no room: the park maps its own
            log.warning("could not prepare a %d-byte snapshot buffer: %s", capacity, exc)
        finally:
            with self._lock:
                self._preparing = None
                if mapping is not None:
                    self.prepared += 1
                    self._keep(mapping)

    def _keep(self, mapping: mmap.mmap) -> None:
        """Add a spare, letting go of the smallest past ``max_spares`` (lock held)."""
        self._spares.append(mapping)
        if len(self._spares) > self.max_spares:
            self._spares.sort(key=len)
            self._spares.pop(0)

    def settle(self) -> None:
        """Wait for a spare being prepared: what it has left to fault in costs less
        than a fresh buffer, and two would hold the memory twice."""
        with self._lock:
            preparing = self._preparing
        if preparing is not None:
            preparing.join()

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

    def expect(self, blob: Blob) -> None:
        """A park will wait (``await_handback``) for this buffer, which the disk
        writer is reading: when the writer gives it back, it is kept for the park
        instead of joining the spares (which an eviction may drop meanwhile)."""
        if isinstance(blob, memoryview) and isinstance(blob.obj, mmap.mmap):
            with self._lock:
                self._awaited, self._handed = blob.obj, None

    def await_handback(self, size: int, timeout: float) -> memoryview | None:
        """The buffer ``expect`` named, once the writer lets go of it (None after
        ``timeout``: it then joins the spares when it comes)."""
        with self._handed_back:
            self._handed_back.wait_for(lambda: self._handed is not None, timeout)
            mapping, self._handed, self._awaited = self._handed, None, None
            if mapping is None:
                return None
            self.reused += 1
            return memoryview(mapping)[:size]

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
            if blob.obj is self._awaited:
                self._handed = blob.obj
                self._handed_back.notify_all()
            else:
                self._keep(blob.obj)

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
