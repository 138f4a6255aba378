"""``--parallel`` through the real CLI: bad values are clear errors before anything
starts, a running daemon with another setting is not silently reused, the status
says what runs, and a sliding-window model runs one sequence whatever is asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("env", "args", "said"),
    [
        ({}, ["--parallel", "0"], "--parallel"),
        ({}, ["--parallel", "17"], "--parallel must be 1 to 16, got 17"),
        ({"OPENCLAW_PARALLEL": "99"}, [], "OPENCLAW_PARALLEL must be 1 to 16, got 99"),
        ({"OPENCLAW_PARALLEL": "four"}, [], "OPENCLAW_PARALLEL must be an integer"),
    ],
)
def test_a_bad_parallel_value_is_refused_before_a_daemon_starts(
    cli: Cli, env: dict[str, str], args: list[str], said: str
) -> None:
    cli.extra_env.update(env)
    proc = cli.run("daemon", "start", *args, check=False)
    assert proc.returncode != 0
    assert said in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (cli.state_dir / "run" / "daemon.json").exists()  # nothing was started


def test_parallel_is_shown_and_a_different_setting_is_not_silently_reused(cli: Cli) -> None:
    cli.run("daemon", "start", "--parallel", "2", timeout=300)
    status = cli.status()["parallel"]
    assert status["parallel"] == 2 and len(status["sequences"]) == 2
    assert "2 turns at once, 0 running" in cli.run("daemon", "status").stdout
    again = cli.run("daemon", "start", "--parallel", "3", check=False)
    assert again.returncode != 0
    assert "--parallel 2, not 3" in again.stdout + again.stderr
    assert "openclaw daemon restart --parallel 3" in again.stdout + again.stderr
    cli.run("daemon", "start", "--parallel", "2")  # the same setting: a no-op
    envelope = cli.turn("Say OK.", "--max-tokens", "4")
    assert envelope["payloads"]
    assert cli.status()["parallel"]["parallel"] == 2


def test_a_sliding_window_model_runs_one_sequence(cli: Cli, gemma_gguf: Path) -> None:
    cli.run("daemon", "start", "--model", str(gemma_gguf), "--parallel", "4", timeout=300)
    assert cli.status()["parallel"]["parallel"] == 1
    log = (cli.state_dir / "logs").glob("*.log")
    text = "".join(path.read_text() for path in log)
    assert "--parallel 4 ignored" in text
    assert cli.status()["parallel"]["asked"] == 4
    # The same start again names this daemon (it runs 1 because of its model,
    # not because it was started otherwise); another setting is still refused.
    cli.run("daemon", "start", "--model", str(gemma_gguf), "--parallel", "4")
    other = cli.run("daemon", "start", "--model", str(gemma_gguf), "--parallel", "2", check=False)
    assert other.returncode != 0
    assert "--parallel 1, not 2" in other.stdout + other.stderr
    envelope = cli.turn("Say OK.", "--max-tokens", "4")
    assert json.dumps(envelope)
