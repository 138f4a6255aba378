"""Idle exit (``--idle-timeout``, ``OPENCLAW_IDLE_TIMEOUT``), as ollama's keep_alive:
the real daemon stops itself after the timeout with no request, parking the session
to disk, and the next turn starts it again warm from L3. Requests keep it alive;
0 means never."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Cli, make_state_dir

pytestmark = pytest.mark.e2e

NOTES = " ".join(f"Fact {i}: box {i} holds item {i * 5 % 17}." for i in range(40))


@pytest.fixture
def idle_cli() -> Iterator[Cli]:
    runner = Cli(make_state_dir(), {"OPENCLAW_IDLE_TIMEOUT": "0.05"})  # 3 seconds
    yield runner
    runner.stop()
    shutil.rmtree(runner.state_dir, ignore_errors=True)


def _running(cli: Cli) -> bool:
    return (cli.state_dir / "run" / "daemon.json").exists()


def _wait_stopped(cli: Cli, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _running(cli):
            return True
        time.sleep(0.25)
    return False


def test_the_daemon_exits_when_idle_and_the_next_turn_is_warm(idle_cli: Cli) -> None:
    idle_cli.turn(NOTES + " Say OK.", "--session-id", "idle", "--max-tokens", "4")
    ended = time.monotonic()
    assert _wait_stopped(idle_cli, within=60), "the daemon did not stop when idle"
    # Not before the 3 s from the environment (the idle clock starts when the turn's
    # connection closes, just before the CLI exits; polled every 0.3 s).
    assert time.monotonic() - ended >= 2.0
    # The status file goes first; the process ends after parking, with "stopped".
    log = _wait_log(idle_cli, "openclawd: stopped")
    assert "idle for" in log
    again = idle_cli.turn("Which box holds item 5?", "--session-id", "idle", "--max-tokens", "8")
    cache = again["meta"]["trace"]["cache"]
    usage = again["meta"]["agentMeta"]["usage"]
    assert cache["tier"] == "L3", cache
    assert usage["cacheRead"] >= 0.9 * (usage["total"] - usage["output"])


def test_requests_keep_it_alive_and_zero_means_never(idle_cli: Cli) -> None:
    idle_cli.run("daemon", "start", timeout=300)
    for _ in range(8):  # 6 s of status calls, each under the 3 s timeout apart
        time.sleep(0.75)
        assert idle_cli.status()["pid"]
    idle_cli.run("daemon", "stop")
    idle_cli.run("daemon", "start", "--idle-timeout", "0", timeout=300)
    assert idle_cli.status()["idleTimeoutS"] == 0
    time.sleep(5)
    assert _running(idle_cli)
    idle_cli.run("daemon", "stop")
    bad = idle_cli.run("daemon", "start", "--idle-timeout", "-1", check=False)
    assert bad.returncode == 2 and "--idle-timeout" in bad.stderr
    assert not _running(idle_cli)


def _wait_log(cli: Cli, text: str, within: float = 60) -> str:
    log_file = cli.state_dir / "logs" / "daemon.log"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        log = log_file.read_text()
        if text in log:
            return log
        time.sleep(0.25)
    raise AssertionError(f"{text!r} not in the daemon log:\n{log_file.read_text()[-2000:]}")


def test_preload_makes_the_first_turn_after_a_start_a_live_hit(idle_cli: Cli) -> None:
    cli = Cli(idle_cli.state_dir, {})  # no idle exit here
    cli.turn(NOTES + " Say OK.", "--session-id", "pre", "--max-tokens", "4")
    cli.turn("Say hi.", "--session-id", "other", "--max-tokens", "4")
    cli.run("daemon", "stop")
    cli.run("daemon", "start", "--preload", "pre", timeout=300)
    _wait_log(cli, "preloaded pre:")
    first = cli.turn("Which box holds item 5?", "--session-id", "pre", "--max-tokens", "8")
    cache = first["meta"]["trace"]["cache"]
    assert cache["tier"] == "L1" and cache["cachedTokens"] > 300, cache
    # A bad option to restart is refused before the running daemon is stopped.
    bad = cli.run("daemon", "restart", "--idle-timeout", "-5", check=False)
    assert bad.returncode == 2 and "--idle-timeout" in bad.stderr and _running(cli)
    # last: the most recently used session ("pre", just now), through restart.
    log_file = cli.state_dir / "logs" / "daemon.log"
    log_file.write_text("")
    cli.run("daemon", "restart", "--preload", "last", timeout=300)
    _wait_log(cli, "preloaded pre:")
    cli.run("daemon", "stop")
    # A session that does not exist: a warning, and the daemon serves anyway.
    cli.run("daemon", "start", "--preload", "nosuch", timeout=300)
    _wait_log(cli, "not preloading nosuch")
    assert cli.turn("Say yes.", "--session-id", "other", "--max-tokens", "4")["payloads"]
    cli.run("daemon", "stop")
