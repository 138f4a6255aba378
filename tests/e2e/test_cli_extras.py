"""``openclaw --version``, ``completion`` (run in a real bash) and ``logs``
(``--lines``, ``--json``, ``--follow``), through the real CLI and daemon."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from importlib.metadata import version

import pytest

from tests.conftest import OPENCLAW, Cli

pytestmark = pytest.mark.e2e


def test_version(cli: Cli) -> None:
    expected = f"openclaw-edge {version('openclaw-edge')}\n"
    assert cli.run("--version").stdout == expected
    assert cli.run("-V").stdout == expected
    assert "--version" in cli.run("--help").stdout


def test_help_lists_every_command_on_one_line(cli: Cli) -> None:
    shown = cli.run("--help").stdout
    rows = shown[shown.index("Commands") :].splitlines()[1:-1]
    names = [row.strip("│ ").split()[0] for row in rows]
    assert not any(row.startswith("│   ") for row in rows), shown  # no wrapped line
    assert set(names) >= {"agent", "daemon", "sessions", "logs", "completion", "trace", "models"}


def test_completion_completes_commands_and_options_in_bash(cli: Cli) -> None:
    env = {**cli.env, "PATH": f"{OPENCLAW.parent}:{os.environ['PATH']}"}

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        script = (
            'eval "$(openclaw completion bash)"\n'
            f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
            "_openclaw_completion openclaw\n"
            'printf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        proc = subprocess.run(
            ["bash", "--norc", "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert complete("openclaw", "ses") == ["sessions"]
    assert set(complete("openclaw", "sessions", "re")) == {"reset"}
    assert "--format" in complete("openclaw", "sessions", "export", "--f")
    # agent's options are argparse's, completed all the same.
    assert set(complete("openclaw", "agent", "--max")) == {"--max-tokens", "--max-steps"}
    assert "--session-key" in complete("openclaw", "agent", "-m", "hi", "--session")
    for shell, marker in (("zsh", "#compdef openclaw"), ("fish", "complete --command openclaw")):
        assert marker in cli.run("completion", shell).stdout
    bad = cli.run("completion", "tcsh", check=False)
    assert bad.returncode == 2 and "bash, zsh or fish" in bad.stderr


def test_logs_lines_json_and_follow(cli: Cli) -> None:
    missing = cli.run("logs", check=False)
    assert missing.returncode != 0 and "no daemon log" in missing.stderr
    cli.run("daemon", "start", timeout=300)
    last = cli.run("logs", "-n", "2").stdout.splitlines()
    assert len(last) == 2 and "serving on" in last[-1]
    document = json.loads(cli.run("logs", "--json", "--lines", "1").stdout)
    assert document["file"] == str(cli.state_dir / "logs" / "daemon.log")
    assert len(document["lines"]) == 1 and "serving on" in document["lines"][0]

    follower = subprocess.Popen(
        [str(OPENCLAW), "logs", "--follow", "-n", "0"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        cli.run("daemon", "stop")  # appends "stopped" to the log
        assert follower.stdout is not None
        seen = ""
        deadline = time.monotonic() + 30
        while "stopped" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([follower.stdout], [], [], 1.0)
            if ready:
                seen += follower.stdout.readline()
        assert "stopped" in seen and "serving on" not in seen  # only what came after
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 0  # Ctrl-C is how a follow ends
    finally:
        if follower.poll() is None:
            follower.kill()
