"""Cache planning on the fake model's KV: cold, L1, L2 (parked in RAM), L3 (disk), and a
divergence in the middle of the prompt, which trims the live sequence there."""

from __future__ import annotations

import pytest

from openclaw_daemon.cache.prefix_cache import SHARE_OVER_RESTORE
from openclaw_daemon.model.base import DroppedState
from openclaw_daemon.model.fake import FakeEngine
from tests.unit.fake_daemon import pipeline_on

N_CTX = 16384


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def test_switching_sessions_parks_the_live_one_in_l2_and_restores_it() -> None:
    engine = FakeEngine(["Answer A.", "Answer B.", "Answer A2."], n_ctx=N_CTX)
    with pipeline_on(engine) as harness:
        a1 = harness.turn("question for A")
        a_live = tuple(engine.live_tokens)
        b1 = harness.turn("question for B", session_id="session-b")
        b_live = tuple(engine.live_tokens)
        a2 = harness.turn("follow-up for A", session_id=a1["sessionId"])
    assert a1["cache"]["tier"] == "none"
    # B shares the head with A: L1 up to where they part; A is parked first.
    assert b1["cache"]["tier"] == "L1"
    assert b1["cache"]["parkedTokens"] == len(a_live)
    assert engine.kv.snapshots[0] == a_live
    # Back to A: its parked state is restored whole from RAM (B parked first).
    assert a2["cache"]["tier"] == "L2"
    assert engine.kv.snapshots[1] == b_live
    assert engine.kv.restores == [(a_live, len(a_live))]
    assert a2["usage"]["cacheRead"] == len(a_live)
    assert engine.prefills[2].reused == len(a_live)


def _switch_back(
    other_holds: int | None, question_a: str = "question for A", own_keeps: int | None = None
) -> tuple[FakeEngine, dict, tuple[int, ...], int]:
    """A, then B (sharing the head), then A again, with another live sequence
    holding ``other_holds`` tokens of the head (None: no other sequence), and the
    turn's own sequence cut back to ``own_keeps`` tokens of B's (None: all)."""
    engine = FakeEngine(["Answer A.", "Answer B.", "Answer A2."], n_ctx=N_CTX)
    with pipeline_on(engine) as harness:
        a1 = harness.turn(question_a)
        a_live = tuple(engine.live_tokens)
        harness.turn("question for B", session_id="session-b")
        head = _common_prefix(a_live, tuple(engine.live_tokens))
        if other_holds is not None:
            engine.other_sequences = [(1, a_live[: min(other_holds, head)])]
        if own_keeps is not None:
            engine.truncate(own_keeps)
        a2 = harness.turn("follow-up for A", session_id=a1["sessionId"])
    return engine, a2, a_live, head


@pytest.mark.parametrize("other_holds", [10**6, 0], ids=["shared", "not-yet-shared"])
def test_with_several_sequences_a_blob_a_few_tokens_longer_leaves_the_live_head_alone(
    other_holds: int,
) -> None:
    """With ``--parallel`` above 1 the live head may be cells other turns share, or
    are about to borrow as they start beside this one: a blob reaching under
    SHARE_OVER_RESTORE tokens further is not restored over it (that would
    duplicate the head); the few tokens are prefilled instead."""
    engine, a2, a_live, head = _switch_back(other_holds)
    assert head >= SHARE_OVER_RESTORE
    assert 0 < len(a_live) - head < SHARE_OVER_RESTORE  # A's blob would reach a little further
    assert a2["cache"]["tier"] == "L1"
    assert a2["cache"]["cachedTokens"] == head
    assert engine.kv.restores == []


def test_a_blob_reaching_the_margin_further_is_restored_over_a_shared_head() -> None:
    engine, a2, a_live, head = _switch_back(
        other_holds=10**6, question_a="question for A: " + "spell out the long words " * 12
    )
    assert len(a_live) - head >= SHARE_OVER_RESTORE
    assert a2["cache"]["tier"] == "L2"
    assert engine.kv.restores == [(a_live, len(a_live))]


@pytest.mark.parametrize(
    ("other_holds", "own_keeps"),
    [(None, None), (0, SHARE_OVER_RESTORE - 1)],
    ids=["one-sequence", "live-prefix-under-the-margin"],
)
def test_a_blob_is_restored_with_one_sequence_or_under_a_few_live_tokens(
    other_holds: int | None, own_keeps: int | None
) -> None:
    """The margin is for a live head: with one sequence, or a live prefix shorter
    than the margin (a common BOS and role marker), a blob a few tokens longer
    is restored."""
    engine, a2, a_live, head = _switch_back(other_holds, own_keeps=own_keeps)
    assert 0 < len(a_live) - head < SHARE_OVER_RESTORE
    assert a2["cache"]["tier"] == "L2"
    assert engine.kv.restores == [(a_live, len(a_live))]


def test_a_state_parked_on_disk_is_restored_from_l3_by_the_next_daemon() -> None:
    first = FakeEngine(["Answer A."], n_ctx=N_CTX)
    with pipeline_on(first) as harness:
        a1 = harness.turn("question for A")
        a_live = tuple(first.live_tokens)
        harness.tapes.park()  # what the daemon does once idle: L2, then L3 by the writer
    assert first.kv.snapshots == [a_live]
    # A new daemon: same model (fingerprint), same state dir, nothing in RAM.
    second = FakeEngine(["Answer A2."], n_ctx=N_CTX)
    with pipeline_on(second) as harness:
        a2 = harness.turn("follow-up for A", session_id=a1["sessionId"])
    assert a2["cache"]["tier"] == "L3"
    assert second.kv.restores == [(a_live, len(a_live))]
    assert a2["usage"]["cacheRead"] == len(a_live)
    assert second.prefills[0].reused == len(a_live)


