"""Flash attention (``OPENCLAW_FLASH_ATTN``), off by default, on the real model.

Off, a warm turn is computed exactly as the same turn cold: a prompt prefilled in
one batch and the same prompt prefilled as a cached head plus a short tail give
the same logits. Flash attention's CPU kernels differ by batch shape, so on it they
do not; the first test pins both sides. Switching it changes the V cache's layout,
so saved KV of the other layout is not used (its own fingerprint directory).
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from openclaw_daemon.config import embedded_model_path
from openclaw_daemon.model.llama_engine import Engine
from tests.conftest import Cli, make_state_dir

pytestmark = pytest.mark.e2e


def _warm_equals_cold(engine: Engine) -> bool:
    rng = random.Random(7)
    ids = [rng.randrange(100, 40000) for _ in range(600)]

    def last() -> np.ndarray:
        pointer = llama_cpp.llama_get_logits_ith(engine.llama._ctx.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(engine.info.n_vocab,)).copy()

    engine.reset()
    engine.prefill(ids, batch_size=256)
    cold = last()
    engine.truncate(len(ids) - 20)  # a cached head, then a 20-token new message
    engine.prefill(ids, batch_size=256)
    return bool(np.array_equal(cold, last()))


def test_warm_equals_cold_without_flash_attention_only() -> None:
    plain = Engine(embedded_model_path(), n_ctx=1024)
    assert not plain.flash_attn and not plain.fingerprint()["flashAttn"]
    assert _warm_equals_cold(plain)
    del plain
    flash = Engine(embedded_model_path(), n_ctx=1024, flash_attn=True)
    assert flash.fingerprint()["flashAttn"]
    # If a llama.cpp update makes this equal, flash attention could be the default.
    assert not _warm_equals_cold(flash)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    root = make_state_dir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _kv_dirs(cli: Cli) -> set[Path]:
    return {p.parent for p in (cli.state_dir / "cache" / "kv").glob("*/*.kvc")}


def test_the_switch_answers_and_keeps_the_layouts_apart(state_dir: Path) -> None:
    notes = " ".join(f"Fact {i}: box {i} holds item {i * 3 % 11}." for i in range(30))
    off = Cli(state_dir, {})
    on = Cli(state_dir, {"OPENCLAW_FLASH_ATTN": "on"})
    try:
        off.turn(notes + " Say OK.", "--session-id", "fa", "--max-tokens", "4")
        off.run("daemon", "stop")
        dirs_off = _kv_dirs(off)
        assert dirs_off, "the plain layout saved nothing"
        envelope = on.turn("Which box holds item 3?", "--session-id", "fa", "--max-tokens", "8")
        assert envelope["payloads"][0]["text"].strip()
        assert envelope["meta"]["trace"]["cache"]["tier"] != "L3"  # not the other layout
        log = (state_dir / "logs" / "daemon.log").read_text()
        assert "flash attention on" in log
        on.run("daemon", "stop")
        assert _kv_dirs(on) - dirs_off, "flash attention's KV went into the plain layout's place"
        # Back to the default: the plain layout's saved session is found again.
        again = off.turn("Thanks.", "--session-id", "fa", "--max-tokens", "4")
        assert again["meta"]["trace"]["cache"]["tier"] == "L3"
    finally:
        off.stop()
