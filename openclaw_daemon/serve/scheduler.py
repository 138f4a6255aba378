"""Per-session lanes, the one model worker, and idle-time background jobs.

Two turns on the same session never interleave: each holds its session's lane
for the whole turn. Turns of different sessions queue, bounded, for the single
model worker thread that owns the engine; a full queue answers "busy". Idle
jobs (parking the live KV state) run on the same worker only when no turn is
waiting, so a foreground turn always goes first; a newer idle job of the same
name replaces a pending one. An idle job may also ask for a quiet period (no
turn for that many seconds), so long background work (compaction) does not
start between back-to-back turns only to be preempted and move the live
context away from the session that is still being used.

The worker remembers what it ran and when, so a turn that waited can say behind
what (``waited_behind``): another session's turn, or a named background job.

With ``parallel`` N > 1 the worker is a dispatcher: it hands each turn to one
of N slot threads as soon as one is free, and the turn runs inside ``bind``
(the engine's sequence for that thread: model/sequences.py), so up to N turns
of different sessions run at once and share model steps. Idle jobs still run
only when no turn runs or waits, but turns that keep overlapping would hold
them off for ever: one submitted with ``force_after_s`` (parking), once that
has passed, holds back the next turn until the running ones end and runs alone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from openclaw_daemon.wire.errors import DaemonBusyError

log = logging.getLogger("openclawd.scheduler")
_STOP = object()
_WAKE = object()

# With several slots, parking runs between turns after this long (``force_after_s``).
PARK_FORCE_AFTER_S = 60.0


class _Ran:
    """One job the worker (or a slot) ran: its start, end (inf while running), label."""

    __slots__ = ("start", "end", "label")

    def __init__(self, start: float, label: str) -> None:
        self.start, self.end, self.label = start, float("inf"), label


class Scheduler:
    def __init__(
        self,
        *,
        max_queue: int = 32,
        clock: Callable[[], float] = time.monotonic,
        parallel: int = 1,
        bind: Callable[[str], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.clock = clock
        self.parallel = max(1, parallel)
        self._bind = bind
        self._slots = threading.Semaphore(self.parallel)
        self._slot_threads: list[threading.Thread] = []
        self._jobs: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._lanes: dict[str, threading.Lock] = {}
        self._lane_waiters: dict[str, int] = {}  # turns waiting for each lane
        self.stopping = False  # set at shutdown: background work off the worker ends
        self._lanes_lock = threading.Lock()
        # name -> (job, quiet period, at-most deadline, forced deadline)
        self._idle: dict[str, tuple[Callable[[], Any], float, float, float]] = {}
        self._idle_lock = threading.Lock()
        self.idle_runs = 0
        self._running = 0  # turns running now (at most ``parallel``)
        self._running_lock = threading.Lock()
        self._wake_pending = False
        self._last_end = clock()
        # The worker's and slots' recent jobs; the running ones end at inf.
        self._ran: deque[_Ran] = deque(maxlen=64)
        self._local = threading.local()
        self._worker = threading.Thread(target=self._work, name="model-worker", daemon=True)
        self._worker.start()

    @property
    def waited_behind(self) -> list[str]:
        """Read by a job as it starts: the labels of what it waited behind (``_behind``)."""
        behind: list[str] = getattr(self._local, "waited_behind", [])
        return behind

    @contextmanager
    def lane(self, key: str) -> Iterator[None]:
        with self._lanes_lock:
            lock = self._lanes.setdefault(key, threading.Lock())
            self._lane_waiters[key] = self._lane_waiters.get(key, 0) + 1
        try:
            lock.acquire()
        finally:
            with self._lanes_lock:
                self._lane_waiters[key] -= 1
        try:
            yield
        finally:
            lock.release()

    def lane_wanted(self, key: str) -> bool:
        """True while a turn waits for ``key``'s lane: background work holding it
        should stop and let the turn go first."""
        with self._lanes_lock:
            return self._lane_waiters.get(key, 0) > 0

    @contextmanager
    def try_lane(self, key: str) -> Iterator[bool]:
        """The lane if it is free now (True), else False at once: an idle job on the
        worker must not wait there for a turn running elsewhere (an upstream one)."""
        with self._lanes_lock:
            lock = self._lanes.setdefault(key, threading.Lock())
        held = lock.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                lock.release()

    def submit(
        self, job: Callable[[], Any], *, label: str = "a request", exclusive: bool = False
    ) -> Future[Any]:
        """Queue ``job`` for the worker. ``exclusive``: it runs with no turn beside
        it (with ``parallel`` > 1 it waits for the running ones: a cache clear)."""
        future: Future[Any] = Future()
        try:
            self._jobs.put_nowait((job, future, label, self.clock(), exclusive))
        except queue.Full:
            raise DaemonBusyError(
                f"the daemon is busy: {self._jobs.maxsize} turns are already queued",
                hint="Retry in a moment.",
            ) from None
        return future

    def submit_idle(
        self,
        name: str,
        job: Callable[[], Any],
        *,
        after_quiet_s: float = 0.0,
        at_most_s: float = float("inf"),
        force_after_s: float = float("inf"),
    ) -> None:
        """Run ``job`` on the worker once no turn is waiting and none has ended
        for ``after_quiet_s`` seconds, or, with turns that never pause, once
        ``at_most_s`` seconds have passed (so background work cannot starve).
        Past ``force_after_s`` it is forced (``_run_overdue``); asking again
        keeps the first forced deadline. A forced job must not yield to turns."""
        with self._idle_lock:
            now = self.clock()
            forced = now + force_after_s
            if name in self._idle:  # asked again, after every turn
                forced = min(forced, self._idle[name][3])
            self._idle[name] = (job, after_quiet_s, now + at_most_s, forced)
        self._wake_for_idle()

    def _wake_for_idle(self) -> None:
        """Wake a worker blocked on an empty queue to look at the idle jobs (one
        wake at a time, so wakes never fill the queue); if the queue is full, it
        is busy anyway and looks at idle jobs when it drains."""
        with self._idle_lock:
            wake = bool(self._idle) and not self._wake_pending
            self._wake_pending = self._wake_pending or wake
        if wake:
            try:
                self._jobs.put_nowait(_WAKE)
            except queue.Full:
                with self._idle_lock:
                    self._wake_pending = False

    @property
    def running(self) -> int:
        """Turns running now (at most ``parallel``)."""
        return self._running

    def busy(self) -> bool:
        """True while a turn runs or waits: background work should hold off."""
        return self._running > 0 or self.queued > 0

    def working(self) -> bool:
        """True while the worker runs anything (a turn, or an idle job) or a turn waits."""
        return self.busy() or any(ran.end == float("inf") for ran in list(self._ran))

    def quiet_for(self) -> float:
        """Seconds since the last turn ended; 0 while one runs or waits."""
        return 0.0 if self.busy() else self.clock() - self._last_end

    @property
    def queued(self) -> int:
        with self._jobs.mutex:
            # A queued stop counts: background work yields to it as to a turn.
            return sum(1 for item in self._jobs.queue if item is not _WAKE)

    def _next_idle(self, *, at_stop: bool = False) -> tuple[str, Callable[[], Any] | None, float]:
        """The first idle job that may run now (name, job), or None and how long until
        one may. At stop only the jobs that need no quiet period (parking) may run."""
        with self._idle_lock:
            now = self.clock()
            quiet = now - self._last_end
            wait = float("inf")
            for name, (job, need, deadline, _) in self._idle.items():
                ready = need == 0 if at_stop else quiet >= need or now >= deadline
                if ready:
                    del self._idle[name]
                    return name, job, 0.0
                if not at_stop:
                    wait = min(wait, need - quiet, deadline - now)
            return "", None, max(wait, 0.001)

    def _run_idle(self, *, wait: list[float] | None = None, at_stop: bool = False) -> bool:
        """Run one idle job; False if none may run (``wait`` gets how long until one may).
        At stop only those that need no quiet period run: compaction can wait."""
        if self._running > 0 and not at_stop:
            if wait is not None:  # a turn's end wakes the worker, or a forced deadline
                wait[:] = [self._until_forced()]
            return False
        name, job, until = self._next_idle(at_stop=at_stop)
        if wait is not None:
            wait[:] = [until]
        if job is None:
            return False
        self._run_named(name, job)
        return True

    def _run_named(self, name: str, job: Callable[[], Any]) -> None:
        started = self.clock()
        try:
            with self._running_as(name):
                job()
            self.idle_runs += 1
            # What background work cost, for reading a slow lane.wait against the log.
            log.info("background %s took %.0f ms", name, (self.clock() - started) * 1000.0)
        except Exception:  # background work must never take the worker down
            log.exception("idle job failed")

    @contextmanager
    def _running_as(self, label: str) -> Iterator[None]:
        ran = _Ran(self.clock(), label)
        self._ran.append(ran)
        try:
            yield
        finally:
            ran.end = self.clock()

    def _behind(self, submitted_at: float, waited: bool) -> list[str]:
        """Labels of the jobs that ended after ``submitted_at`` and, if it ``waited``
        for a slot, of those still running (else they only ran beside it)."""
        until = float("inf") if waited else self.clock()
        return [ran.label for ran in list(self._ran) if submitted_at < ran.end <= until]

    def _until_forced(self) -> float:
        """Seconds until the first forced deadline (inf: none pending)."""
        with self._idle_lock:
            first = min((forced for *_, forced in self._idle.values()), default=float("inf"))
            return max(first - self.clock(), 0.001) if first != float("inf") else first

    def _run_overdue(self) -> bool:
        """With several slots, an idle job past its forced deadline holds back the
        next turn until the running ones end, then runs alone; True if one ran.
        (One slot needs none of this: a turn parks what it would overwrite.)"""
        if self.parallel == 1:
            return False
        with self._idle_lock:
            now = self.clock()
            name = next((n for n, entry in self._idle.items() if now >= entry[3]), None)
        if name is None:
            return False
        for _ in range(self.parallel):
            self._slots.acquire()
        try:
            with self._idle_lock:
                entry = self._idle.pop(name, None)
            if entry is not None:
                self._run_named(name, entry[0])
            return entry is not None
        finally:
            for _ in range(self.parallel):
                self._slots.release()

    def _work(self) -> None:
        while True:
            if self._run_overdue():
                continue
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                wait: list[float] = []
                if self._run_idle(wait=wait):
                    continue
                try:  # sleep until a job arrives or a quiet-period job may start
                    item = self._jobs.get(timeout=None if wait[0] == float("inf") else wait[0])
                except queue.Empty:
                    continue
            if item is _WAKE:
                with self._idle_lock:
                    self._wake_pending = False
                continue
            if item is _STOP:
                for slot in list(self._slot_threads):  # the turns running finish first
                    slot.join()
                while self._run_idle(at_stop=True):  # finish parking before the daemon exits
                    pass
                return
            job, future, label, submitted_at, exclusive = item
            if self.parallel == 1:
                self._run_job(job, future, label, submitted_at)
                continue
            if exclusive:  # every slot's permit: the running turns end first
                for _ in range(self.parallel):
                    self._slots.acquire()
                try:
                    self._run_job(job, future, label, submitted_at)
                finally:
                    for _ in range(self.parallel):
                        self._slots.release()
                continue
            waited = False
            while self._run_overdue():  # it came due while the worker waited
                waited = True
            # A free slot (up to ``parallel`` turns at once); one it waits for is a wait.
            if not self._slots.acquire(blocking=False):
                waited = self._slots.acquire()  # blocks until one frees; returns True
            with self._running_lock:
                self._running += 1
            slot = threading.Thread(
                target=self._run_in_slot,
                args=(job, future, label, submitted_at, waited),
                name="model-slot",
                daemon=True,
            )
            self._slot_threads = [t for t in self._slot_threads if t.is_alive()] + [slot]
            slot.start()

    def _run_in_slot(
        self, job: Callable[[], Any], future: Future[Any], label: str, at: float, waited: bool
    ) -> None:
        try:
            assert self._bind is not None
            with self._bind(label):
                self._run_job(job, future, label, at, counted=True, waited=waited)
        except BaseException as exc:  # the binding failed: the caller hears why
            if not future.done():
                future.set_exception(exc)
        finally:
            with self._running_lock:
                self._running -= 1
                last = self._running == 0
            self._slots.release()
            if last:  # the worker may run idle jobs now
                self._wake_for_idle()

    def _run_job(
        self,
        job: Callable[[], Any],
        future: Future[Any],
        label: str,
        submitted_at: float,
        *,
        counted: bool = False,
        waited: bool = True,
    ) -> None:
        if not future.set_running_or_notify_cancel():
            return
        if not counted:
            with self._running_lock:
                self._running += 1
        self._local.waited_behind = self._behind(submitted_at, waited)
        try:
            with self._running_as(label):
                result = job()
            future.set_result(result)
        except BaseException as exc:  # the job's error belongs to its caller
            future.set_exception(exc)
        finally:
            self._last_end = self.clock()
            if not counted:
                with self._running_lock:
                    self._running -= 1

    def shutdown(self, timeout: float = 60.0) -> None:
        self.stopping = True
        self._jobs.put(_STOP)
        self._worker.join(timeout)
        if not self._worker.is_alive():
            # A turn that ended just before the stop may have queued its idle
            # job after the worker drained them: run it here (the worker is
            # gone, so nothing else drives the engine).
            while self._run_idle(at_stop=True):
                pass
