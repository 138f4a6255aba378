"""Steps shared by sequences (model/step_batcher.py) and their binding (model/sequences.py).

A recording ``run_step`` stands in for llama_decode: what matters here is which
requests go into one step, that none is lost or run twice, and errors.
"""

from __future__ import annotations

import threading
import time

import pytest

from openclaw_daemon.model.sequences import SequencePool
from openclaw_daemon.model.step_batcher import SHARED_PREFILL_CHUNK, StepBatcher, StepRequest


class Recorder:
    def __init__(self, delay: float = 0.005) -> None:
        self.steps: list[list[tuple[int, tuple[int, ...]]]] = []
        self.delay = delay

    def __call__(self, step: list[StepRequest]) -> None:
        time.sleep(self.delay)  # a decode takes time: others queue meanwhile
        self.steps.append([(r.seq, tuple(r.tokens)) for r in step])


def test_one_sequence_alone_never_waits_and_runs_its_own_steps() -> None:
    recorder = Recorder(delay=0)
    batcher = StepBatcher(recorder, max_rows=512, gather_s=1.0)
    started = time.perf_counter()
    with batcher.in_model_call():
        for token in range(5):
            batcher.evaluate(StepRequest(0, [token]))
    assert time.perf_counter() - started < 0.5  # no 1 s gather: it is the only active one
    assert recorder.steps == [[(0, (t,))] for t in range(5)]
    assert batcher.counters.shared_steps == 0


