"""Session lifecycle through the real CLI and daemon: the listing (bare ``openclaw
sessions``, ``--limit``, ``--active``, ``--all-agents``, OpenClaw's JSON fields),
``--session-key``, ``sessions reset``, ``delete`` and ``export``. Nothing is lost:
a reset keeps the old transcript, a delete renames it aside."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli

pytestmark = pytest.mark.e2e


def _turn(cli: Cli, message: str, *args: str) -> dict[str, Any]:
    return cli.turn(message, "--max-tokens", "4", *args)


def _listing(cli: Cli, *args: str) -> dict[str, Any]:
    return json.loads(cli.run("sessions", *args, "--json").stdout)


def _sessions_dir(cli: Cli, agent: str = "main") -> Path:
    return cli.state_dir / "agents" / agent / "sessions"


def test_the_listing_has_openclaws_fields_and_filters(warm_cli: Cli) -> None:
    for name in ("lc-a", "lc-b", "lc-c"):
        _turn(warm_cli, "Say hi.", "--session-id", name)
    _turn(warm_cli, "Say hi.", "--agent", "ops", "--session-id", "lc-ops")
    bare = warm_cli.run("sessions")  # bare `openclaw sessions` lists, as OpenClaw's
    assert "lc-a" in bare.stdout and "agent:main:explicit:lc-c" in bare.stdout
    every = _listing(warm_cli)
    assert every["path"] == str(_sessions_dir(warm_cli) / "sessions.json")
    assert every["count"] == every["totalCount"] >= 3 and every["hasMore"] is False
    newest = every["sessions"][0]
    assert newest["sessionId"] == "lc-c" and newest["agentId"] == "main"
    assert 0 <= newest["ageMs"] < 600_000
    one = _listing(warm_cli, "--limit", "1")
    assert one["count"] == 1 and one["hasMore"] is True and one["limitApplied"] == 1
    assert one["sessions"][0]["sessionId"] == "lc-c"
    assert _listing(warm_cli, "list", "--active", "60")["totalCount"] == every["totalCount"]
    both = _listing(warm_cli, "--all-agents")
    assert both["path"] is None and {s["agentId"] for s in both["sessions"]} == {"main", "ops"}
    assert {s["agentId"] for s in both["stores"]} == {"main", "ops"}
    bad = warm_cli.run("sessions", "--limit", "none", check=False)
    assert bad.returncode == 2 and "--limit" in bad.stderr


def test_a_session_key_names_one_session_across_agents_flags(warm_cli: Cli) -> None:
    first = _turn(warm_cli, "Remember: the code is 41.", "--session-key", "agent:main:deploy")
    second = _turn(warm_cli, "And again.", "--session-key", "deploy")  # scoped to --agent main
    meta = first["meta"]["agentMeta"], second["meta"]["agentMeta"]
    assert meta[0]["sessionId"] == meta[1]["sessionId"]
    keys = {s["key"]: s for s in _listing(warm_cli)["sessions"]}
    assert keys["agent:main:deploy"]["sessionId"] == meta[0]["sessionId"]
    mismatch = warm_cli.run(
        "agent", "-m", "hi", "--agent", "ops", "--session-key", "agent:main:deploy", check=False
    )
    assert mismatch.returncode == 2 and "belongs to agent main" in mismatch.stderr
    both = warm_cli.run(
        "agent", "-m", "hi", "--session-id", "x", "--session-key", "deploy", check=False
    )
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_reset_starts_anew_under_the_key_and_keeps_the_transcript(warm_cli: Cli) -> None:
    _turn(warm_cli, "Hello there.", "--session-id", "lc-reset")
    old_file = _sessions_dir(warm_cli) / "lc-reset.jsonl"
    old_bytes = old_file.read_bytes()
    reset = json.loads(warm_cli.run("sessions", "reset", "lc-reset", "--json").stdout)
    assert reset["previousSessionId"] == "lc-reset" and reset["sessionId"] != "lc-reset"
    assert old_file.read_bytes() == old_bytes  # kept, untouched
    after = _turn(warm_cli, "Who are you?", "--session-id", "lc-reset")
    assert after["meta"]["agentMeta"]["sessionId"] == reset["sessionId"]
    shown = json.loads(warm_cli.run("sessions", "show", "lc-reset", "--json").stdout)
    users = [e for e in shown["entries"] if e.get("message", {}).get("role") == "user"]
    assert len(users) == 1  # the new session holds only the turn after the reset
    row = next(s for s in _listing(warm_cli)["sessions"] if s["key"].endswith(":lc-reset"))
    assert row["sessionId"] == reset["sessionId"] and row.get("previousSessionId") == "lc-reset"


def test_export_and_delete(warm_cli: Cli, tmp_path: Path) -> None:
    _turn(warm_cli, "Name a colour.", "--session-id", "lc-export")
    stored = (_sessions_dir(warm_cli) / "lc-export.jsonl").read_bytes()
    assert warm_cli.run("sessions", "export", "lc-export").stdout.encode() == stored
    markdown = warm_cli.run("sessions", "export", "lc-export", "--format", "md").stdout
    assert "## User" in markdown and "Name a colour." in markdown and "## Assistant" in markdown
    out = tmp_path / "s.md"
    warm_cli.run("sessions", "export", "lc-export", "--format", "md", "-o", str(out))
    assert out.read_text() == markdown
    bad = warm_cli.run("sessions", "export", "lc-export", "--format", "pdf", check=False)
    assert bad.returncode == 2 and "--format" in bad.stderr

    gone = json.loads(warm_cli.run("sessions", "delete", "lc-export", "--json").stdout)
    moved = Path(gone["movedTo"])
    assert moved.read_bytes() == stored and ".deleted." in moved.name
    assert all(s["sessionId"] != "lc-export" for s in _listing(warm_cli)["sessions"])
    again = warm_cli.run("sessions", "delete", "lc-export", check=False)
    assert again.returncode != 0 and "no session" in again.stderr
    # The id is free again: a new turn starts an empty session.
    fresh = _turn(warm_cli, "Hi.", "--session-id", "lc-export")
    assert fresh["meta"]["agentMeta"]["sessionId"] == "lc-export"


def test_dash_h_works_everywhere(warm_cli: Cli) -> None:
    for args in (("-h",), ("sessions", "-h"), ("sessions", "export", "-h"), ("daemon", "-h")):
        proc = warm_cli.run(*args)
        assert "Usage" in proc.stdout, args
