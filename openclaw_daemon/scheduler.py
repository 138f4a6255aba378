"""Per-session lanes and the one model worker.

Two turns on the same session never interleave: each holds its session's lane
for the whole turn. Turns of different sessions queue, bounded, for the single
model worker thread that owns the engine; a full queue answers "busy".
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from openclaw_daemon.errors import DaemonBusyError

_STOP = object()


class Scheduler:
    def __init__(self, *, max_queue: int = 32) -> None:
        self._jobs: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._lanes: dict[str, threading.Lock] = {}
        self._lanes_lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="model-worker", daemon=True)
        self._worker.start()

    @contextmanager
    def lane(self, key: str) -> Iterator[None]:
        with self._lanes_lock:
            lock = self._lanes.setdefault(key, threading.Lock())
        with lock:
            yield

    def submit(self, job: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            self._jobs.put_nowait((job, future))
        except queue.Full:
            raise DaemonBusyError(
                f"the daemon is busy: {self._jobs.maxsize} turns are already queued",
                hint="Retry in a moment.",
            ) from None
        return future

    @property
    def queued(self) -> int:
        return self._jobs.qsize()

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is _STOP:
                return
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # the job's error belongs to its caller
                future.set_exception(exc)

    def shutdown(self, timeout: float = 5.0) -> None:
        self._jobs.put(_STOP)
        self._worker.join(timeout)