def test_a_divergence_in_the_middle_trims_the_live_sequence_there() -> None:
    engine = FakeEngine(["Answer A.", "Answer B."], n_ctx=N_CTX)
    with pipeline_on(engine) as harness:
        a1 = harness.turn("tell me about apples")
        a_live = tuple(engine.live_tokens)
        b1 = harness.turn("tell me about bananas", session_id="session-b")
    b_prompt = engine.prefills[1].prompt
    position = _common_prefix(a_live, b_prompt)
    # Past the shared head, inside the new user message ("tell me about " is shared too).
    head = engine.detokenize(list(b_prompt[:position]), special=True).decode()
    assert head.endswith("<|im_start|>user\ntell me about ")
    assert engine.kv.trims == [(position, len(a_live))]
    assert b1["usage"]["cacheRead"] == position
    assert b1["usage"]["input"] == len(b_prompt) - position
    divergence = b1["cache"]["divergence"]
    assert divergence["position"] == position
    assert divergence["segment"] == "new user message"
    assert divergence["cachedFrom"] == "L1"
    assert divergence["cachedSession"] == a1["sessionId"]
    assert (divergence["prompt"][:2], divergence["cached"][:2]) == ("ba", "ap")


def test_a_refused_l2_state_is_discarded_and_the_turn_prefills_instead() -> None:
    engine = FakeEngine(["Answer A.", "Answer B.", "Answer A2."], n_ctx=N_CTX)
    with pipeline_on(engine) as harness:
        a1 = harness.turn("question for A")
        a_live = tuple(engine.live_tokens)
        harness.turn("question for B", session_id="session-b")
        b_live = tuple(engine.live_tokens)
        (parked,) = [e for e in harness.store.entries.values() if e.tokens == a_live]
        assert parked.blob is not None
        parked.blob[:8] = b"garbage!"  # the state no longer loads
        a2 = harness.turn("follow-up for A", session_id=a1["sessionId"])
        assert all(e.tokens != a_live for e in harness.store.entries.values())
    assert a2["text"] == "Answer A2."
    assert any("discarded a cache entry" in n for n in a2["cache"]["notices"])
    # Planned again around it: B's state (parked before the failed restore),
    # trimmed to the head the sessions share; the rest of A is prefilled.
    shared = _common_prefix(a_live, b_live)
    assert engine.kv.restores == [(b_live, shared)]
    assert a2["cache"]["tier"] == "L2"
    assert a2["usage"]["cacheRead"] == shared
    assert engine.prefills[-1].reused == shared


def _dropped_after_a_turn(harness_engine: FakeEngine, session: str) -> DroppedState:
    """What the engine copies out as it drops the live sequence for room."""
    tokens, blob = harness_engine.snapshot(lambda size: memoryview(bytearray(size)))
    harness_engine.reset()  # the cells are gone: only the copy holds them
    return DroppedState(tokens, blob, session)


def test_a_sequence_dropped_for_room_is_parked_from_its_copy_and_restored_from_l2() -> None:
    engine = FakeEngine(["Answer A.", "Answer A2."], n_ctx=N_CTX)
    with pipeline_on(engine) as harness:
        a1 = harness.turn("question for A")
        a_live = tuple(engine.live_tokens)
        cache = harness.pipeline.cache
        assert cache._keep_dropped(0, a_live, 4096) == a1["sessionId"]  # no tier holds it
        engine.dropped = [_dropped_after_a_turn(engine, a1["sessionId"])]
        a2 = harness.turn("follow-up for A", session_id=a1["sessionId"])
        assert cache.counters["parkedOnDrop"] == 1
    assert a2["cache"]["tier"] == "L2"
    assert engine.kv.restores == [(a_live, len(a_live))]
    assert a2["usage"]["cacheRead"] == len(a_live)


def test_a_dropped_sequence_is_not_copied_when_a_tier_holds_it_or_ram_has_no_room() -> None:
    engine = FakeEngine(["Answer A."], n_ctx=N_CTX)
    with pipeline_on(engine) as harness:
        harness.turn("question for A")
        a_live = tuple(engine.live_tokens)
        cache = harness.pipeline.cache
        assert cache._keep_dropped(0, a_live, harness.store.ram.budget + 1) is None
        assert cache.checkpoint()  # parked at idle time
        assert cache._keep_dropped(0, a_live, 4096) is None
        # A copy made anyway (the park raced it) is not filed twice.
        engine.dropped = [_dropped_after_a_turn(engine, "session-a")]
        assert cache.park_dropped() == 0


def test_cache_clear_drops_copies_of_dropped_sequences_too() -> None:
    engine = FakeEngine(["Answer A."], n_ctx=N_CTX)
    with pipeline_on(engine) as harness:
        harness.turn("question for A")
        engine.dropped = [_dropped_after_a_turn(engine, "session-a")]
        harness.pipeline.cache.clear()
        assert engine.dropped == [] and harness.store.entries == {}
