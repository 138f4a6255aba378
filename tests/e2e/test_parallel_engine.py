"""Several live sequences in one llama context (``--parallel``), on the real model.

Each thread binds its own sequence; concurrent decodes share each llama_decode;
a head another sequence holds is shared with ``llama_memory_seq_cp`` instead of
prefilled; a cancel stops one turn and not the others; a full cache drops idle
sequences before it refuses a running one.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from openclaw_daemon import config
from openclaw_daemon.cache.kv_store import KVStore
from openclaw_daemon.cache.prefix_cache import PrefixCache
from openclaw_daemon.model.base import DecodeStats, SamplingParams, common_prefix
from openclaw_daemon.model.llama_engine import Engine
from openclaw_daemon.wire.errors import CancelledError, KvSlotError

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    yield Engine(config.embedded_model_path(), n_ctx=2048, parallel=4)


def _prompt(engine: Engine, question: str) -> list[int]:
    head = "You are a careful assistant. Answer briefly and plainly. " * 12
    text = (
        f"<|im_start|>system\n{head}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    return engine.tokenize(text, add_bos=False, special=True)


def _clear(engine: Engine) -> None:
    engine.reset_all()
    engine.keep_dropped = None  # an earlier test's prefix cache lets go of the engine
    engine.take_dropped()


def test_four_turns_at_once_share_steps_and_each_sequence_holds_its_own_reply(
    engine: Engine,
) -> None:
    _clear(engine)
    prompts = [_prompt(engine, f"Name a colour, number {n}.") for n in range(4)]
    replies: dict[int, list[int]] = {}
    tapes: dict[int, list[int]] = {}
    start = threading.Barrier(4, timeout=30)
    with engine.sequences.bind("session-0"):  # one session was here before: the head is live
        engine.prefill(prompts[0], batch_size=256)
    before = engine.step_stats()["sharedSteps"]

    def turn(n: int) -> None:
        with engine.sequences.bind(f"session-{n}"):
            start.wait()
            engine.prefill(prompts[n], batch_size=256)
            ids = list(engine.generate(SamplingParams(), max_tokens=24))
            replies[n], tapes[n] = ids, engine.live_tokens

    threads = [threading.Thread(target=turn, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(replies) == [0, 1, 2, 3]
    for n in range(4):
        assert 0 < len(replies[n]) <= 24
        # The generate contract, per sequence: it holds every yielded id but the last.
        assert tapes[n] == prompts[n] + replies[n][:-1]
        assert engine.detokenize(replies[n]).strip()
    stats = engine.step_stats()
    assert stats["sharedSteps"] - before >= 10, stats
    assert stats["stepsBySize"].get("4", 0) >= 1
    assert stats["borrowedTokens"] > 0  # three of the four took the head from another
    assert {s["seq"] for s in stats["sequences"] if s["tokens"]} == {0, 1, 2, 3}


def test_a_borrowed_head_is_computed_as_one_prefilled_in_place(engine: Engine) -> None:
    """seq_cp shares the cells: what follows sees the same keys and values, up
    to summation order: several sequences in one unified cache put a sequence's
    cells elsewhere, so it is not bit-exact (docs/internals.md)."""
    _clear(engine)
    first, second = _prompt(engine, "What is two plus two?"), _prompt(engine, "Spell cat.")
    with engine.sequences.bind("a") as donor:
        engine.prefill(first, batch_size=256)
    borrowed = engine.borrowed_tokens
    with engine.sequences.bind("b") as seq:
        assert engine.cached_prefix(second) > 100 and engine.borrowable_prefix(second) > 100
        reused = engine.prefill(second, batch_size=256)
        assert reused > 100 and engine.borrowed_tokens - borrowed == reused
        shared_logits = engine.next_logits()
        shared_reply = list(engine.generate(SamplingParams(), max_tokens=12))
        assert seq.seq_id != donor.seq_id
    alone = Engine(config.embedded_model_path(), n_ctx=2048, parallel=1)
    alone.prefill(second, batch_size=256)
    cold_logits = alone.next_logits()
    cold_reply = list(alone.generate(SamplingParams(), max_tokens=12))
    difference = float(np.max(np.abs(shared_logits - cold_logits)))
    print(f"\nborrowed head vs prefilled: max logit difference {difference:.3f}")
    assert int(np.argmax(shared_logits)) == int(np.argmax(cold_logits))
    assert difference < 1.0
    assert shared_reply[:4] == cold_reply[:4]  # parting later, at a near-tie, is allowed


def test_a_cancelled_turn_stops_and_the_others_finish(engine: Engine) -> None:
    _clear(engine)
    stop = threading.Event()
    outcome: dict[int, object] = {}
    start = threading.Barrier(3, timeout=30)

    def turn(n: int) -> None:
        with engine.sequences.bind(f"c{n}"):
            start.wait()
            engine.prefill(_prompt(engine, f"Tell a long story about ship {n}."), batch_size=256)
            produced = 0
            try:
                for _ in engine.generate(
                    SamplingParams(), max_tokens=40, cancelled=stop.is_set if n == 0 else bool
                ):
                    produced += 1
                    if n == 0 and produced == 5:
                        stop.set()
                outcome[n] = produced
            except CancelledError as exc:
                outcome[n] = exc

    threads = [threading.Thread(target=turn, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert isinstance(outcome[0], CancelledError)
    # The others went on to their own end (a stop or the limit), not cancelled.
    assert all(isinstance(outcome[n], int) and outcome[n] >= 1 for n in (1, 2)), outcome


def test_a_full_cache_drops_idle_sequences_before_refusing_a_running_turn(engine: Engine) -> None:
    _clear(engine)
    rng = random.Random(7)
    for n in range(3):  # three idle sequences, 500 distinct tokens each
        with engine.sequences.bind(f"idle-{n}"):
            engine.prefill([rng.randrange(100, 40000) for _ in range(500)], batch_size=256)
    evicted = engine.evicted
    with engine.sequences.bind("big"):
        long_prompt = [rng.randrange(100, 40000) for _ in range(1200)]
        engine.prefill(long_prompt, batch_size=256)  # 2700 > 2048 cells: room was made
        assert engine.live_tokens == long_prompt
    assert engine.evicted > evicted
    # Alone and still too long: the clear refusal, nothing else lost.
    with engine.sequences.bind("big"), pytest.raises(KvSlotError, match="context window"):
        engine.prefill(
            long_prompt + [rng.randrange(100, 40000) for _ in range(900)], batch_size=256
        )


def test_an_idle_sequence_dropped_for_room_is_parked_and_comes_back_from_l2(
    engine: Engine, tmp_path: Path
) -> None:
    """A sequence dropped to make room for a running turn is copied out first
    unless a tier holds it already, or it holds a prefix of one copied beside it;
    its session's next turn restores it from L2."""
    _clear(engine)
    store = KVStore(tmp_path, engine.fingerprint(), ram_budget=256 << 20, disk_budget=256 << 20)
    cache = PrefixCache(engine, store)
    rng = random.Random(11)
    first = [rng.randrange(100, 40000) for _ in range(500)]
    idle = [first, first[:300], [rng.randrange(100, 40000) for _ in range(500)]]
    for n, tokens in enumerate(idle):
        with engine.sequences.bind(f"idle-{n}"):
            engine.prefill(tokens, batch_size=256)
            cache.live_label = f"session-{n}"
            if n == 2:
                assert cache.checkpoint()  # parked at idle time already: no second copy
    evicted = engine.evicted
    with engine.sequences.bind("big"):
        engine.prefill([rng.randrange(100, 40000) for _ in range(1200)], batch_size=256)
    assert engine.evicted - evicted == 3  # 2200 cells > 2048: all three dropped
    # Copied: the first only (the second holds a prefix of it, the third is parked).
    assert cache.park_dropped() == 1 and cache.counters["parkedOnDrop"] == 1
    held = {entry.tokens: entry.label for entry in store.entries.values()}
    assert held == {tuple(idle[0]): "session-0", tuple(idle[2]): "session-2"}
    assert store.flush() and store.stats()["diskEntries"] == 2  # the copy goes to L3 too
    for n in (1, 0):  # the prefix first: the other way it is borrowed from L1
        asked = idle[n] + [rng.randrange(100, 40000) for _ in range(5)]
        with engine.sequences.bind(f"idle-{n}"):
            plan = cache.apply(cache.plan(asked), asked)
            assert (plan.tier, plan.cached) == ("L2", len(idle[n]))
            assert engine.live_tokens == idle[n]
            engine.prefill(asked, batch_size=256)
            assert engine.live_tokens == asked


