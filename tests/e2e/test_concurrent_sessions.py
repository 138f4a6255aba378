"""Many clients at once on a few sessions, through the real CLI and daemon (issue 19's
"8 clients x 5 turns over 4 sessions"): every turn completes, a session's turns run one
at a time in the order they were taken (each user message is followed by its own
reply, and each client's turns appear in the order it sent them), and every session's
token tape still spells its transcript. Run twice: turns queued for one sequence
(``--parallel 1``, the CPU default) and four sequences sharing model steps
(``--parallel 4``), where the turns' traces and ``daemon status`` show the shared steps."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import OPENCLAW, Cli, make_state_dir

pytestmark = pytest.mark.e2e

CLIENTS = 8
TURNS = 5
SESSIONS = 4


@pytest.fixture(params=[1, 4], ids=["parallel-1", "parallel-4"])
def parallel(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def cli(parallel: int) -> Iterator[Cli]:
    runner = Cli(make_state_dir(), {})
    runner.run("daemon", "start", "--parallel", str(parallel), timeout=300)
    yield runner
    runner.stop()
    shutil.rmtree(runner.state_dir, ignore_errors=True)


def _client(cli: Cli, number: int, failures: list[str], decodes: list[dict[str, Any]]) -> None:
    session = f"cc{number % SESSIONS}"
    for turn in range(TURNS):
        proc = subprocess.run(
            [str(OPENCLAW), "agent", "--local", "--session-id", session, "--json",
             "--max-tokens", "6", "-m", f"client {number} turn {turn}: say OK"],
            env=cli.env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if proc.returncode != 0:
            failures.append(f"client {number} turn {turn}: {proc.stderr[-500:]}")
            continue
        spans = json.loads(proc.stdout)["meta"]["trace"]["spans"]
        decodes += [span for span in spans if span.get("name") == "model.decode"]


def _messages(cli: Cli, session: str) -> list[dict[str, Any]]:
    shown = json.loads(cli.run("sessions", "show", session, "--json").stdout)
    return [e["message"] for e in shown["entries"] if e.get("type") == "message"]


def test_eight_clients_five_turns_four_sessions(cli: Cli, parallel: int) -> None:
    failures: list[str] = []
    decodes: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=_client, args=(cli, n, failures, decodes)) for n in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(900)
    assert not [t for t in threads if t.is_alive()], "a client never finished"
    assert failures == []
    for index in range(SESSIONS):
        session = f"cc{index}"
        messages = _messages(cli, session)
        roles = [m["role"] for m in messages]
        # One turn at a time: user, assistant, user, assistant ... never two users in a row.
        assert roles == ["user", "assistant"] * (len(roles) // 2), roles
        users = [m["content"][0]["text"] for m in messages if m["role"] == "user"]
        assert len(users) == TURNS * CLIENTS // SESSIONS
        for number in range(index, CLIENTS, SESSIONS):  # this session's clients
            mine = [u for u in users if u.startswith(f"client {number} ")]
            assert mine == [f"client {number} turn {t}: say OK" for t in range(TURNS)]
        check = json.loads(cli.run("sessions", "check-tape", session, "--json").stdout)
        assert check["tapeMatchesTranscript"] is True, check
    status = json.loads(cli.run("daemon", "status", "--json").stdout)["parallel"]
    shared = [span for span in decodes if span.get("sharedSteps")]
    if parallel == 1:
        assert status["parallel"] == 1 and status["sharedSteps"] == 0 and not shared
        return
    # Four sessions' turns at once: they shared steps, and their traces say so.
    assert status["parallel"] == 4 and status["sharedSteps"] > 0, status
    assert len(status["sequences"]) == 4 and status["running"] == 0
    assert shared, decodes
    assert all(2 <= span["mostSequences"] <= 4 for span in shared)
    assert all(span["sharedSteps"] <= span["steps"] for span in shared)
    text = cli.run("daemon", "status").stdout
    assert "4 turns at once" in text
