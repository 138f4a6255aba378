"""Scheduler: one worker runs jobs in order, lanes serialize a session, a full queue is busy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from openclaw_daemon.errors import DaemonBusyError
from openclaw_daemon.scheduler import Scheduler


def test_jobs_run_one_at_a_time_in_submission_order() -> None:
    scheduler = Scheduler(max_queue=8)
    running = []
    order = []

    def job(n: int) -> int:
        running.append(n)
        assert len(running) == 1
        time.sleep(0.01)
        order.append(n)
        running.remove(n)
        return n * 2

    futures = [scheduler.submit(lambda n=n: job(n)) for n in range(5)]
    assert [f.result(timeout=5) for f in futures] == [0, 2, 4, 6, 8]
    assert order == [0, 1, 2, 3, 4]
    scheduler.shutdown()


def test_full_queue_answers_busy() -> None:
    scheduler = Scheduler(max_queue=1)
    release = threading.Event()
    first = scheduler.submit(release.wait)
    time.sleep(0.05)  # let the worker take the first job
    scheduler.submit(lambda: None)
    with pytest.raises(DaemonBusyError, match="busy"):
        scheduler.submit(lambda: None)
    release.set()
    assert first.result(timeout=5) is True
    scheduler.shutdown()


def test_same_lane_never_interleaves_but_other_lanes_do_not_wait() -> None:
    scheduler = Scheduler()
    events: list[str] = []
    inside = threading.Event()

    def hold(lane: str, tag: str, wait: float) -> None:
        with scheduler.lane(lane):
            events.append(f"{tag}+")
            inside.set()
            time.sleep(wait)
            events.append(f"{tag}-")

    a = threading.Thread(target=hold, args=("s1", "a", 0.2))
    a.start()
    inside.wait(2)
    b = threading.Thread(target=hold, args=("s1", "b", 0))
    c = threading.Thread(target=hold, args=("s2", "c", 0))
    b.start()
    c.start()
    for thread in (a, b, c):
        thread.join(5)
    assert events.index("a-") < events.index("b+")
    assert events.index("c-") < events.index("a-")
    scheduler.shutdown()


def test_idle_jobs_wait_for_queued_turns_coalesce_and_run_at_shutdown() -> None:
    scheduler = Scheduler()
    order: list[str] = []
    release = threading.Event()
    first = scheduler.submit(lambda: (release.wait(5), order.append("turn 1")))
    time.sleep(0.05)  # the worker is inside turn 1
    assert scheduler.busy()
    scheduler.submit_idle("park", lambda: order.append("stale park"))
    scheduler.submit_idle("park", lambda: order.append("park"))  # replaces the pending one
    second = scheduler.submit(lambda: order.append("turn 2"))
    release.set()
    first.result(timeout=5)
    second.result(timeout=5)
    assert wait_until(lambda: "park" in order)
    # A queued turn goes before idle work; the newer idle job replaced the older.
    assert order == ["turn 1", "turn 2", "park"]
    assert not scheduler.busy()
    scheduler.submit_idle("late", lambda: order.append("late"))
    scheduler.shutdown()
    assert order[-1] == "late"


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_quiet_idle_jobs_wait_until_no_turn_has_ended_for_their_period() -> None:
    scheduler = Scheduler()
    ran: list[float] = []
    scheduler.submit(lambda: None).result(timeout=5)
    scheduler.submit_idle("compact", lambda: ran.append(time.monotonic()), after_quiet_s=0.4)
    scheduler.submit_idle("park", lambda: ran.append(-1.0))  # no quiet needed: runs first
    # Back-to-back turns keep the quiet job waiting...
    for _ in range(4):
        time.sleep(0.15)
        scheduler.submit(lambda: None).result(timeout=5)
    last_turn_end = time.monotonic()
    assert ran == [-1.0]
    # ...and it starts once the daemon has been quiet for its period.
    assert wait_until(lambda: len(ran) == 2, timeout=3)
    assert ran[1] - last_turn_end >= 0.35
    # At shutdown only the jobs needing no quiet period run.
    scheduler.submit_idle("compact again", lambda: ran.append(0.0), after_quiet_s=30)
    scheduler.submit_idle("park", lambda: ran.append(-2.0))
    scheduler.shutdown()
    assert ran[2:] == [-2.0]