def test_prompt_lookup_drafts_run_beside_another_sequence_and_each_keeps_its_reply(
    engine: Engine,
) -> None:
    """Two sequences at once quoting a file back with drafts: each draft batch shares
    steps with the other sequence, the rejected rows are cut from its own sequence
    only, and each keeps exactly its prompt and reply."""
    _clear(engine)
    code = "".join(
        f"def load_item_{i}(path):\n    with open(path) as handle:\n"
        f"        return handle.read().split(',')[{i}]\n\n"
        for i in range(5)
    )
    prompts = [
        _prompt(engine, f"Here is app{n}.py:\n\n{code}\nRepeat app{n}.py exactly.")
        for n in range(2)
    ]
    replies: dict[int, list[int]] = {}
    tapes: dict[int, list[int]] = {}
    drafts: dict[int, DecodeStats] = {}
    start = threading.Barrier(2, timeout=30)

    def turn(n: int) -> None:
        with engine.sequences.bind(f"quote-{n}"):
            engine.prefill(prompts[n], batch_size=256)
            start.wait()
            drafts[n] = DecodeStats()
            params = SamplingParams(prompt_lookup=True)
            replies[n] = list(engine.generate(params, max_tokens=80, stats=drafts[n]))
            tapes[n] = engine.live_tokens

    threads = [threading.Thread(target=turn, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert sorted(replies) == [0, 1]
    for n in range(2):
        assert tapes[n] == prompts[n] + replies[n][:-1]  # no rejected draft left behind
        assert drafts[n].lookup and drafts[n].accepted > 10, drafts[n]
        assert drafts[n].shared_steps > 0, drafts[n]  # it ran beside the other
        assert not drafts[n].exact  # so it is not called plain decoding's (draftsExact)
        assert "load_item_" in engine.detokenize(replies[n]).decode()


@pytest.mark.parametrize("own_holds", ["the shared prefix exactly", "a longer prompt"])
def test_a_divergence_from_another_sequence_names_that_sequence_s_tokens_and_session(
    engine: Engine, tmp_path: Path, own_holds: str
) -> None:
    """The plan's divergence report describes the sequence the cached prefix came
    from: a donor's tokens and session, not those of the sequence the turn holds,
    whether that one ends exactly where the prompt leaves the donor (a tie) or
    goes on longer after leaving the prompt sooner."""
    _clear(engine)
    store = KVStore(tmp_path, engine.fingerprint(), ram_budget=64 << 20, disk_budget=64 << 20)
    cache = PrefixCache(engine, store)
    donor_prompt = _prompt(engine, "What is two plus two?")
    asked = _prompt(engine, "What is two plus three?")
    shared = next(i for i, (a, b) in enumerate(zip(donor_prompt, asked, strict=False)) if a != b)
    if own_holds == "a longer prompt":
        own_prompt = _prompt(engine, "Spell cat, then dog, then bird, then fish, slowly.")
        assert common_prefix(own_prompt, asked) < shared < len(own_prompt)
    else:
        own_prompt = asked[:shared]
    with engine.sequences.bind("donor"):
        engine.prefill(donor_prompt, batch_size=256)
        cache.live_label = "session-donor"
    with engine.sequences.bind("own"):
        engine.prefill(own_prompt, batch_size=256)
        cache.live_label = "session-own"
        assert engine.live_tokens == own_prompt
        plan = cache.plan(asked)
    assert plan.divergence is not None
    assert plan.divergence.position == shared
    assert plan.divergence.cached == tuple(donor_prompt)
    assert plan.divergence.label == "session-donor" and plan.divergence.source == "L1"
