"""Where ``openclaw agent`` reads its message (``-m``, ``-m -``, a piped stdin,
``--message-file``), ``--timeout 0`` and ``--thinking``, through the real CLI and
daemon. Bad input is a usage error (exit 2) that names the problem and starts no turn."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli

pytestmark = pytest.mark.e2e

ASK = "Reply with the word yes."


def _envelope_text(cli: Cli, *args: str, input: str | None = None) -> str:
    import json

    proc = cli.run("agent", "--json", "--max-tokens", "6", *args, input=input)
    return json.loads(proc.stdout)["payloads"][0]["text"]


def _user_turns(cli: Cli, session: str) -> list[str]:
    import json

    from openclaw_sessions.prompt import message_text

    shown = json.loads(cli.run("sessions", "show", session, "--json").stdout)
    messages = [e["message"] for e in shown["entries"] if e.get("type") == "message"]
    return [message_text(m) for m in messages if m.get("role") == "user"]


def test_stdin_dash_and_a_file_give_the_same_turn_as_m(warm_cli: Cli, tmp_path: Path) -> None:
    plain = _envelope_text(warm_cli, "--session-id", "in-m", "-m", ASK)
    piped = _envelope_text(warm_cli, "--session-id", "in-pipe", input=ASK)
    dash = _envelope_text(warm_cli, "--session-id", "in-dash", "-m", "-", input=ASK)
    message = tmp_path / "task.md"
    message.write_text(ASK, encoding="utf-8")
    filed = _envelope_text(warm_cli, "--session-id", "in-file", "--message-file", str(message))
    assert plain.strip() and plain == piped == dash == filed
    for session in ("in-pipe", "in-dash", "in-file"):
        assert _user_turns(warm_cli, session) == [ASK]
    # A multi-line message keeps its lines.
    lines = "First line.\nSecond line.\nReply OK."
    _envelope_text(warm_cli, "--session-id", "in-lines", input=lines)
    assert _user_turns(warm_cli, "in-lines") == [lines]


def test_bad_message_sources_are_usage_errors(warm_cli: Cli, tmp_path: Path) -> None:
    not_utf8 = tmp_path / "bad.txt"
    not_utf8.write_bytes(b"caf\xe9")
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * ((4 << 20) + 1))
    cases = {
        ("--message-file", str(not_utf8)): "not UTF-8",
        ("--message-file", str(big)): "4 MiB",
        ("--message-file", str(tmp_path / "missing.md")): "No such file",
        ("-m", "hi", "--message-file", str(not_utf8)): "not allowed with",
        (): "give the message",  # nothing piped and no -m
        ("--thinking", "deep", "-m", "hi"): "--thinking",
        ("--timeout", "-1", "-m", "hi"): "--timeout",
    }
    for args, expected in cases.items():
        proc = warm_cli.run("agent", "--session-id", "in-bad", *args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert expected in proc.stderr, (args, proc.stderr)
    listed = warm_cli.run("sessions", "list", "--json").stdout
    assert "in-bad" not in listed  # no turn started, no session made


def test_timeout_zero_is_no_deadline_and_thinking_is_noted(warm_cli: Cli) -> None:
    proc = warm_cli.run(
        "agent", "--session-id", "in-flags", "-m", ASK, "--max-tokens", "6",
        "--timeout", "0", "--thinking", "medium",
    )  # fmt: skip
    assert proc.stdout.strip()
    assert "--thinking medium: ignored" in proc.stderr
    quiet = warm_cli.run("agent", "--session-id", "in-flags", "-m", ASK, "--max-tokens", "4")
    assert "--thinking" not in quiet.stderr
