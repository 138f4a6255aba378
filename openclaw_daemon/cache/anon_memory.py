"""Anonymous memory for snapshot buffers, faulted in and given back in steps.

Two costs hide in a 160 MB snapshot buffer, and neither shows in the thread
that pays for it:

- ``mmap.mmap(-1, n, flags=MAP_POPULATE)`` faults every page in inside the
  ``mmap`` call, with the GIL held: ~65-90 ms on the 2-core CI machine in
  which no other daemon thread runs.
- Populating and unmapping hold the process's mmap lock; starting a thread
  (each new connection's handler) needs it, so a connection arriving then
  waited out the whole operation (measured: 55-75 ms per 160 MB, 0.3 ms
  otherwise).

So pages are faulted in with ``madvise(MADV_POPULATE_WRITE)`` (Linux 5.14+)
through ctypes, which releases the GIL, 8 MiB at a time so the lock is free
between steps; and a buffer gives its pages back with ``MADV_DONTNEED`` in
the same steps before it is unmapped. Where madvise is missing (older kernels,
macOS) pages fault in on first touch, inside llama.cpp's copy, also off the GIL.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import sys
from collections.abc import Callable

_MADV_DONTNEED = 4
_MADV_POPULATE_WRITE = 23  # linux/mman.h; not in Python's mmap module before 3.13
STEP_BYTES = 8 << 20


def _load_madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise  # type: ignore[no-any-return]


_madvise = _load_madvise()


def _address(mapping: mmap.mmap) -> int:
    anchor = ctypes.c_char.from_buffer(mapping)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor  # the mapping stays closable: no export outlives this call


def _advise_in_steps(mapping: mmap.mmap, advice: int) -> bool:
    """Apply ``advice`` over the whole mapping, one step at a time; False if refused."""
    if _madvise is None or len(mapping) == 0:
        return False
    base, size = _address(mapping), len(mapping)
    for offset in range(0, size, STEP_BYTES):
        if _madvise(base + offset, min(STEP_BYTES, size - offset), advice) != 0:
            return False  # e.g. EINVAL before Linux 5.14: first touch faults instead
    return True


class AnonMap(mmap.mmap):
    """A private anonymous mapping that frees its pages in steps when dropped."""

    def release(self) -> None:
        if not self.closed:
            _advise_in_steps(self, _MADV_DONTNEED)
            self.close()

    def __del__(self) -> None:
        # Still exported somewhere (BufferError): the plain unmap happens later.
        with contextlib.suppress(BufferError, ValueError):
            self.release()


def populated_map(size: int) -> AnonMap:
    """A private anonymous mapping of ``size`` bytes, its pages already present
    where the kernel can do that off the GIL."""
    mapping = AnonMap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    _advise_in_steps(mapping, _MADV_POPULATE_WRITE)
    return mapping
