"""Cache files that defeat the checks, OpenClaw's usage buckets, and ``--json`` failures.

Real CLI, real daemon, real embedded model: a FIFO or symlink among the cache
files must not hang or fool start-up; a file whose header lies about its
cells is discarded and the turn answers as it would cold; every kind of
damaged L3 file is detected (``tests/l3_corruption.py``); usage counts each
prompt token in exactly one of ``input``/``cacheRead``/``cacheWrite``; and
every ``--json`` failure prints one JSON document on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from openclaw_daemon.cache import kv_files
from tests import l3_corruption
from tests.conftest import OPENCLAW, Cli, transcript

pytestmark = pytest.mark.e2e


def _cache_dir(cli: Cli) -> Path:
    return Path(json.loads(cli.run("cache", "stats", "--json").stdout)["dir"])


def _stats(cli: Cli) -> dict[str, Any]:
    return json.loads(cli.run("cache", "stats", "--json").stdout)


def _prime(label: str) -> str:
    return " ".join(f"{label} fact {i}: item {i * 7 % 13} is in box {i}." for i in range(30))


def test_a_fifo_or_symlink_in_the_cache_dir_is_discarded_not_opened(cli: Cli) -> None:
    cli.run("daemon", "start", timeout=_SLOW)
    cache_dir = _cache_dir(cli)
    cli.run("daemon", "stop")
    fifo = cache_dir / f"{'f' * 32}{kv_files.SUFFIX}"
    os.mkfifo(fifo)
    target = cli.state_dir / "elsewhere.bin"
    target.write_bytes(b"OCKV" + b"\0" * 64)
    link = cache_dir / f"{'e' * 32}{kv_files.SUFFIX}"
    link.symlink_to(target)
    # Before the fix, open() on the FIFO blocked the daemon's start-up forever.
    proc = subprocess.Popen(
        [str(OPENCLAW), "daemon", "start"], env=cli.env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        with open(fifo, "wb", buffering=0) as unblock:  # let the stuck daemon go
            unblock.write(b"x")
        pytest.fail("daemon start hung on a FIFO in the cache dir")
    assert proc.returncode == 0
    stats = _stats(cli)
    assert stats["discarded"] == 2, stats
    assert any("not a regular file" in p for p in stats["problems"]), stats["problems"]
    assert not fifo.exists() and not link.is_symlink()
    assert target.exists()  # the link's target is not ours to delete
    envelope = cli.turn("Say hi", "--max-tokens", "3", timeout=_SLOW)
    assert envelope["payloads"][0]["text"].strip()


# A shared 2-core machine can be slow: generous timeouts, nothing asserted on time.
_SLOW = 600


def _turn(cli: Cli, session: str, message: str, max_tokens: int = 4) -> dict[str, Any]:
    args = ("--session-id", session, "--max-tokens", str(max_tokens))
    return cli.turn(message, *args, timeout=_SLOW)


def _read(path: Path) -> tuple[dict[str, Any], tuple[int, ...], bytes]:
    return l3_corruption._parts(path)


def test_a_header_that_lies_about_its_cells_is_discarded_and_the_turn_answers_as_cold(
    cli: Cli,
) -> None:
    prime = _prime("Lie") + " Which box holds item 3?"
    for session in ("lie-1", "lie-2"):
        _turn(cli, session, prime)
    cli.run("daemon", "stop")
    first = {path: _read(path) for path in sorted(_cache_dir_files(cli))}
    for session in ("lie-1", "lie-2"):
        _turn(cli, session, "Next?")
    cli.run("daemon", "stop")
    texts = [
        [e["message"]["content"] for e in transcript(_session_file(cli, s)) if _is_reply(e)]
        for s in ("lie-1", "lie-2")
    ]
    assert texts[0] == texts[1], "the twin sessions diverged before the test began"
    lied = 0
    for path in sorted(_cache_dir_files(cli)):
        header, tokens, _ = _read(path)
        shorter = [b for t, b in ((t, b) for _, t, b in first.values()) if len(t) < len(tokens)]
        if shorter:
            # The header lists every token; the blob holds fewer cells. The crc is consistent.
            kv_files.write_blob(path, header["fingerprint"], tokens, shorter[0])
            lied += 1
    assert lied, "no later cache file to make lie"
    follow_up = ("-m", "And item 5?", "--max-tokens", "8", "--json")
    proc = cli.run("agent", "--local", "--session-id", "lie-1", *follow_up, timeout=_SLOW)
    envelope = json.loads(proc.stdout)
    assert "discarded" in proc.stderr, proc.stderr
    notices = envelope["meta"]["trace"]["cache"].get("notices", [])
    assert any("cells" in n for n in notices), notices
    stats = _stats(cli)
    assert stats["discarded"] >= 1 and any("cells" in p for p in stats["problems"])
    # A second turn in the same session works (before the fix every one failed).
    again = cli.run(
        "agent", "--local", "--session-id", "lie-1", "-m", "Thanks.", "--json",
        "--max-tokens", "4", timeout=_SLOW,
    )  # fmt: skip
    assert json.loads(again.stdout)["payloads"][0]["text"].strip()

    cli.run("cache", "clear")
    reference = json.loads(cli.run("agent", "--local", "--session-id", "lie-2", *follow_up).stdout)
    assert envelope["payloads"][0]["text"].strip()
    assert envelope["payloads"][0]["text"] == reference["payloads"][0]["text"]


def _cache_dir_files(cli: Cli) -> list[Path]:
    return sorted((cli.state_dir / "cache" / "kv").glob(f"*/*{kv_files.SUFFIX}"))


def _session_file(cli: Cli, session: str) -> Path:
    listing = json.loads(cli.run("sessions", "show", session, "--json").stdout)
    return Path(listing["sessionFile"]) if "sessionFile" in listing else Path(listing["file"])


def _is_reply(entry: dict[str, Any]) -> bool:
    return entry.get("type") == "message" and entry["message"].get("role") == "assistant"


def test_every_kind_of_damaged_l3_file_is_detected_discarded_and_the_turn_is_right() -> None:
    import shutil
    import tempfile

    state_dir = Path(tempfile.mkdtemp(prefix="oc-", dir="/tmp"))
    try:
        result = l3_corruption.run(state_dir)
    finally:
        Cli(state_dir, {}).stop()
        shutil.rmtree(state_dir, ignore_errors=True)
    summary = {k: result[k] for k in ("files", "detected", "discarded", "turns", "turns_correct")}
    assert result["files"] >= len(l3_corruption.KINDS), result
    assert result["detected"] == result["files"], (summary, result["problems"])
    assert result["discarded"] == result["files"], summary
    assert result["turns_correct"] == result["turns"], result


def test_usage_counts_each_prompt_token_in_one_bucket(cli: Cli) -> None:
    first = _turn(cli, "use", _prime("Usage") + " Say OK.")
    second = _turn(cli, "use", "Next?")
    for envelope in (first, second):
        use = envelope["meta"]["agentMeta"]["usage"]
        prompt = use["total"] - use["output"]
        assert use["input"] + use["cacheRead"] + use["cacheWrite"] == prompt, use
        spans = {s["name"]: s for s in envelope["meta"]["trace"]["spans"]}
        assert use["input"] == spans["model.prefill"]["tokens"], use
    use = second["meta"]["agentMeta"]["usage"]
    assert use["cacheRead"] > 5 * use["input"], use  # a warm turn: mostly cached
    # The transcript (what OpenClaw's tools read) carries the same buckets.
    path = Path(second["meta"]["agentMeta"]["sessionFile"])
    stored = [e["message"]["usage"] for e in transcript(path) if _is_reply(e)][-1]
    assert stored["input"] == use["input"] and stored["cacheRead"] == use["cacheRead"]
    assert stored["totalTokens"] == use["total"]


def _one_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout.strip(), f"empty stdout with --json (stderr: {proc.stderr})"
    return json.loads(proc.stdout)  # exactly one document: json.loads refuses extra data


def test_json_usage_and_setup_errors_print_one_ok_false_document(cli: Cli, tmp_path: Path) -> None:
    cases = [
        (("agent", "-m", "hi", "--json", "--bogus-flag"), 2),
        (("agent", "-m", "hi", "--json", "--max-tokens", "zero"), 2),
        (("agent", "-m", "   ", "--json"), 2),
        (("agent", "-m", "hi", "--json", "--model", str(tmp_path / "nope.gguf")), 1),
        (("sessions", "show", "missing", "--json"), None),
        (("trace", "show", "missing", "--json"), None),
        (("sessions", "list", "--json", "--bogus-flag"), 2),
        (("trace", "list", "--json", "--limit", "many"), 2),
    ]
    for args, code in cases:
        proc = cli.run(*args, check=False)
        assert proc.returncode != 0, (args, proc.stdout)
        if code is not None:
            assert proc.returncode == code, (args, proc.returncode, proc.stderr)
        doc = _one_json(proc)
        assert doc["ok"] is False, (args, doc)
        assert doc["error"]["type"] and doc["error"]["message"], (args, doc)
        assert proc.stderr.strip(), args  # the human-readable error stays on stderr
    assert not (cli.state_dir / "run" / "daemon.json").exists()


def test_a_failed_turn_prints_openclaws_failure_envelope(cli: Cli) -> None:
    started = time.monotonic()
    proc = cli.run(
        "agent", "--local", "-m", "Count to one thousand.", "--json", "--session-id", "fail",
        "--max-tokens", "400", "--timeout", "1", check=False,
    )  # fmt: skip
    assert time.monotonic() - started < 120
    assert proc.returncode == 124
    doc = _one_json(proc)
    meta = doc["meta"]
    assert meta["aborted"] is True and meta["stopReason"] == "timeout"
    assert meta["error"]["message"]