def test_concurrent_sequences_share_steps_and_every_token_is_evaluated_once() -> None:
    recorder = Recorder()
    batcher = StepBatcher(recorder, max_rows=512, gather_s=0.05)
    entered = threading.Barrier(4)

    def decode(seq: int) -> None:
        with batcher.in_model_call():
            entered.wait()
            for token in range(20):
                batcher.evaluate(StepRequest(seq, [seq * 100 + token]))

    threads = [threading.Thread(target=decode, args=(seq,)) for seq in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    evaluated = [row for step in recorder.steps for row in step]
    assert sorted(evaluated) == sorted((s, (s * 100 + t,)) for s in range(4) for t in range(20))
    for seq in range(4):  # each sequence's tokens in its own order
        mine = [tokens[0] for s, tokens in evaluated if s == seq]
        assert mine == [seq * 100 + t for t in range(20)]
    assert all(len({s for s, _ in step}) == len(step) for step in recorder.steps)
    # Mostly four at a time: 20 steps, not 80.
    assert len(recorder.steps) <= 30 and batcher.counters.by_size.get(4, 0) >= 10


def test_rows_are_capped_and_the_rest_waits_for_the_next_step() -> None:
    recorder = Recorder()
    batcher = StepBatcher(recorder, max_rows=8, gather_s=0.05)
    barrier = threading.Barrier(3)

    def prefill(seq: int) -> None:
        with batcher.in_model_call():
            barrier.wait()
            batcher.evaluate(StepRequest(seq, [seq] * 5))

    threads = [threading.Thread(target=prefill, args=(s,)) for s in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(sum(len(t) for _, t in step) <= 8 for step in recorder.steps)
    assert sorted(s for step in recorder.steps for s, _ in step) == [0, 1, 2]


def test_a_failed_step_raises_in_every_caller_and_the_next_step_runs() -> None:
    calls = []

    def run_step(step: list[StepRequest]) -> None:
        calls.append(len(step))
        if len(calls) == 1:
            raise RuntimeError("decode failed")

    batcher = StepBatcher(run_step, max_rows=512)
    with pytest.raises(RuntimeError, match="decode failed"):
        batcher.evaluate(StepRequest(0, [1]))
    batcher.evaluate(StepRequest(0, [2]))  # the batcher is not left stepping
    assert calls == [1, 1]


def test_a_request_can_carry_its_own_error_from_a_shared_step() -> None:
    def run_step(step: list[StepRequest]) -> None:
        step[0].error = ValueError("no room for this one")

    batcher = StepBatcher(run_step, max_rows=512)
    with pytest.raises(ValueError, match="no room"):
        batcher.evaluate(StepRequest(0, [1]))


def test_prefill_chunks_are_short_only_while_another_sequence_is_active() -> None:
    batcher = StepBatcher(Recorder(delay=0), max_rows=512)
    with batcher.in_model_call():
        assert batcher.chunk(256) == 256
        with batcher.in_model_call():
            assert batcher.chunk(256) == SHARED_PREFILL_CHUNK
        assert batcher.chunk(256) == 256


def test_a_bound_thread_acts_on_its_sequence_and_others_on_sequence_0() -> None:
    pool = SequencePool(3)
    assert pool.current.seq_id == 0
    seen: dict[str, int] = {}

    def turn(label: str, hold: threading.Event) -> None:
        with pool.bind(label) as seq:
            seen[label] = pool.current.seq_id
            assert seq is pool.current
            hold.wait(5)

    holds = [threading.Event() for _ in range(3)]
    threads = [threading.Thread(target=turn, args=(f"s{i}", holds[i])) for i in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    assert sorted(seen.values()) == [0, 1, 2]  # three turns, three sequences
    assert pool.current.seq_id == 0  # this thread bound none
    for hold in holds:
        hold.set()
    for thread in threads:
        thread.join(5)
    assert not any(s.busy for s in pool.sequences)


def test_a_session_comes_back_to_its_own_sequence_and_a_fourth_turn_waits() -> None:
    pool = SequencePool(2)
    with pool.bind("a") as first:
        first.ids = [1, 2, 3]
    with pool.bind("b") as other:
        other.ids = [1, 2, 9]
        assert other is not first  # an empty one before another session's
    with pool.bind("a") as again:
        assert again is first
    order: list[str] = []
    release = threading.Event()

    def hold(label: str) -> None:
        with pool.bind(label):
            order.append(f"{label}+")
            release.wait(5)
        order.append(f"{label}-")

    holders = [threading.Thread(target=hold, args=(x,)) for x in ("a", "b")]
    for thread in holders:
        thread.start()
    time.sleep(0.1)
    third = threading.Thread(target=hold, args=("c",))
    third.start()
    time.sleep(0.1)
    assert "c+" not in order  # both sequences are busy: it waits
    release.set()
    third.join(5)
    for thread in holders:
        thread.join(5)
    assert order.index("c+") > min(order.index("a-"), order.index("b-"))


def test_a_job_that_leaves_the_cells_alone_does_not_take_the_sequence() -> None:
    pool = SequencePool(1)
    with pool.bind("turn:a") as seq:
        seq.ids = [1, 2, 3]
    with pool.bind("check-tape:b"):
        pass  # no model work: the cells are still session a's
    assert pool.sequences[0].label == "turn:a"
    with pool.bind("turn:b") as seq:
        seq.ids = [1, 2, 3, 4]  # this one used them
    assert pool.sequences[0].label == "turn:b"


def test_each_idle_visits_the_sequences_no_turn_owns() -> None:
    pool = SequencePool(3)
    visited = [seq.seq_id == pool.current.seq_id and seq.seq_id for seq in pool.each_idle()]
    assert visited == [0, 1, 2]
    assert pool.current.seq_id == 0


def test_the_leader_stops_gathering_as_soon_as_every_active_sequence_asked() -> None:
    recorder = Recorder(delay=0)
    batcher = StepBatcher(recorder, max_rows=512, gather_s=2.0)
    both = threading.Barrier(2, timeout=5)

    def decode(seq: int) -> None:
        with batcher.in_model_call():
            both.wait()
            batcher.evaluate(StepRequest(seq, [seq]))
            both.wait()  # neither leaves (and stops counting as active) early

    started = time.perf_counter()
    threads = [threading.Thread(target=decode, args=(s,)) for s in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert time.perf_counter() - started < 1.0  # not the 2 s gather
    assert [sorted(s for s, _ in step) for step in recorder.steps] == [[0, 1]]
