"""Prompt-lookup decoding on the real model: the same greedy ids as plain
decoding, drafts accepted where the reply quotes the prompt, and the switch
through the real CLI and daemon (``--prompt-lookup on|off``, the decode span's
draft counters). The drafting loop's own rules: tests/unit/test_prompt_lookup.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from openclaw_daemon.config import embedded_model_path
from openclaw_daemon.model.base import DecodeStats
from openclaw_daemon.model.llama_engine import Engine, SamplingParams
from tests.conftest import Cli

FILE = "\n".join(f"def step_{n}(value):\n    return value * {n} + {n + 1}\n" for n in range(1, 9))
QUOTE = f"Here is tools.py:\n\n{FILE}\nCopy tools.py exactly, starting with def step_1."
FREE = "Name three colours and say why the sky is blue."


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(embedded_model_path(), n_ctx=2048)


def prompt_ids(engine: Engine, message: str) -> list[int]:
    messages = [{"role": "user", "content": message}]
    text = engine.template.render(messages, add_generation_prompt=True)
    return engine.tokenize(text, add_bos=engine.add_bos, special=True)


def decode(engine: Engine, ids: list[int], *, lookup: bool) -> tuple[list[int], DecodeStats]:
    engine.reset()
    engine.prefill(ids, batch_size=256)
    stats = DecodeStats()
    params = SamplingParams(prompt_lookup=lookup)
    out = list(engine.generate(params, max_tokens=120, stats=stats))
    # The generate contract holds with drafts too: every id but the last is held.
    assert engine.live_tokens == ids + out[:-1]
    return out, stats


@pytest.mark.parametrize("message", [QUOTE, FREE], ids=["quote", "free"])
def test_the_same_greedy_ids_with_and_without_drafts(engine: Engine, message: str) -> None:
    ids = prompt_ids(engine, message)
    plain, plain_stats = decode(engine, ids, lookup=False)
    drafted, stats = decode(engine, ids, lookup=True)
    assert drafted == plain
    assert not plain_stats.lookup and plain_stats.drafted == 0
    assert stats.lookup
    if message == QUOTE:  # the reply copies the file: most drafts are right
        assert stats.accepted >= len(drafted) // 3
        assert stats.batches < len(drafted) * 0.75


def test_no_drafts_when_sampling_is_not_greedy(engine: Engine) -> None:
    ids = prompt_ids(engine, QUOTE)
    engine.reset()
    engine.prefill(ids, batch_size=256)
    stats = DecodeStats()
    params = SamplingParams(temperature=0.7, seed=3)
    assert len(list(engine.generate(params, max_tokens=8, stats=stats))) >= 1
    assert not stats.lookup and stats.drafted == 0


def decode_span(envelope: dict[str, Any]) -> dict[str, Any]:
    spans = envelope["meta"]["trace"]["spans"]
    return next(s for s in spans if s["name"] == "model.decode")


def test_the_cli_switch_and_the_trace(warm_cli: Cli) -> None:
    args = ("--max-tokens", "80")
    on = warm_cli.turn(QUOTE, "--session-id", "pl-on", *args)
    off = warm_cli.turn(QUOTE, "--session-id", "pl-off", *args, "--prompt-lookup", "off")
    assert on["payloads"][0]["text"] == off["payloads"][0]["text"]
    assert "def step_" in on["payloads"][0]["text"]
    span_on, span_off = decode_span(on), decode_span(off)
    assert span_on["draftAccepted"] > 0 and span_on["drafted"] >= span_on["draftAccepted"]
    assert span_on["draftBatches"] < span_on["tokens"]
    assert "drafted" not in span_off
    # The session goes on from the drafted reply: the tape spells the transcript.
    check = warm_cli.run("sessions", "check-tape", "pl-on", "--json")
    assert check.returncode == 0


def test_a_bad_switch_is_refused(warm_cli: Cli) -> None:
    proc = warm_cli.run("agent", "--local", "-m", "hi", "--prompt-lookup", "maybe", check=False)
    assert proc.returncode == 2
    assert "--prompt-lookup" in proc.stderr


def test_a_token_has_the_same_logits_alone_and_in_a_batch(engine: Engine) -> None:
    """What exact drafts rest on, past the 512 positions where llama.cpp's CPU
    flash attention would take another kernel for one token with an f16 V cache."""
    import llama_cpp
    import numpy as np

    ids = prompt_ids(engine, FILE * 6)
    assert len(ids) > 600
    follow = ids[100:106]
    rows = engine.info.n_vocab

    def logits(row: int) -> np.ndarray:
        pointer = llama_cpp.llama_get_logits_ith(engine.llama._ctx.ctx, row)
        return np.ctypeslib.as_array(pointer, shape=(rows,)).copy()

    engine.reset()
    engine.prefill(ids, batch_size=256)
    alone = []
    for token in follow:
        engine._eval([token])
        alone.append(logits(-1))
    engine.truncate(len(ids))
    engine._eval_rows(follow)
    assert all(np.array_equal(alone[i], logits(i)) for i in range(len(follow)))
