"""The live context's sequence pool (model/sequences.py), without a model."""

from __future__ import annotations

import threading

from openclaw_daemon.model.sequences import SequencePool


def test_a_sequence_being_parked_is_busy_until_the_park_moves_on() -> None:
    pool = SequencePool(2, clock=lambda: 5.0)
    with pool.bind("turn") as running:  # a turn owns one sequence
        parked = []
        bound: list[int] = []
        for seq in pool.each_idle():
            parked.append(seq.seq_id)
            assert seq is not running and seq.busy and pool.current is seq
            # A turn arriving now cannot take the sequence being read.
            waiter = threading.Thread(target=lambda: bound.append(_bind_once(pool)))
            waiter.start()
            waiter.join(timeout=0.2)
            assert waiter.is_alive() and bound == []
        waiter.join(timeout=5)
        assert bound == parked  # it got the sequence once the park let go
        assert parked == [1 - running.seq_id]
    # Parking changes neither whose cells they are nor their recency.
    idle = pool.sequences[parked[0]]
    assert not idle.busy and idle.label == "late" and idle.last_used == 5.0
    assert pool.current is pool.sequences[0]  # the caller's binding is back


def _bind_once(pool: SequencePool) -> int:
    with pool.bind("late") as seq:
        seq.ids.append(1)  # it changed the cells: the sequence is its own now
        return seq.seq_id


def test_stopping_early_releases_the_sequence() -> None:
    pool = SequencePool(2)
    walk = pool.each_idle()
    first = next(walk)
    assert first.busy
    walk.close()
    assert not any(s.busy for s in pool.sequences)
