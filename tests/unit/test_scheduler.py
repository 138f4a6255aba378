"""Scheduler: one worker runs jobs in order, lanes serialize a session, a full queue is busy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from openclaw_daemon.serve.scheduler import Scheduler
from openclaw_daemon.wire.errors import DaemonBusyError


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


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_quiet_idle_jobs_wait_for_their_quiet_period_or_their_deadline() -> None:
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    ran: list[str] = []
    scheduler.submit(lambda: None).result(timeout=5)  # a turn ends at t=0
    scheduler.submit_idle("compact", lambda: ran.append("compact"), after_quiet_s=0.3)
    scheduler.submit_idle("park", lambda: ran.append("park"))  # no quiet needed
    assert wait_until(lambda: ran == ["park"])
    # Back-to-back turns keep the quiet job waiting...
    for _ in range(3):
        clock.now += 0.2
        scheduler.submit(lambda: None).result(timeout=5)
    time.sleep(0.5)  # the worker re-checks at least every 0.3 s
    assert ran == ["park"]
    # ...until the daemon has been quiet for its period.
    clock.now += 0.35
    assert wait_until(lambda: ran == ["park", "compact"])
    # With turns that never pause, a deadline still runs it.
    scheduler.submit_idle("prefill", lambda: ran.append("prefill"), after_quiet_s=0.3, at_most_s=1)
    for _ in range(6):
        clock.now += 0.2
        scheduler.submit(lambda: None).result(timeout=5)
    assert wait_until(lambda: ran[-1] == "prefill")
    scheduler.shutdown()


def test_at_stop_only_jobs_without_a_quiet_period_run() -> None:
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    ran: list[str] = []
    release = threading.Event()
    scheduler.submit(lambda: release.wait(5))  # the worker is busy: nothing idle runs yet
    scheduler.submit_idle("compact", lambda: ran.append("compact"), after_quiet_s=0.3)
    scheduler.submit_idle("park", lambda: ran.append("park"))
    clock.now += 10  # the compaction's quiet period has passed, but a stop is coming
    stopper = threading.Thread(target=scheduler.shutdown)
    stopper.start()
    time.sleep(0.05)
    release.set()
    stopper.join(5)
    assert ran == ["park"]


def test_a_job_learns_what_it_waited_behind() -> None:
    scheduler = Scheduler()
    scheduler.submit(lambda: None, label="turn:main/early").result(timeout=5)
    release = threading.Event()
    started = threading.Event()

    def background() -> None:
        started.set()
        release.wait(5)

    scheduler.submit_idle("prefill-ahead:agent:main:s1", background)
    assert started.wait(5)
    # Background work is not a turn (busy) but the worker is working (disk writes wait).
    assert scheduler.working() and not scheduler.busy()
    seen: dict[str, list[str]] = {}
    # Queued while the background job runs, then behind another turn.
    first = scheduler.submit(
        lambda: seen.setdefault("a", list(scheduler.waited_behind)), label="turn:main/a"
    )
    second = scheduler.submit(
        lambda: seen.setdefault("b", list(scheduler.waited_behind)), label="turn:main/b"
    )
    release.set()
    first.result(timeout=5), second.result(timeout=5)
    # The turn that ended before they were queued is not what they waited for.
    assert seen["a"] == ["prefill-ahead:agent:main:s1"]
    assert seen["b"] == ["prefill-ahead:agent:main:s1", "turn:main/a"]
    # Nothing running or queued: no wait to explain.
    assert scheduler.submit(lambda: list(scheduler.waited_behind)).result(timeout=5) == []
    assert wait_until(lambda: not scheduler.working())
    scheduler.shutdown()


def test_lane_wanted_while_a_turn_waits_for_the_lane_and_stopping_at_shutdown() -> None:
    """Background work holding a session's lane (an upstream compaction) sees a turn
    of that session waiting, and gives way; the flag clears once the turn has it."""
    scheduler = Scheduler()
    got = threading.Event()
    with scheduler.try_lane("s") as held:
        assert held and not scheduler.lane_wanted("s")

        def turn() -> None:
            with scheduler.lane("s"):
                got.set()

        waiter = threading.Thread(target=turn)
        waiter.start()
        deadline = time.monotonic() + 5
        while not scheduler.lane_wanted("s") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.lane_wanted("s") and not scheduler.lane_wanted("other")
        assert not got.is_set()
    waiter.join(5)
    assert got.is_set() and not scheduler.lane_wanted("s")
    assert not scheduler.stopping
    scheduler.shutdown()
    assert scheduler.stopping


def test_a_turn_given_a_free_slot_waited_behind_nothing() -> None:
    from openclaw_daemon.model.sequences import SequencePool

    scheduler = Scheduler(parallel=2, bind=SequencePool(2).bind)
    release, started = threading.Event(), threading.Event()
    long = scheduler.submit(lambda: started.set() or release.wait(5), label="turn:long")
    assert started.wait(5)
    # The second slot is free: the turn running beside it is not a wait.
    beside = scheduler.submit(lambda: list(scheduler.waited_behind), label="turn:beside")
    assert beside.result(5) == []
    blocker = scheduler.submit(lambda: release.wait(5), label="turn:blocker")
    queued = scheduler.submit(lambda: list(scheduler.waited_behind), label="turn:queued")
    time.sleep(0.05)  # both slots are taken: this one waits
    release.set()
    assert set(queued.result(5)) >= {"turn:long", "turn:blocker"}
    long.result(5), blocker.result(5)
    scheduler.shutdown()


def test_parallel_slots_run_turns_at_once_each_bound_and_idle_work_waits_for_all() -> None:
    from openclaw_daemon.model.sequences import SequencePool

    pool = SequencePool(2)
    scheduler = Scheduler(parallel=2, bind=pool.bind)
    inside = threading.Barrier(2, timeout=5)
    seen: list[int] = []
    order: list[str] = []

    def turn(name: str) -> str:
        seen.append(pool.current.seq_id)
        inside.wait()  # both run at the same time, or this times out
        time.sleep(0.05)
        order.append(name)
        return name

    first = scheduler.submit(lambda: turn("a"), label="turn:a")
    second = scheduler.submit(lambda: turn("b"), label="turn:b")
    time.sleep(0.02)
    scheduler.submit_idle("park", lambda: order.append("park"))
    third = scheduler.submit(lambda: order.append("c") or scheduler.waited_behind, label="turn:c")
    assert {first.result(5), second.result(5)} == {"a", "b"}
    behind = third.result(5)
    assert sorted(seen) == [0, 1]  # one sequence each
    assert wait_until(lambda: "park" in order)
    # Idle work only once no turn runs or waits; the third turn waited for a slot.
    assert order.index("park") > order.index("c")
    assert {"turn:a", "turn:b"} <= set(behind)
    assert scheduler.running == 0 and not scheduler.busy()
    scheduler.shutdown()


def test_a_forced_idle_job_runs_alone_between_turns_that_keep_overlapping() -> None:
    from openclaw_daemon.model.sequences import SequencePool

    clock = FakeClock()
    pool = SequencePool(2)
    scheduler = Scheduler(parallel=2, bind=pool.bind, clock=clock)
    ran: list[tuple[str, int]] = []
    parked_at: list[float] = []
    turns: list[tuple[float, float]] = []  # (submitted, started), real time
    stop = threading.Event()

    def client(name: str, length: float) -> None:
        # Turns of different lengths from two clients: one is always running.
        while not stop.is_set():
            submitted = time.monotonic()
            started = scheduler.submit(
                lambda: time.sleep(length) or time.monotonic() - length, label=f"turn:{name}"
            ).result(5)
            turns.append((submitted, started))

    clients = [threading.Thread(target=client, args=x) for x in (("a", 0.02), ("b", 0.033))]
    for thread in clients:
        thread.start()

    def ask() -> None:  # as each turn's end asks again
        scheduler.submit_idle(
            "park",
            lambda: ran.append(("park", scheduler.running)) or parked_at.append(time.monotonic()),
            force_after_s=1,
        )

    ask()
    time.sleep(0.3)
    clock.now += 0.6
    ask()  # asked again: its first deadline holds, not a new one
    time.sleep(0.3)
    assert ran == []  # not due yet: the overlapping turns keep it waiting
    clock.now += 0.6
    try:
        assert wait_until(lambda: bool(ran))
        assert ran == [("park", 0)]  # nothing ran beside it
        # A turn asked before it ran and started after: it was held back.
        assert wait_until(lambda: any(s < parked_at[0] < b for s, b in list(turns)))
    finally:
        stop.set()
        for thread in clients:
            thread.join(5)
    scheduler.shutdown()


def test_with_one_slot_a_forced_idle_job_still_waits_for_an_empty_queue() -> None:
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    release = threading.Event()
    ran: list[str] = []
    first = scheduler.submit(lambda: release.wait(5))
    second = scheduler.submit(lambda: ran.append("turn"))
    scheduler.submit_idle("park", lambda: ran.append("park"), force_after_s=1)
    clock.now += 2
    release.set()
    first.result(5)
    second.result(5)
    assert wait_until(lambda: ran == ["turn", "park"])  # the queued turn went first
    scheduler.shutdown()


def test_a_parallel_job_that_fails_reports_to_its_caller_and_frees_its_slot() -> None:
    from openclaw_daemon.model.sequences import SequencePool

    pool = SequencePool(2)
    scheduler = Scheduler(parallel=2, bind=pool.bind)

    def boom() -> None:
        raise ValueError("bad turn")

    with pytest.raises(ValueError, match="bad turn"):
        scheduler.submit(boom).result(5)
    assert [scheduler.submit(lambda n=n: n).result(5) for n in range(3)] == [0, 1, 2]
    assert not any(seq.busy for seq in pool.sequences)
    scheduler.shutdown()


def test_an_exclusive_job_waits_for_the_running_turns_and_runs_alone() -> None:
    from openclaw_daemon.model.sequences import SequencePool

    pool = SequencePool(2)
    scheduler = Scheduler(parallel=2, bind=pool.bind)
    release = threading.Event()
    order: list[str] = []

    def turn() -> None:
        release.wait(5)
        order.append("turn")

    first = scheduler.submit(turn, label="turn:a")
    time.sleep(0.05)
    busy = lambda: sum(seq.busy for seq in pool.sequences)  # noqa: E731
    clear = scheduler.submit(lambda: order.append(f"clear with {busy()} busy"),
                             label="cache clear", exclusive=True)  # fmt: skip
    later = scheduler.submit(lambda: order.append("later"), label="turn:b")
    time.sleep(0.1)
    assert order == []  # the clear waits for turn a; turn b waits behind the clear
    release.set()
    first.result(5), clear.result(5), later.result(5)
    assert order == ["turn", "clear with 0 busy", "later"]
    scheduler.shutdown()
