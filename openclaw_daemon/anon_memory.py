"""Anonymous memory for snapshot buffers, faulted in without holding the GIL.

``mmap.mmap(-1, n, flags=MAP_POPULATE)`` faults every page in inside the
``mmap`` call, and CPython holds the GIL for it: about 65 ms for 160 MB on
the 2-core CI machine, during which no other daemon thread runs (a turn's
connection handler waiting for the CLI's trace report, a new turn's
hello). ``madvise(MADV_POPULATE_WRITE)`` (Linux 5.14+) does the same work,
and a ctypes call releases the GIL around it. Where it is missing (older
kernels, macOS) the pages fault in on first touch instead, inside llama.cpp's
copy, which also runs without the GIL.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from collections.abc import Callable

_MADV_POPULATE_WRITE = 23  # linux/mman.h; not in Python's mmap module before 3.13


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


def populated_map(size: int) -> mmap.mmap:
    """A private anonymous mapping of ``size`` bytes, its pages already present
    where the kernel can do that off the GIL."""
    mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if _madvise is not None and size > 0:
        anchor = ctypes.c_char.from_buffer(mapping)
        address = ctypes.addressof(anchor)
        del anchor  # the mapping stays closable: no export outlives this call
        # A failure (EINVAL before Linux 5.14) only means faulting on first touch.
        _madvise(address, size, _MADV_POPULATE_WRITE)
    return mapping
