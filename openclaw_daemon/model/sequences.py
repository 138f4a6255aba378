"""The live context's sequences, and which one a thread's engine calls act on.

With ``--parallel N`` the llama context holds N sequences in one unified KV
cache (``n_seq_max=N, kv_unified``: they share the n_ctx cells, so memory does
not grow with N). Each running turn owns one sequence for its whole length:
the scheduler's slot thread ``bind``s one before the turn starts, and every
engine call made on that thread (plan, prefill, decode, park, restore) acts on
it. A thread that bound nothing (the idle worker, a test) acts on sequence 0.

A turn is given the free sequence its session used last, else the one used
least recently, so a session that comes back finds its own state in L1; a
session on a new sequence still reuses the shared head another sequence holds
(the engine copies it with ``llama_memory_seq_cp``, no compute).

Standard library only: no llama_cpp here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LiveSequence:
    """One sequence of the live context: the ids its KV cells hold, in order."""

    seq_id: int
    ids: list[int] = field(default_factory=list)
    label: str = ""  # the job (session) that used it last
    busy: bool = False  # a running turn owns it
    last_used: float = 0.0
    # Where the logits of its last evaluation are: the step that made them,
    # their rows in that step's batch, and a copy when other sequences shared
    # the step (the next step overwrites the context's logits).
    step: int = -1
    batch_rows: list[int] = field(default_factory=list)
    saved: Any = None  # numpy array (rows x n_vocab) or None
    stats: Any = None  # the running decode's base.DecodeStats, counting its steps


class SequencePool:
    """N sequences, and the binding of a thread to one of them."""

    def __init__(self, n: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if n < 1:
            raise ValueError("a context holds at least one sequence")
        self.sequences = [LiveSequence(i) for i in range(n)]
        self._clock = clock
        self._local = threading.local()
        self._changed = threading.Condition()

    @property
    def parallel(self) -> int:
        return len(self.sequences)

    @property
    def current(self) -> LiveSequence:
        """The calling thread's sequence (sequence 0 if it bound none)."""
        bound: LiveSequence | None = getattr(self._local, "seq", None)
        return bound if bound is not None else self.sequences[0]

    @contextmanager
    def bind(self, label: str) -> Iterator[LiveSequence]:
        """Own a free sequence for the block (waiting for one if all are busy)."""
        with self._changed:
            while not (free := [s for s in self.sequences if not s.busy]):
                self._changed.wait()
            seq = _pick(free, label)
            seq.busy = True
        held = list(seq.ids)
        previous = getattr(self._local, "seq", None)
        self._local.seq = seq
        try:
            yield seq
        finally:
            self._local.seq = previous
            with self._changed:
                # A job that did not change the cells (a tape check, a failed turn)
                # leaves them to the session that filled them, so it finds them again.
                if seq.ids != held:
                    seq.label = label
                seq.busy, seq.last_used = False, self._clock()
                self._changed.notify()

    def each_idle(self) -> Iterator[LiveSequence]:
        """Act on each sequence no turn owns, in turn (idle-time parking): while
        the iterator is at one, the calling thread's engine calls go to it, and
        it counts as busy, so no turn binds it and no restore evicts it while
        its state is read (parking runs with no turn running today; this keeps
        it safe if that is ever loosened)."""
        previous = getattr(self._local, "seq", None)
        try:
            for seq in self.sequences:
                with self._changed:
                    if seq.busy:
                        continue
                    seq.busy = True
                self._local.seq = seq
                try:
                    yield seq
                finally:
                    with self._changed:
                        seq.busy = False
                        self._changed.notify()
        finally:
            self._local.seq = previous

    @contextmanager
    def claimed(self, seq: LiveSequence) -> Iterator[bool]:
        """Hold a sequence no turn owns as busy for the block, so no turn binds it
        while its cells are dropped for room; yields False, holding nothing, if a
        turn bound it since ``idle`` listed it."""
        with self._changed:
            held = not seq.busy
            seq.busy = True
        try:
            yield held
        finally:
            if held:
                with self._changed:
                    seq.busy = False
                    self._changed.notify()

    def idle(self) -> list[LiveSequence]:
        """Sequences no turn owns now, least recently used first (what to evict)."""
        with self._changed:
            return sorted((s for s in self.sequences if not s.busy), key=lambda s: s.last_used)

    def describe(self) -> list[dict[str, Any]]:
        """For ``daemon status``: what each sequence holds."""
        return [
            {"seq": s.seq_id, "tokens": len(s.ids), "busy": s.busy, "label": s.label}
            for s in self.sequences
        ]


def _pick(free: list[LiveSequence], label: str) -> LiveSequence:
    """The free sequence ``label`` used last, else an empty one, else the LRU one."""
    for seq in free:
        if seq.label == label and seq.ids:
            return seq
    return min(free, key=lambda s: (bool(s.ids), s.last_used))
