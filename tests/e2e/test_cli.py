"""End to end: the CLI's user-facing surface — help, progress on a TTY, daemon commands."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from openclaw_daemon.wire import frames as protocol
from tests.conftest import OPENCLAW, Cli, wait_for
from tests.e2e.test_failures import raw_connection, read_frame

pytestmark = pytest.mark.e2e


def test_agent_help_and_usage_errors(cli: Cli) -> None:
    shown = cli.run("agent", "--help")
    for option in (
        "--message",
        "--session-id",
        "--json",
        "--timeout",
        "--max-tokens",
        "--stop",
        "--model",
        "--verbose",
    ):
        assert option in shown.stdout
    missing = cli.run("agent", check=False)
    assert missing.returncode == 2 and "--message" in missing.stderr
    listing = cli.run("--help")
    assert "agent" in listing.stdout and "daemon" in listing.stdout


def run_in_pty(cli: Cli, *args: str, timeout: float = 120) -> tuple[int, str]:
    """Run the CLI with a terminal on stdout and stderr; return exit code and screen text."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(OPENCLAW), *args],
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(10), b"".join(chunks).decode(errors="replace")


def test_long_prefill_shows_a_progress_bar_on_a_terminal(cli: Cli) -> None:
    cli.run("daemon", "start")
    code, screen = run_in_pty(
        cli,
        "agent",
        "-m",
        "alpha beta gamma delta " * 300,
        "--max-tokens",
        "4",
        "--session-id",
        "tty",
    )
    assert code == 0, screen
    assert "prefill" in screen and "tok/s" in screen
    assert "/" in screen  # done/total counter


def test_prefill_progress_frames_count_up_to_the_total(cli: Cli) -> None:
    cli.run("daemon", "start")
    sock = raw_connection(cli)
    sock.sendall(protocol.encode(protocol.hello("test")))
    read_frame(sock)
    sock.sendall(
        protocol.encode(
            {
                "type": "turn",
                "message": "one two three " * 250,
                "sessionId": "progress",
                "maxTokens": 2,
            }
        )
    )
    frames = []
    while not frames or frames[-1]["type"] not in ("done", "error"):
        frames.append(read_frame(sock))
    sock.close()
    assert frames[-1]["type"] == "done"
    assert sum(f["type"] in ("done", "error") for f in frames) == 1
    progress = [f for f in frames if f["type"] == "progress"]
    assert len(progress) >= 3
    done = [f["done"] for f in progress]
    assert done == sorted(done) and done[-1] == progress[-1]["total"]
    assert all(f["rate"] > 0 and f["etaS"] >= 0 for f in progress)
    usage = frames[-1]["result"]["usage"]
    assert progress[-1]["total"] == usage["input"]  # the prefilled, uncached tokens


def test_foreground_daemon_serves_and_stops_on_sigterm(cli: Cli) -> None:
    proc = subprocess.Popen(
        [str(OPENCLAW), "daemon", "start", "--foreground"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: cli.status().get("running") is True, timeout=60)
        assert cli.status()["pid"] == proc.pid  # exec'd in place, not detached
        assert cli.turn("Say hi.", "--max-tokens", "3")["payloads"][0]["text"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (cli.state_dir / "run" / "daemon.sock").exists()
    assert not (cli.state_dir / "run" / "daemon.json").exists()
    assert "serving on" in proc.stderr.read()


def test_model_other_than_the_running_one_is_refused_with_a_hint(cli: Cli, tmp_path: Path) -> None:
    cli.run("daemon", "start")
    status = cli.status()
    other = tmp_path / "other.gguf"
    os.link(status["modelPath"], other)  # same bytes, another model path
    proc = cli.run("agent", "-m", "hi", "--model", str(other), check=False)
    assert proc.returncode == 2
    assert "daemon is serving" in proc.stderr and "daemon restart --model" in proc.stderr
    cli.run("daemon", "restart", "--model", str(other))
    assert cli.status()["modelPath"] == str(other)
    envelope = cli.turn("Say hi.", "--model", str(other), "--max-tokens", "3")
    assert envelope["payloads"][0]["text"]


def test_daemon_status_text_and_stop_when_not_running(cli: Cli) -> None:
    stopped = cli.run("daemon", "status", check=False)
    assert stopped.returncode == 3 and "not running" in stopped.stderr
    assert "not running" in cli.run("daemon", "stop").stderr
    cli.run("daemon", "start")
    text = cli.run("daemon", "status").stdout
    for label in ("pid", "model", "uptime", "rss", "n_ctx", "sessions", "socket"):
        assert label in text
    again = cli.run("daemon", "start")
    assert "already running" in again.stderr
    data = json.loads(cli.run("daemon", "status", "--json").stdout)
    assert data["running"] is True and data["protocolVersion"] == protocol.PROTOCOL_VERSION
