"""Prompt-lookup decoding on the real model, through the engine and through the
real CLI and daemon (``--prompt-lookup auto|on|off``, the decode span's counters).

A draft is verified in one batch. Stock llama.cpp sums a batch's rows differently
from one token's; the build scripts/setup installs (scripts/llama_build.py) sends
batches of up to a draft's size to the one-token kernels, so a draft's rows are
single steps, bit for bit (the last tests pin that), and drafted replies are plain
decoding's, copied file or free text. The engine probes that at load
(``drafts_exact``), and ``auto``, the default, drafts where it holds. The drafting
loop's own rules, on a scripted model: tests/unit/test_prompt_lookup.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openclaw_daemon.config import embedded_model_path
from openclaw_daemon.model.base import DecodeStats
from openclaw_daemon.model.llama_engine import Engine, SamplingParams
from openclaw_daemon.model.prompt_lookup import MAX_DRAFT
from tests.conftest import Cli

FILE = "\n".join(f"def step_{n}(value):\n    return value * {n} + {n + 1}\n" for n in range(1, 5))
QUOTE = f"Here is tools.py:\n\n{FILE}\nCopy tools.py exactly, starting with def step_1."
FREE = "Name three colours and say why the sky is blue."


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(embedded_model_path(), n_ctx=2048)


def prompt_ids(engine: Engine, message: str) -> list[int]:
    messages = [{"role": "user", "content": message}]
    text = engine.template.render(messages, add_generation_prompt=True)
    return engine.tokenize(text, add_bos=engine.add_bos, special=True)


def decode(engine: Engine, ids: list[int], *, lookup: bool | None) -> tuple[list[int], DecodeStats]:
    engine.reset()
    engine.prefill(ids, batch_size=256)
    stats = DecodeStats()
    params = SamplingParams(prompt_lookup=lookup)
    out = list(engine.generate(params, max_tokens=96, stats=stats))
    # The generate contract holds with drafts too: every id but the last is held.
    assert engine.live_tokens == ids + out[:-1]
    return out, stats


def test_a_copied_file_comes_out_the_same_with_and_without_drafts(engine: Engine) -> None:
    ids = prompt_ids(engine, QUOTE)
    plain, plain_stats = decode(engine, ids, lookup=False)
    drafted, stats = decode(engine, ids, lookup=True)
    assert drafted == plain
    assert not plain_stats.lookup and plain_stats.drafted == 0
    assert stats.lookup  # the reply copies the file: most drafts are right
    assert stats.accepted >= len(drafted) // 3
    assert stats.batches < len(drafted) * 0.75


def test_free_text_comes_out_the_same_with_and_without_drafts(engine: Engine) -> None:
    """Free text drafts little, and where a draft is tried at a near-tie the batch
    row still picks what a single step picks."""
    ids = prompt_ids(engine, FREE + " Then list them again, in the same words.")
    plain, _ = decode(engine, ids, lookup=False)
    drafted, stats = decode(engine, ids, lookup=True)
    assert stats.lookup and stats.exact and stats.drafted > 0
    assert drafted == plain
    assert stats.accepted <= stats.drafted


def test_the_default_drafts_where_the_probe_found_them_exact(engine: Engine) -> None:
    assert engine.info.drafts_exact and engine.info.drafts_by_default  # setup's build
    ids = prompt_ids(engine, QUOTE)
    engine.reset()
    engine.prefill(ids, batch_size=256)
    stats = DecodeStats()
    out = list(engine.generate(SamplingParams(), max_tokens=24, stats=stats))
    assert out and stats.lookup and stats.exact and stats.accepted > 0


def test_no_drafts_when_sampling_is_not_greedy(engine: Engine) -> None:
    ids = prompt_ids(engine, QUOTE)
    engine.reset()
    engine.prefill(ids, batch_size=256)
    stats = DecodeStats()
    params = SamplingParams(temperature=0.7, seed=3)
    assert len(list(engine.generate(params, max_tokens=8, stats=stats))) >= 1
    assert not stats.lookup and stats.drafted == 0


def test_where_the_probe_fails_the_default_does_not_draft(gemma_gguf: Path) -> None:
    """Gemma 3's Q4_K weights are repacked for the CPU, with a one-row and a many-row
    kernel of their own: the probe finds its drafts inexact, so auto leaves them
    off, and asking for them still works (inexactly)."""
    gemma = Engine(gemma_gguf, n_ctx=1024)
    assert not gemma.info.drafts_exact and not gemma.info.drafts_by_default
    ids = prompt_ids(gemma, QUOTE)
    _, auto = decode(gemma, ids, lookup=None)
    _, asked = decode(gemma, ids, lookup=True)
    assert not auto.lookup and auto.drafted == 0
    assert asked.lookup and not asked.exact and asked.drafted > 0


def test_with_several_sequences_auto_leaves_drafts_off() -> None:
    parallel = Engine(embedded_model_path(), n_ctx=1024, parallel=2)
    assert parallel.info.drafts_exact and not parallel.info.drafts_by_default


def decode_span(envelope: dict[str, Any]) -> dict[str, Any]:
    spans = envelope["meta"]["trace"]["spans"]
    return next(s for s in spans if s["name"] == "model.decode")


def test_the_cli_switch_and_the_trace(warm_cli: Cli) -> None:
    args = ("--max-tokens", "80")
    on = warm_cli.turn(QUOTE, "--session-id", "pl-on", *args, "--prompt-lookup", "on")
    auto = warm_cli.turn(QUOTE, "--session-id", "pl-default", *args)
    off = warm_cli.turn(QUOTE, "--session-id", "pl-off", *args, "--prompt-lookup", "off")
    span_on, span_auto, span_off = decode_span(on), decode_span(auto), decode_span(off)
    assert on["payloads"][0]["text"].strip()
    assert span_on["draftAccepted"] > 0 and span_on["drafted"] >= span_on["draftAccepted"]
    assert span_on["draftBatches"] < span_on["tokens"]
    assert span_on["draftsExact"] is True
    assert span_auto["draftAccepted"] > 0  # on by default: the daemon's drafts are exact
    assert "drafted" not in span_off
    # Lossless: the same reply, drafted or not.
    assert on["payloads"][0]["text"] == auto["payloads"][0]["text"] == off["payloads"][0]["text"]
    status = json.loads(warm_cli.run("daemon", "status", "--json").stdout)
    assert status["promptLookup"] == {"draftsExact": True, "byDefault": True}
    human = warm_cli.run("daemon", "status").stdout
    assert "prompt lookup" in human and "on by default" in human
    # The session goes on from the drafted reply: the tape spells the transcript.
    check = warm_cli.run("sessions", "check-tape", "pl-on", "--json")
    assert check.returncode == 0
    follow = warm_cli.turn("Thanks.", "--session-id", "pl-on", "--max-tokens", "8")
    usage = follow["meta"]["agentMeta"]["usage"]
    assert usage["cacheRead"] >= 0.9 * (usage["total"] - usage["output"])  # still a hit


def test_a_bad_switch_is_refused(warm_cli: Cli) -> None:
    proc = warm_cli.run("agent", "--local", "-m", "hi", "--prompt-lookup", "maybe", check=False)
    assert proc.returncode == 2
    assert "--prompt-lookup" in proc.stderr


def test_a_draft_batch_gives_single_steps_sums_and_a_prefill_batch_does_not(
    engine: Engine,
) -> None:
    """What makes drafts lossless, at a short context and a long one: up to a
    whole draft (MAX_DRAFT + 1 rows) a batch's logits are the single steps' bit for
    bit. A prefill-sized batch still goes through tinyBLAS (prefill speed), which
    adds in another order: if that ever comes out equal, the patch is not what
    decides, and scripts/llama_build.py should say why."""
    import llama_cpp
    import numpy as np

    rows = engine.info.n_vocab

    def logits(row: int) -> np.ndarray:
        pointer = llama_cpp.llama_get_logits_ith(engine.llama._ctx.ctx, row)
        return np.ctypeslib.as_array(pointer, shape=(rows,)).copy()

    def same_alone_and_batched(ids: list[int], follow: list[int]) -> bool:
        engine.reset()
        engine.prefill(ids, batch_size=256)
        alone = []
        for token in follow:
            engine._eval([token])
            alone.append(logits(-1))
        engine.truncate(len(ids))
        engine._eval(follow, all_logits=True)
        return all(np.array_equal(alone[i], logits(i)) for i in range(len(follow)))

    short, long = prompt_ids(engine, FILE), prompt_ids(engine, FILE * 12)
    assert len(short) < 200 and len(long) > 700
    draft = MAX_DRAFT + 1
    assert same_alone_and_batched(short, short[10 : 10 + draft])
    assert same_alone_and_batched(long, long[10 : 10 + draft])
    assert same_alone_and_batched(long, long[10:12])
    assert not same_alone_and_batched(long, long[10 : 10 + draft + 1])
