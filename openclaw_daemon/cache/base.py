"""What a parked-snapshot tier is: the entry both tiers share and the interface each implements.

A tier (L2 in RAM, L3 on disk, a remote one later) is a handful of verbs,
after vLLM's ``kv_offload/abstract.py``: look an entry up (``holds``), pin it
for a load (``pinned``: protected from eviction while a restore reads it),
``load`` its state, ``store`` one, ``drop`` one, and ``evict`` under the
tier's byte budget. The pin is a reference count on the entry, as SGLang's
radix cache locks a node: every tier's eviction honours it, so a restore
read from RAM also keeps the entry's file.

One ``CacheEntry`` stands for one snapshot in whichever tiers hold it; the
store (``kv_store``) keeps the one prefix index over all of them and is the
only place that creates or forgets entries. Tiers change the fields they
own, under the store's lock, which the store hands each tier.

No llama_cpp and no threads here.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from openclaw_daemon.cache.kv_files import Blob
from openclaw_daemon.wire.messages import ParkedTier

RAM: ParkedTier = "L2"
DISK: ParkedTier = "L3"


@dataclass
class CacheEntry:
    key: str
    tokens: tuple[int, ...]
    blob_bytes: int  # RAM held while in L2 (file entries: the blob's size)
    label: str  # the session whose turn produced it, for explanations
    blob: Blob | None = None  # the L2 copy, if held in RAM (the RAM tier's)
    on_disk: bool = False  # the L3 file is complete (the disk tier's)
    used_at: float = 0.0
    # Both change only under the store's lock. While ``writing``, the writer
    # owns ``blob``'s buffer: dropping the entry's reference does not recycle
    # it, the writer does when it is done. A pinned entry is being restored
    # and is never evicted, from any tier.
    writing: bool = False
    pins: int = 0
    # Not yet offered to the writer: keeps its RAM copy even over budget, so a
    # small RAM budget never keeps an entry out of the disk tier.
    unwritten: bool = False
    # The shortest length above 0 the state can be restored to (the engine's
    # ``trim_floor`` when it was taken): it serves prompts sharing at least
    # that much of it, or all of it.
    trim_floor: int = 0

    def serves(self, length: int) -> bool:
        """Whether a restore of this entry can be cut back to ``length`` tokens."""
        return length > 0 and (length >= len(self.tokens) or length >= self.trim_floor)

    @property
    def tier(self) -> ParkedTier:
        """The tier a restore reads it from: RAM when it holds a copy."""
        return RAM if self.blob is not None else DISK

    @property
    def usable(self) -> bool:
        return self.blob is not None or self.on_disk


class KVTier(Protocol):
    """One storage tier of parked snapshots, under a byte budget."""

    name: ParkedTier
    budget: int  # bytes

    def holds(self, entry: CacheEntry) -> bool:
        """Lookup: can a restore read ``entry`` from this tier now?"""
        ...

    def pinned(self, entry: CacheEntry) -> AbstractContextManager[None]:
        """Prepare a load: ``entry`` is evicted from no tier while the block runs."""
        ...

    def load(self, entry: CacheEntry) -> Blob:
        """The entry's state; raises ``CacheCorruptError`` if it cannot be trusted
        (a damaged file is discarded first)."""
        ...

    def store(self, entry: CacheEntry, blob: Blob) -> None:
        """Take ``blob`` as ``entry``'s state in this tier (the disk tier writes
        the RAM copy in the background)."""
        ...

    def drop(self, entry: CacheEntry) -> None:
        """Let go of ``entry``'s copy here: superseded, discarded or cleared."""
        ...

    def evict(self, reserve: int = 0) -> list[CacheEntry]:
        """Drop least recently used, unpinned copies until ``reserve`` more bytes
        fit the budget; the entries this tier let go of."""
        ...

    def used_bytes(self) -> int: ...

    def stats(self) -> dict[str, Any]:
        """This tier's part of ``KVStore.stats`` (the keys ``openclaw cache`` shows)."""
        ...


class TierOwner(Protocol):
    """What a tier's background work needs of the store that composes the tiers."""

    def entry_for(self, key: str) -> CacheEntry | None:
        """The current entry for ``key``; a superseded or cleared one is not."""
        ...

    def written(self, entry: CacheEntry, blob: Blob) -> None:
        """The writer is done with ``blob`` (called under the store's lock)."""
        ...

    def evicted(self, entries: list[CacheEntry]) -> None:
        """A tier let go of these: forget the ones no tier holds any more."""
        ...


@contextlib.contextmanager
def pin(entry: CacheEntry, lock: threading.RLock) -> Iterator[None]:
    """The reference lock every tier's ``pinned`` takes (the count is the entry's)."""
    with lock:
        entry.pins += 1
    try:
        yield
    finally:
        with lock:
            entry.pins -= 1
