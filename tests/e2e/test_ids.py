"""Agent and session ids from the CLI and from raw clients never leave ``agents/``.

Real CLI, real daemon, real model: a bad id is a usage error (exit 2, one line)
before anything is created, ``--agent OPS`` is the agent ``ops``, and a raw
client sending a path as an id gets a ``bad_request`` frame naming the field.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from openclaw_daemon.wire import frames as protocol
from tests.conftest import Cli, read_frame, transcript, wait_for

pytestmark = pytest.mark.e2e


def every_path(root: Path) -> set[Path]:
    return {Path(dirpath) / name for dirpath, dirs, files in os.walk(root) for name in dirs + files}


def agents(cli: Cli) -> set[str]:
    root = cli.state_dir / "agents"
    return {p.name for p in root.iterdir()} if root.exists() else set()


def raw_request(cli: Cli, request: dict) -> dict:
    """One request on a raw socket (no client-side checks); the terminal frame."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(60)
        sock.connect(str(cli.state_dir / "run" / "daemon.sock"))

        sock.sendall(protocol.encode(protocol.hello("ids-test")))
        assert read_frame(sock)["type"] == "hello"
        sock.sendall(protocol.encode(request))
        for _ in range(10_000):  # a bounded stream
            frame = read_frame(sock)
            if frame["type"] in protocol.TERMINAL_TYPES:
                return frame
    raise AssertionError("no terminal frame")


def assert_usage_error(proc: object, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)  # type: ignore[attr-defined]
    lines = proc.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, proc.stderr  # type: ignore[attr-defined]
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_agent_dot_dot_is_a_usage_error_and_creates_nothing(cli: Cli) -> None:
    proc = cli.run(
        "agent", "--local", "-m", "hi", "--agent", "../x", "--max-tokens", "2", check=False
    )
    assert_usage_error(proc, "--agent", "'../x'")
    assert not (cli.state_dir / "x").exists()
    assert agents(cli) == set()
    bad_session = cli.run(
        "agent", "--local", "-m", "hi", "--session-id", "../../y", "--max-tokens", "2", check=False
    )
    assert_usage_error(bad_session, "--session-id")
    assert agents(cli) == set()


def test_agent_ids_are_case_insensitive(warm_cli: Cli) -> None:
    first = warm_cli.turn("Say one.", "--agent", "OPS", "--max-tokens", "3")
    second = warm_cli.turn("Say two.", "--agent", "ops", "--max-tokens", "3")
    assert first["meta"]["agentMeta"]["sessionId"] == second["meta"]["agentMeta"]["sessionId"]
    assert "OPS" not in agents(warm_cli) and "ops" in agents(warm_cli)
    files = list((warm_cli.state_dir / "agents" / "ops" / "sessions").glob("*.jsonl"))
    assert len(files) == 1
    users = [e for e in transcript(files[0]) if e.get("message", {}).get("role") == "user"]
    assert len(users) == 2
    listed = json.loads(warm_cli.run("sessions", "list", "--agent", "OPS", "--json").stdout)
    assert listed["agentId"] == "ops" and listed["count"] == 1


@pytest.mark.parametrize("field", ["agentId", "sessionId"])
def test_raw_clients_cannot_make_the_daemon_write_outside_the_state_dir(
    warm_cli: Cli, field: str
) -> None:
    warm_cli.turn("Say ok.", "--max-tokens", "2")  # the daemon runs and has a main session
    outside = Path(tempfile.mkdtemp(prefix="oc-outside-", dir="/tmp"))
    before = every_path(warm_cli.state_dir)
    # Absolute, and relative paths that resolve into ``outside`` from agents/
    # (for agentId) or from agents/main/sessions/ (for sessionId).
    relative = ["../../" + outside.name, "../../../../" + outside.name + "/evil"]
    bad_values = [str(outside / "evil"), *relative, "..", "../../x", "a\x00b", "a/b", " "]
    try:
        for value in bad_values:
            for kind in ("turn", "compact"):
                request = {"type": kind, "message": "hi", "maxTokens": 2, field: value}
                frame = raw_request(warm_cli, request)
                assert frame["type"] == "error" and frame["code"] == "bad_request", (value, frame)
                assert field in frame["message"], frame
        assert list(outside.iterdir()) == []
    finally:
        shutil.rmtree(outside)
    created = every_path(warm_cli.state_dir) - before
    # Only the daemon's own trace log may have grown; no agent or session appeared.
    assert not [p for p in created if "agents" in p.parts], created
    log = (warm_cli.state_dir / "logs" / "daemon.log").read_text(errors="replace")
    assert "Traceback" not in log
    assert warm_cli.turn("Say ok.", "--max-tokens", "2")["payloads"][0]["text"] is not None


@pytest.mark.parametrize(
    "args",
    [
        ("sessions", "show", "../x"),
        ("sessions", "show", "agent:../x:main"),
        ("sessions", "list", "--agent", "../x"),
        ("sessions", "show", "main", "--agent", "/abs"),
        ("sessions", "compact", "../x"),
        ("sessions", "compact", "main", "--agent", "a/b"),
        ("trace", "show", "../../x"),
        ("trace", "last", "--session", "../x"),
        ("trace", "list", "--session", "agent:../x:main"),
        ("stats", "--session", "../x"),
        ("stats", "--agent", "../x"),
        ("doctor", "--session-id", "../x"),
    ],
)
def test_every_command_refuses_a_bad_id_as_a_usage_error(cli: Cli, args: tuple[str, ...]) -> None:
    proc = cli.run(*args, check=False)
    assert_usage_error(proc, "invalid")
    assert not (cli.state_dir / "x").exists() and agents(cli) == set()


def test_stats_agent_filters_by_the_canonical_agent(warm_cli: Cli) -> None:
    warm_cli.turn("Say hi.", "--agent", "Stats1", "--max-tokens", "2")

    def turns(agent: str) -> int:
        return int(json.loads(warm_cli.run("stats", "--agent", agent, "--json").stdout)["turns"])

    assert wait_for(lambda: turns("STATS1") == 1), turns("STATS1")
    assert turns("stats1") == 1 and turns("nobody") == 0


def test_session_ids_are_trimmed_and_may_be_unicode_as_in_openclaw(warm_cli: Cli) -> None:
    first = warm_cli.turn("Say one.", "--session-id", " Caf\u00e9-1 ", "--max-tokens", "2")
    second = warm_cli.turn("Say two.", "--session-id", "Caf\u00e9-1", "--max-tokens", "2")
    assert first["meta"]["agentMeta"]["sessionId"] == "Caf\u00e9-1"
    assert second["meta"]["agentMeta"]["sessionFile"] == first["meta"]["agentMeta"]["sessionFile"]
    assert Path(first["meta"]["agentMeta"]["sessionFile"]).name == "Caf\u00e9-1.jsonl"
    shown = json.loads(
        warm_cli.run("sessions", "show", "agent:MAIN:explicit:Caf\u00e9-1", "--json").stdout
    )
    assert shown["sessionId"] == "Caf\u00e9-1"
