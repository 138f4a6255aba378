"""A cancel stops the prefill batch in flight, and the KV cache stays exact.

Real model (the embedded SmolLM2): the abort goes through llama.cpp's abort
callback, which only a real decode exercises.
"""

from __future__ import annotations

import random
import threading

import llama_cpp
import numpy as np
import pytest

from openclaw_daemon import config
from openclaw_daemon.model.llama_engine import Engine
from openclaw_daemon.wire.errors import CancelledError

BATCH = 512  # one batch: a cancel between batches could not stop it


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(config.embedded_model_path(), n_ctx=2048)


def last_logits(engine: Engine) -> np.ndarray:
    ctx = engine.llama._ctx.ctx
    logits = llama_cpp.llama_get_logits_ith(ctx, -1)
    return np.ctypeslib.as_array(logits, shape=(engine.llama.n_vocab(),)).copy()


def test_a_cancel_stops_the_batch_in_flight_and_keeps_the_cache_exact(engine: Engine) -> None:
    rng = random.Random(1)
    head = [rng.randrange(100, 40000) for _ in range(300)]
    tail = [rng.randrange(100, 40000) for _ in range(BATCH)]
    probe = [rng.randrange(100, 40000) for _ in range(8)]
    engine.reset()
    engine.prefill(head, batch_size=BATCH)
    assert len(engine.live_tokens) == len(head)

    checks = 0
    stop = threading.Event()

    def cancelled() -> bool:
        nonlocal checks
        checks += 1
        if checks > 1:  # the check before the batch passes; the first inside it stops it
            stop.set()
        return stop.is_set()

    with pytest.raises(CancelledError):
        engine.prefill(head + tail, batch_size=BATCH, cancelled=cancelled)
    # Stopped inside llama.cpp's decode of the one batch, not between batches.
    assert engine._aborted and checks >= 2
    assert len(engine.live_tokens) == len(head)
    assert engine.cached_prefix(head + tail) == len(head)

    # What follows is computed exactly as on a cache that never saw the batch.
    engine.prefill(head + probe, batch_size=BATCH)
    after_abort = last_logits(engine)
    engine.reset()
    engine.prefill(head + probe, batch_size=BATCH)
    np.testing.assert_array_equal(after_abort, last_logits(engine))


def test_no_cancel_no_abort(engine: Engine) -> None:
    rng = random.Random(2)
    tokens = [rng.randrange(100, 40000) for _ in range(200)]
    engine.reset()
    engine.prefill(tokens, batch_size=64, cancelled=lambda: False)
    assert len(engine.live_tokens) == len(tokens) and not engine._aborted
    assert engine._abort_when is None  # nothing left polling after the prefill


def test_decode_runs_without_the_abort_callback(engine: Engine) -> None:
    rng = random.Random(3)
    engine.reset()
    engine.prefill([rng.randrange(100, 40000) for _ in range(64)], batch_size=64)
    polled: list[int] = []
    # Were the callback still installed, llama.cpp would poll this at every graph node.
    engine._abort_when = lambda: polled.append(1) is None and False
    engine._eval([rng.randrange(100, 40000)])
    engine._abort_when = None
    assert polled == []
