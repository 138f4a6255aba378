"""The persistent prefix cache, end to end: real CLI, real daemon, real embedded model.

Sessions that switch keep hitting (restored from RAM), a restart resumes from
disk, a corrupt blob is discarded and the turn still answers the same, and a
changed system prompt is reported at its token position.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from openclaw_daemon.observability.turn_record import prompt_tokens
from tests.conftest import Cli

pytestmark = pytest.mark.e2e


def notes(label: str, count: int = 40) -> str:
    """A short document (~300 tokens) unique to ``label``."""
    return " ".join(
        f"{label} fact {i}: item {i * 7 % 13} is stored in box {i}." for i in range(count)
    )


def turn(cli: Cli, message: str, session: str, *args: str) -> dict[str, Any]:
    return cli.turn(message, "--session-id", session, "--max-tokens", "4", *args)


def usage(envelope: dict[str, Any]) -> dict[str, int]:
    return envelope["meta"]["agentMeta"]["usage"]


def cache(envelope: dict[str, Any]) -> dict[str, Any]:
    return envelope["meta"]["trace"]["cache"]


def assert_hit(envelope: dict[str, Any]) -> None:
    use = usage(envelope)
    assert use["cacheRead"] >= 0.9 * prompt_tokens(use), (use, cache(envelope))


def cache_files(cli: Cli) -> list[Path]:
    return sorted((cli.state_dir / "cache" / "kv").glob("*/*.kvc"))


def test_two_sessions_alternating_keep_hitting_and_share_the_head(cli: Cli) -> None:
    first_a = turn(cli, notes("Alpha") + " Say OK.", "alpha")
    first_b = turn(cli, notes("Beta") + " Say OK.", "beta")
    # Beta's head (the system prompt) was computed by alpha's turn.
    assert cache(first_a)["tier"] == "none"
    head = cache(first_b)["cachedTokens"]
    assert head > 10 and cache(first_b)["divergence"]["segment"] == "new user message"
    assert cache(first_b)["divergence"]["cachedSession"] == "alpha"
    tiers = []
    for _ in range(2):
        for session in ("alpha", "beta"):
            envelope = turn(cli, "Next?", session)
            assert_hit(envelope)
            tiers.append(cache(envelope)["tier"])
    # Every switch restored the other session from RAM, not by re-prefilling.
    assert tiers == ["L2", "L2", "L2", "L2"]
    stats = json.loads(cli.run("cache", "stats", "--json").stdout)
    assert stats["running"] is True and stats["hitL2"] >= 4
    assert stats["ramEntries"] >= 2 and stats["discarded"] == 0


def parked_stats(cli: Cli, stored: int) -> dict[str, Any]:
    """Cache stats once ``stored`` snapshots have been parked (the idle job runs
    after the reply); fails after 30 s."""
    deadline = time.monotonic() + 30
    while True:
        stats = json.loads(cli.run("cache", "stats", "--json").stdout)
        if stats["stored"] >= stored:
            return stats
        assert time.monotonic() < deadline, stats
        time.sleep(0.1)


def test_a_long_new_session_parks_into_a_buffer_prepared_beside_its_prefill(cli: Cli) -> None:
    turn(cli, "Say OK.", "short")
    before = parked_stats(cli, 1)  # its park sized a token's state
    envelope = turn(cli, notes("Gamma", 170) + " Say OK.", "long")
    assert usage(envelope)["input"] - usage(envelope)["cacheRead"] >= 1024
    after = parked_stats(cli, 2)
    # The park mapped no fresh memory: it took the buffer faulted in beside the prefill.
    assert after["buffersPrepared"] == before["buffersPrepared"] + 1
    assert after["buffersAllocated"] == before["buffersAllocated"]
    assert after["ramEntries"] == 2
    assert_hit(turn(cli, "Next?", "long"))  # and the state parked in it restores


def test_restart_then_continue_hits_from_disk(cli: Cli) -> None:
    turn(cli, notes("Gamma") + " Say OK.", "gamma")
    cli.run("daemon", "restart", timeout=120)
    envelope = turn(cli, "Next?", "gamma")
    assert cache(envelope)["tier"] == "L3"
    assert_hit(envelope)
    spans = {s["name"]: s for s in envelope["meta"]["trace"]["spans"]}
    assert spans["cache.restore"]["tier"] == "L3"
    # The session's exact token ids were saved too, so the prompt is the
    # parked state plus the new message, and only the new message is prefilled.
    assert spans["session.load"]["tape"] == "saved"
    assert spans["model.prefill"]["tokens"] == usage(envelope)["input"]
    # Beyond the new fragment, only what the parked state never held: the
    # reply's last id when it hit --max-tokens, and the "<|im_end|>\n" trailer.
    assert usage(envelope)["input"] - spans["prompt.tokenize"]["tokens"] in (2, 3)
    assert "divergence" not in cache(envelope)


def test_corrupt_blob_is_discarded_and_the_turn_still_answers_the_same(cli: Cli) -> None:
    prime = notes("Delta") + " Which box holds item 3?"
    # Two sessions with identical transcripts: one answers after its cache
    # file was corrupted, the other from a cleared cache. Both prefill the
    # same prompt cold, so greedy decoding must give the same reply.
    turn(cli, prime, "delta-1")
    turn(cli, prime, "delta-2")
    cli.run("daemon", "stop")
    files = cache_files(cli)
    assert files, "the daemon parked nothing on disk"
    for path in files:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF  # inside the KV blob: the header still parses
        path.write_bytes(bytes(data))
    follow_up = ("-m", "And item 5?", "--max-tokens", "12", "--json")
    proc = cli.run("agent", "--local", "--session-id", "delta-1", *follow_up)
    envelope = json.loads(proc.stdout)
    notices = cache(envelope)["notices"]
    assert any("failed its checksum" in n for n in notices), notices
    assert "discarded a corrupt cache entry" in proc.stderr
    assert cache(envelope)["tier"] == "none"
    assert usage(envelope)["cacheRead"] == 0
    stats = json.loads(cli.run("cache", "stats", "--json").stdout)
    assert stats["discarded"] >= 1
    assert any("checksum" in p for p in stats["problems"])

    cli.run("cache", "clear")
    reference = json.loads(
        cli.run("agent", "--local", "--session-id", "delta-2", *follow_up).stdout
    )
    assert usage(reference)["cacheRead"] == 0
    assert envelope["payloads"][0]["text"].strip()
    assert envelope["payloads"][0]["text"] == reference["payloads"][0]["text"]


def test_changed_system_prompt_reports_the_divergence_position(cli: Cli) -> None:
    turn(cli, "Hello there.", "head")
    changed = turn(cli, "Hello again.", "head", "--system", "You are a pirate. Today is Monday.")
    report = cache(changed)
    divergence = report["divergence"]
    assert divergence["segment"] == "system message"
    assert divergence["messageIndex"] == 0
    assert divergence["cached"].startswith(" OpenClaw")
    assert divergence["prompt"].startswith(" a pirate")
    # The head is the tool definitions, then the system prompt: the definitions
    # ahead of the changed text are still reused.
    assert 500 < divergence["position"] == report["cachedTokens"] < report["promptTokens"] - 20
    assert usage(changed)["cacheRead"] == divergence["position"]
    doctor = cli.run("doctor", "--session-id", "head").stdout
    assert f"system message changed at token {divergence['position']}:" in doctor
    assert "move volatile content" in doctor
    doctor_json = json.loads(cli.run("doctor", "--json", "--last", "1").stdout)
    assert doctor_json["turns"][0]["cache"]["divergence"]["position"] == divergence["position"]


def test_cache_clear_budget_flags_and_memory_refusal(cli: Cli) -> None:
    refused = cli.run("daemon", "start", "--cache-ram", "100T", check=False, timeout=60)
    assert refused.returncode != 0
    assert "needs about" in refused.stderr and "--cache-ram" in refused.stderr
    bad = cli.run("daemon", "start", "--cache-disk", "lots", check=False)
    assert bad.returncode != 0 and "size like 512M" in bad.stderr
    cli.run("daemon", "start", "--cache-ram", "512M", "--cache-disk", "1G", timeout=120)
    pid = cli.status()["pid"]
    typo = cli.run("daemon", "restart", "--cache-ram", "banana", check=False)
    assert typo.returncode == 2 and "size like 512M" in typo.stderr
    assert cli.status()["pid"] == pid  # the running daemon was left alone
    status = cli.status()
    assert status["cache"]["ramBudget"] == 512 << 20
    assert status["cache"]["diskBudget"] == 1 << 30
    predicted = status["memoryPredicted"]
    # The parts add up to the peak; host + device is another split of it.
    split = ("peak", "host", "device")
    assert predicted["peak"] == sum(v for k, v in predicted.items() if k not in split)
    assert predicted["host"] + predicted["device"] == predicted["peak"]
    text = cli.run("daemon", "status").stdout
    assert "observed" in text and "predicted peak" in text
    turn(cli, "Hello.", "clear-me")
    turn(cli, "Bye.", "clear-other")
    cleared = json.loads(cli.run("cache", "clear", "--json").stdout)
    assert cleared["cleared"] >= 1
    assert cache_files(cli) == []
    stats = json.loads(cli.run("cache", "stats", "--json").stdout)
    assert stats["entries"] == 0 and stats["diskBytes"] == 0
