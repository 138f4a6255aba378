"""One model step for several sequences: group commit of their evaluations.

Each running turn drives its own sequence on its own thread, in plain
synchronous code (prefill, then a token at a time). When several do at once,
their evaluations are gathered into one batch per step (continuous batching:
a turn joins or leaves between steps). The first caller to find no step
running leads the next one: it waits a moment (``gather_s``) for the other
active sequences' requests, takes what is pending (up to ``max_rows``, its
own first), runs the step outside the lock, and wakes the rest. A sequence
alone never waits: it is the only active one.

``active`` counts the sequences inside a prefill or a decode (``in_model_call``):
a long prefill goes in short chunks while another is active, so it does not
stall the others' decoding (``chunk``).

Standard library only: the engine passes in the function that runs a step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# While other sequences decode, a prefill goes in chunks of at most this many
# rows: one step of 64 rows costs ~0.3 s on 2 CPU cores, the longest another
# turn's next token then waits.
SHARED_PREFILL_CHUNK = 64


@dataclass
class StepRequest:
    """Rows of one sequence for the next step."""

    seq: Any  # sequences.LiveSequence
    tokens: list[int]
    all_logits: bool = False  # keep every row's logits (drafts), else the last row's
    cancelled: Callable[[], bool] | None = None  # may abort a step it runs alone
    error: BaseException | None = None
    done: bool = False
    shared_with: int = 0  # how many other sequences' rows were in its step


@dataclass
class StepCounters:
    steps: int = 0
    shared_steps: int = 0  # steps that carried more than one sequence
    rows: int = 0
    # step size (sequences) -> steps, and the seconds they took, for status
    by_size: dict[int, int] = field(default_factory=dict)
    seconds_by_size: dict[int, float] = field(default_factory=dict)


class StepBatcher:
    def __init__(
        self,
        run_step: Callable[[list[StepRequest]], None],
        *,
        max_rows: int,
        gather_s: float = 0.002,
    ) -> None:
        self._run_step = run_step
        self.max_rows = max_rows
        self.gather_s = gather_s
        self._cond = threading.Condition()
        self._pending: list[StepRequest] = []
        self._stepping = False
        self.active = 0
        self.counters = StepCounters()

    @contextmanager
    def in_model_call(self) -> Iterator[None]:
        """Count the caller as active for the block (a prefill or a decode)."""
        with self._cond:
            self.active += 1
        try:
            yield
        finally:
            with self._cond:
                self.active -= 1
                self._cond.notify_all()  # a leader gathering for it stops waiting

    def chunk(self, batch_size: int) -> int:
        """The prefill chunk to use now: short while other sequences are active."""
        return min(batch_size, SHARED_PREFILL_CHUNK) if self.active > 1 else batch_size

    def evaluate(self, request: StepRequest) -> None:
        """Evaluate ``request`` in the next step it fits in; raises its error."""
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()  # a leader gathering for this request stops waiting
            while not request.done:
                if self._stepping:
                    self._cond.wait()
                    continue
                self._stepping = True
                step = self._gather(request)
                self._cond.release()
                try:
                    self._run(step)
                finally:
                    self._cond.acquire()
                    for taken in step:
                        taken.done = True
                    self._stepping = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error

    def _gather(self, own: StepRequest) -> list[StepRequest]:
        """Called holding the lock as the step's leader: wait up to ``gather_s`` for
        every active sequence's request, then take them (own first, rows capped)."""
        deadline = time.monotonic() + self.gather_s
        while len(self._pending) < self.active:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)
        step, rows, rest = [own], len(own.tokens), []
        for other in self._pending:
            if other is own:
                continue
            if rows + len(other.tokens) <= self.max_rows:
                step.append(other)
                rows += len(other.tokens)
            else:
                rest.append(other)
        self._pending = rest
        return step

    def _run(self, step: list[StepRequest]) -> None:
        counters = self.counters
        counters.steps += 1
        counters.rows += sum(len(r.tokens) for r in step)
        counters.by_size[len(step)] = counters.by_size.get(len(step), 0) + 1
        if len(step) > 1:
            counters.shared_steps += 1
        for request in step:
            request.shared_with = len(step) - 1
        started = time.perf_counter()
        try:
            self._run_step(step)
        except BaseException as exc:  # the step's failure belongs to every caller in it
            for request in step:
                if request.error is None:
                    request.error = exc
        finally:
            spent = time.perf_counter() - started
            counters.seconds_by_size[len(step)] = counters.seconds_by_size.get(len(step), 0) + spent
