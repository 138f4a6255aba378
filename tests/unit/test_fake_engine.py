"""The fake engine keeps the engine interface's contract, as the llama.cpp engine does
(tests/e2e/test_engine_*.py check the real one), and loads no llama_cpp."""

from __future__ import annotations

import pytest

from openclaw_daemon.model.base import KVControl, KVEngine, ModelEngine, SamplingParams
from openclaw_daemon.model.fake import IM_END, IM_START, FakeEngine
from openclaw_daemon.wire.errors import CancelledError, KvSlotError, ModelError
from tests.unit.test_cli_imports import loaded_after


def test_it_implements_both_capabilities() -> None:
    engine = FakeEngine()
    assert isinstance(engine, ModelEngine) and isinstance(engine, KVControl)
    assert isinstance(engine, KVEngine)


def test_only_markup_may_spell_control_tokens() -> None:
    engine = FakeEngine()
    text = "<|im_start|>user\nhé<|im_end|>"
    assert engine.tokenize(text, add_bos=False, special=True) == [
        IM_START,
        *"user\nhé".encode(),
        IM_END,
    ]
    plain = engine.tokenize(text, add_bos=False)
    assert IM_END not in plain and engine.detokenize(plain) == text.encode()
    marked = engine.tokenize(text, add_bos=False, special=True)
    assert engine.detokenize(marked, special=True) == text.encode()
    assert engine.detokenize(marked) == "user\nhé".encode()


def test_generate_leaves_every_yielded_id_but_the_last_in_the_live_sequence() -> None:
    engine = FakeEngine(["ok"])
    prompt = engine.tokenize("hi", add_bos=False)
    assert engine.prefill(prompt, batch_size=8) == 0
    out = list(engine.generate(SamplingParams(), max_tokens=10))
    assert out == [*b"ok", IM_END]
    assert engine.live_tokens == [*prompt, *b"ok"]
    # A cut-short reply (max_tokens) holds all but its last id too.
    engine.enqueue("abcdef")
    assert engine.prefill(engine.live_tokens, batch_size=8) == len(prompt) + 1
    assert list(engine.generate(SamplingParams(), max_tokens=3)) == list(b"abc")
    assert engine.live_tokens[-2:] == list(b"ab")


def test_prefill_reuses_the_common_prefix_and_trims_the_rest() -> None:
    engine = FakeEngine()
    engine.prefill([1, 2, 3, 4, 5], batch_size=2)
    done: list[tuple[int, int]] = []
    reused = engine.prefill(
        [1, 2, 9, 9], batch_size=1, on_progress=lambda d, t: done.append((d, t))
    )
    assert reused == 2
    assert engine.kv.trims == [(2, 5)]
    assert done == [(1, 2), (2, 2)]
    assert engine.live_tokens == [1, 2, 9, 9]
    # The last token is always evaluated, even when all of it is cached.
    assert engine.prefill([1, 2, 9, 9], batch_size=4) == 3


def test_a_cancelled_prefill_keeps_the_batches_before_it() -> None:
    engine = FakeEngine()
    calls = iter([False, False, True])
    with pytest.raises(CancelledError):
        engine.prefill(list(range(10)), batch_size=4, cancelled=lambda: next(calls))
    assert engine.live_tokens == list(range(8))
    assert engine.prefills[-1].interrupted == "cancelled"


def test_a_prompt_past_the_window_has_no_kv_slot() -> None:
    with pytest.raises(KvSlotError):
        FakeEngine(n_ctx=8).prefill(list(range(9)), batch_size=4)


def test_snapshot_and_restore_round_trip_and_a_mismatch_is_refused() -> None:
    engine = FakeEngine()
    engine.prefill([5, 6, 7, 8], batch_size=4)
    tokens, blob = engine.snapshot(lambda size: memoryview(bytearray(size + 16)))
    assert tokens == (5, 6, 7, 8) and engine.kv.snapshots == [tokens]
    engine.reset()
    engine.restore(tokens, blob, keep=3)
    assert engine.live_tokens == [5, 6, 7]
    assert engine.kv.restores == [(tokens, 3)]
    with pytest.raises(ModelError, match="cells"):
        engine.restore((5, 6, 7), blob, keep=3)
    assert engine.live_tokens == []


def test_an_empty_queue_fails_the_decode_loudly() -> None:
    engine = FakeEngine()
    engine.prefill([1], batch_size=1)
    with pytest.raises(ModelError, match="no reply queued"):
        list(engine.generate(SamplingParams(), max_tokens=4))


def test_the_fake_and_the_daemon_on_it_load_no_llama_cpp() -> None:
    modules = (
        "openclaw_daemon.model.fake, openclaw_daemon.serve.server, openclaw_daemon.turn.pipeline"
    )
    assert loaded_after(modules, ("llama_cpp",)) == []
