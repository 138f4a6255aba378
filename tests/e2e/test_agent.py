"""End to end: the real ``openclaw`` CLI, the real daemon, the embedded model."""

from __future__ import annotations

import json
import subprocess
import threading

from openclaw_daemon.observability.turn_record import prompt_tokens
from tests.conftest import Cli, transcript

pytestmark = [__import__("pytest").mark.e2e]


def test_first_turn_starts_the_daemon_and_streams_a_reply(cli: Cli) -> None:
    proc = cli.run("agent", "--local", "-m", "Say hello in five words", "--max-tokens", "24")
    assert proc.stdout.strip(), "the reply should be printed to stdout"
    assert proc.stdout.endswith("\n")
    status = cli.status()
    assert status["running"] is True
    assert status["model"] and status["nCtx"] == 8192 and status["rssBytes"] > 50 * 2**20
    run_dir = cli.state_dir / "run"
    assert oct(run_dir.stat().st_mode & 0o777) == "0o700"
    assert oct((run_dir / "daemon.sock").stat().st_mode & 0o777) == "0o600"


def test_second_turn_reuses_the_kv_cache_and_is_much_faster(warm_cli: Cli) -> None:
    first = warm_cli.turn("My name is Ada. " * 40 + "What is my name?", "--session-id", "multi")
    second = warm_cli.turn("Thanks. Answer in one word: my name?", "--session-id", "multi")
    u1, u2 = first["meta"]["agentMeta"]["usage"], second["meta"]["agentMeta"]["usage"]
    assert u1["cacheRead"] < prompt_tokens(u1) * 0.5  # a new session: mostly prefilled
    # the prompt carries the history
    assert prompt_tokens(u2) > prompt_tokens(u1) + u1["output"]
    assert u2["cacheRead"] >= 0.9 * prompt_tokens(u2)
    # OpenClaw's buckets: each prompt token in one of them (docs/usage.md).
    assert u2["input"] == prompt_tokens(u2) - u2["cacheRead"] and u2["cacheWrite"] == 0

    def prefill_ms(envelope: dict) -> float:
        spans = envelope["meta"]["trace"]["spans"]
        return next(s["durationMs"] for s in spans if s["name"] == "model.prefill")

    assert prefill_ms(second) < prefill_ms(first) / 3
    entries = transcript(second["meta"]["agentMeta"]["sessionFile"])
    messages = [e for e in entries if e["type"] == "message"]
    assert [m["message"]["role"] for m in messages] == ["user", "assistant"] * 2
    assert messages[0]["parentId"] is None
    assert all(m["parentId"] == p["id"] for p, m in zip(messages, messages[1:], strict=False))
    assert messages[3]["message"]["usage"]["cacheRead"] == u2["cacheRead"]
    assert messages[3]["message"]["content"][0]["text"] == second["payloads"][0]["text"]


def test_json_envelope_has_openclaw_fields_and_trace(warm_cli: Cli) -> None:
    envelope = warm_cli.turn("Reply with OK.", "--max-tokens", "8")
    assert envelope["payloads"][0]["text"].strip()
    assert envelope["payloads"][0]["mediaUrl"] is None
    meta = envelope["meta"]
    assert meta["durationMs"] > 0
    agent = meta["agentMeta"]
    assert agent["sessionKey"] == "agent:main:main"
    assert agent["provider"] == "openclaw-edge" and agent["model"]
    assert set(agent["usage"]) == {"input", "output", "cacheRead", "cacheWrite", "total"}
    use = agent["usage"]
    assert use["total"] == use["input"] + use["cacheRead"] + use["cacheWrite"] + use["output"]
    assert 1 <= agent["usage"]["output"] <= 8
    names = [s["name"] for s in meta["trace"]["spans"]]
    for phase in (
        "cli.boot",
        "cli.connect",
        "lane.wait",
        "session.load",
        "prompt.render",
        "prompt.tokenize",
        "cache.lookup",
        "model.prefill",
        "model.decode",
        "session.persist",
        "cli.render",
    ):
        assert phase in names
    spans = meta["trace"]["spans"]
    assert all(s["durationMs"] >= 0 for s in spans)
    assert [s["startMs"] for s in spans] == sorted(s["startMs"] for s in spans)
    assert meta["trace"]["ttftMs"] <= meta["trace"]["wallMs"]


def test_plain_output_is_the_reply_only(warm_cli: Cli) -> None:
    proc = warm_cli.run("agent", "-m", "Say yes.", "--max-tokens", "6", "--session-id", "plain")
    envelope = warm_cli.run("sessions", "show", "plain", "--json")
    entries = json.loads(envelope.stdout)["entries"]
    reply = entries[-1]["message"]["content"][0]["text"]
    assert proc.stdout == reply + "\n"
    assert proc.stderr == ""


def test_stop_string_and_max_tokens_are_honoured(warm_cli: Cli) -> None:
    envelope = warm_cli.turn(
        "Count from 1 to 20, separated by spaces.", "--session-id", "count", "--stop", "5"
    )
    text = envelope["payloads"][0]["text"]
    assert "5" not in text and envelope["meta"]["stopReason"] == "stop"
    limited = warm_cli.turn(
        "Write a long story about a cat.", "--max-tokens", "3", "--session-id", "limit"
    )
    assert limited["meta"]["agentMeta"]["usage"]["output"] == 3
    assert limited["meta"]["stopReason"] == "length"


def test_concurrent_turns_on_two_sessions_both_complete(warm_cli: Cli) -> None:
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def run(session: str) -> None:
        results[session] = warm_cli.run(
            "agent",
            "-m",
            f"Say the word {session}.",
            "--session-id",
            session,
            "--json",
            "--max-tokens",
            "12",
            check=False,
        )

    threads = [threading.Thread(target=run, args=(s,)) for s in ("alpha", "beta")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for session in ("alpha", "beta"):
        proc = results[session]
        assert proc.returncode == 0, proc.stderr
        envelope = json.loads(proc.stdout)
        assert envelope["meta"]["agentMeta"]["sessionId"] == session
        entries = transcript(envelope["meta"]["agentMeta"]["sessionFile"])
        users = [
            e["message"]["content"][0]["text"]
            for e in entries
            if e.get("type") == "message" and e["message"]["role"] == "user"
        ]
        assert users == [f"Say the word {session}."]


def test_sessions_list_and_show(warm_cli: Cli) -> None:
    warm_cli.turn("Hi there.", "--session-id", "listed", "--max-tokens", "4")
    listing = json.loads(warm_cli.run("sessions", "list", "--json").stdout)
    ids = [s["sessionId"] for s in listing["sessions"]]
    assert "listed" in ids
    shown = warm_cli.run("sessions", "show", "listed").stdout
    assert "user: Hi there." in shown and "assistant:" in shown
    missing = warm_cli.run("sessions", "show", "nope", check=False)
    assert missing.returncode == 1 and "no session 'nope'" in missing.stderr
