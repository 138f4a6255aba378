"""Reuse limited to what a state can represent, without a model.

The fake engine plays llama.cpp's memory types: full attention (any cut),
a sliding window (once a trimmed or restored sequence grows, the oldest
positions' cells are reused, so it can only be cut back to lengths whose
window it still holds) and recurrent memory (only whole). The prefix cache,
the store and the file format must then never plan, supersede or report a
reuse the state cannot give (tests/e2e/test_reuse_equivalence.py checks the
same on the real models, logits included).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from openclaw_daemon.cache import kv_files
from openclaw_daemon.cache.kv_store import KVStore
from openclaw_daemon.cache.prefix_cache import PrefixCache
from openclaw_daemon.model.base import RECURRENT, SLIDING_WINDOW, batches
from openclaw_daemon.model.fake import FakeEngine
from openclaw_daemon.wire.errors import ModelError

WINDOW = 8


def _cache(tmp_path: Path, engine: FakeEngine) -> PrefixCache:
    store = KVStore(tmp_path, engine.fingerprint(), ram_budget=64 << 20, disk_budget=64 << 20)
    return PrefixCache(engine, store)


def _grown_after_restore(engine: FakeEngine, tokens: list[int], more: int) -> list[int]:
    """Park ``tokens``, restore them, then extend one token at a time (a reply)."""
    engine.reset()
    engine.prefill(tokens, batch_size=64)
    held, blob = engine.snapshot(lambda size: memoryview(bytearray(size)))
    engine.restore(held, blob, keep=len(held))
    grown = list(tokens)
    for token in range(200, 200 + more):
        grown.append(token)
        engine.prefill(grown, batch_size=64)
    return grown


def test_full_attention_trims_anywhere() -> None:
    engine = FakeEngine()
    grown = _grown_after_restore(engine, list(range(1, 30)), 10)
    assert engine.trim_floor == 0
    assert engine.truncate(3) == 3 and engine.live_tokens == grown[:3]


def test_a_sliding_window_refuses_a_cut_past_what_it_still_holds() -> None:
    engine = FakeEngine(memory=SLIDING_WINDOW, n_swa=WINDOW)
    engine.prefill(list(range(1, 30)), batch_size=64)
    assert engine.trim_floor == 0  # a fresh fill holds every position
    _grown_after_restore(engine, list(range(1, 30)), 10)
    floor = engine.trim_floor
    assert floor == 10 + WINDOW  # ten positions gone, plus the window they fed
    assert engine.truncate(floor) == floor
    assert engine.truncate(floor - 1) == 0 and engine.live_tokens == []  # emptied, never wrong


def test_recurrent_memory_exists_only_whole() -> None:
    engine = FakeEngine(memory=RECURRENT)
    engine.prefill(list(range(1, 30)), batch_size=64)
    assert engine.trim_floor == 29
    assert engine.truncate(29) == 29
    assert engine.truncate(10) == 0 and engine.live_tokens == []


def test_the_planner_does_not_reuse_the_live_state_past_its_floor(tmp_path: Path) -> None:
    engine = FakeEngine(memory=SLIDING_WINDOW, n_swa=WINDOW)
    cache = _cache(tmp_path, engine)
    grown = _grown_after_restore(engine, list(range(1, 30)), 10)
    prompt = grown[:12] + [99, 98]
    plan = cache.plan(prompt)
    assert (plan.tier, plan.cached) == ("none", 0)
    assert plan.notices == [
        "sliding window: the cached state shares 12 tokens but cannot be cut back that far; "
        "no checkpoint before it"
    ]
    # Past the floor the live state serves as before.
    plan = cache.plan(grown[:25] + [99])
    assert (plan.tier, plan.cached, plan.notices) == ("L1", 25, [])


def test_a_shorter_whole_entry_serves_where_a_longer_one_cannot(tmp_path: Path) -> None:
    engine = FakeEngine(memory=SLIDING_WINDOW, n_swa=WINDOW)
    cache = _cache(tmp_path, engine)
    head = list(range(1, 11))
    engine.prefill(head, batch_size=64)
    assert cache.checkpoint()  # the head, parked whole
    grown = _grown_after_restore(engine, [*head, *range(11, 30)], 10)
    assert engine.trim_floor > len(head)
    assert cache.checkpoint()  # the longer state does not supersede the head ...
    assert len(cache.store.entries) == 2
    engine.reset()
    plan = cache.apply(cache.plan([*head, 77, 78]), [*head, 77, 78])
    assert (plan.tier, plan.cached) == ("L2", len(head))  # ... which serves a new session
    assert plan.entry is not None and plan.entry.tokens == tuple(head)
    assert plan.notices == []  # the prompt shares only the head: nothing was lost
    # A prompt sharing more than the head with the longer state gets the head,
    # and is told why not more.
    engine.reset()
    plan = cache.plan([*grown[:14], 77])
    assert (plan.tier, plan.cached) == ("L2", len(head))
    assert plan.notices == [
        "sliding window: the cached state shares 14 tokens but cannot be cut back that far; "
        "nearest checkpoint at token 10"
    ]
    # The longer state still serves its own continuation whole.
    engine.reset()
    plan = cache.plan([*grown, 5])
    assert (plan.tier, plan.cached) == ("L2", len(grown))


def test_a_trimmable_snapshot_still_supersedes_its_prefixes(tmp_path: Path) -> None:
    engine = FakeEngine()
    cache = _cache(tmp_path, engine)
    engine.prefill(list(range(1, 11)), batch_size=64)
    assert cache.checkpoint()
    engine.prefill(list(range(1, 30)), batch_size=64)
    assert cache.checkpoint()
    assert [len(e.tokens) for e in cache.store.entries.values()] == [29]


def test_recurrent_entries_serve_only_their_exact_length(tmp_path: Path) -> None:
    engine = FakeEngine(memory=RECURRENT)
    cache = _cache(tmp_path, engine)
    engine.prefill(list(range(1, 30)), batch_size=64)
    assert cache.checkpoint()
    engine.reset()
    assert cache.plan(list(range(1, 20)) + [99]).tier == "none"
    assert cache.plan(list(range(1, 30)) + [99]).cached == 29
    # The prompt equal to the state would need a cut of one token: not possible.
    assert cache.plan(list(range(1, 30))).tier == "none"


def test_the_head_checkpoint_is_taken_on_the_way_and_only_when_needed(tmp_path: Path) -> None:
    prompt = list(range(1, 40))
    full = FakeEngine()
    assert _cache(tmp_path / "full", full).boundary_checkpoint(prompt, 10) is None

    engine = FakeEngine(memory=SLIDING_WINDOW, n_swa=WINDOW)
    cache = _cache(tmp_path / "swa", engine)
    checkpoint = cache.boundary_checkpoint(prompt, 10)
    assert checkpoint is not None and checkpoint[0] == 10
    engine.prefill(prompt, batch_size=16, checkpoint=checkpoint)
    assert engine.live_tokens == prompt
    assert engine.kv.snapshots == [tuple(prompt[:10])]
    assert cache.store.covers(tuple(prompt[:10]))
    assert cache.boundary_checkpoint(prompt, 10) is None  # held now
    assert cache.boundary_checkpoint(prompt, 0) is None
    assert cache.boundary_checkpoint(prompt, len(prompt) - 1) is None


def test_batches_end_at_the_checkpoint() -> None:
    assert batches(0, 40, 16, None) == [16, 32, 40]
    assert batches(0, 40, 16, (10, lambda: None)) == [10, 16, 32, 40]
    assert batches(0, 40, 16, (16, lambda: None)) == [16, 32, 40]
    assert batches(20, 40, 16, (10, lambda: None)) == [36, 40]  # already past it


def test_a_prefill_s_last_batch_keeps_to_the_many_row_kernels() -> None:
    """base.BATCH_MIN_ROWS: the one-row kernels of the patched build take fewer rows."""
    assert batches(0, 517, 256, None) == [256, 507, 517]  # not 512, then 5 rows
    assert batches(0, 530, 256, None) == [256, 512, 530]  # 18 rows last: unchanged
    assert batches(100, 105, 256, None) == [105]  # a short prompt is one batch
    # A checkpoint inside wins: its stop is kept, whatever the batches around it.
    assert batches(0, 517, 256, (512, lambda: None)) == [256, 512, 517]


def test_the_trim_floor_survives_the_file_and_a_lying_one_is_refused(tmp_path: Path) -> None:
    fingerprint = {"modelPath": "/m.gguf", "nCtx": 64, "kvType": "fake"}
    path = tmp_path / "a.kvc"
    kv_files.write_blob(path, fingerprint, (1, 2, 3, 4), b"blob", trim_floor=3)
    assert kv_files.read_header(path, fingerprint) == ((1, 2, 3, 4), 4, 3)
    kv_files.write_blob(path, fingerprint, (1, 2), b"blob", trim_floor=5)  # past its tokens
    with pytest.raises(Exception, match="bad header"):
        kv_files.read_header(path, fingerprint)


def test_a_restore_asked_to_cut_past_the_floor_is_refused(tmp_path: Path) -> None:
    engine = FakeEngine(memory=SLIDING_WINDOW, n_swa=WINDOW)
    _grown_after_restore(engine, list(range(1, 30)), 10)
    held, blob = engine.snapshot(lambda size: memoryview(bytearray(size)))
    with pytest.raises(ModelError, match="cannot be cut back"):
        engine.restore(held, blob, keep=5)
    assert engine.live_tokens == []


def test_the_head_boundary_ends_where_sessions_with_one_system_prompt_part() -> None:
    from openclaw_daemon.model.tape import TapeBuilder
    from openclaw_daemon.turn.head_boundary import HeadBoundary

    engine = FakeEngine(memory=SLIDING_WINDOW, n_swa=WINDOW)
    builder = TapeBuilder(engine.template, engine, add_bos=False)
    system = {"role": "system", "content": "Be brief."}
    plan = builder.plan_turn(builder.from_messages([system]), [{"role": "user", "content": "Hi"}])
    boundary = HeadBoundary(engine, builder).of(plan)
    head = engine.detokenize(plan.tokens[:boundary], special=True).decode()
    assert head == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
    # Full attention needs none: any longer state is trimmed to the head.
    assert HeadBoundary(FakeEngine(), builder).of(plan) == 0
