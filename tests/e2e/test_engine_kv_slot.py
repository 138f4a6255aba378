"""No KV slot (``llama_decode`` returning 1) is a KvSlotError, and the cache
keeps the prefix before the batch that did not fit.

Real model (the embedded SmolLM2) in a tiny window: only a real decode says 1.
"""

from __future__ import annotations

import random

import pytest

from openclaw_daemon import config
from openclaw_daemon.model.llama_engine import Engine
from openclaw_daemon.wire.errors import KvSlotError

N_CTX = 256


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(config.embedded_model_path(), n_ctx=N_CTX)


def test_a_batch_past_the_full_window_is_a_kv_slot_error_that_keeps_the_prefix(
    engine: Engine,
) -> None:
    rng = random.Random(3)
    prompt = [rng.randrange(100, 40000) for _ in range(N_CTX - 4)]
    engine.reset()
    engine.prefill(prompt, batch_size=64)
    with pytest.raises(KvSlotError, match="context window is full"):
        engine._eval([rng.randrange(100, 40000) for _ in range(32)])  # 252 + 32 > 256
    assert engine.live_tokens == prompt  # the prefix survives: a fork can still reuse it
    # ... and the session goes on from it.
    assert engine.prefill([*prompt, 7, 8], batch_size=64) == len(prompt)


def test_a_prompt_longer_than_the_window_is_refused_before_llama_cpp(engine: Engine) -> None:
    engine.reset()
    with pytest.raises(KvSlotError, match=f"holds {N_CTX}"):
        engine.prefill(list(range(100, 100 + N_CTX + 1)), batch_size=64)
