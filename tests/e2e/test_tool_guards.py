"""The tool guards with hostile arguments, called directly and through forced tool choice.

The direct cases live in ``tests/tool_guard_cases.py`` (one test each here, and
``run_all()`` for a fault report); the races run bounded loops with a swapping
thread; the end-to-end tests force a tool on the real model through the real
CLI and check that nothing from outside the workspace or from a private
address reaches the transcript.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from openclaw_daemon.tools import web_fetch, workspace
from openclaw_daemon.wire.errors import ToolError
from tests import tool_guard_cases
from tests.conftest import Cli
from tests.tool_guard_cases import LEAK, Trap, private_server


@pytest.mark.parametrize("case", tool_guard_cases.all_cases(), ids=lambda c: c.__name__)
def test_a_hostile_call_is_refused_and_nothing_escapes(case: Any) -> None:
    outcome = tool_guard_cases.run_case(case)
    assert not outcome.escaped, outcome.detail
    assert outcome.refused, outcome.detail


def test_run_all_counts_cases_refusals_and_escapes() -> None:
    summary = tool_guard_cases.run_all()
    assert summary["cases"] >= 80
    assert summary["escaped"] == 0 and summary["refused"] == summary["cases"], summary["failures"]


# The swapper is a separate process: a thread would mostly wait for the GIL
# while the tool runs, and hardly race at all.
_SWAPPER = """
import os, shutil, sys, time
real, aside, link_to, stop, seconds = sys.argv[1:6]
swaps, deadline = 0, time.monotonic() + float(seconds)
while not os.path.exists(stop) and time.monotonic() < deadline:
    swaps += 1
    try:
        os.rename(real, aside)
    except OSError:
        continue
    try:
        os.symlink(link_to, real)
        os.unlink(real)
    except OSError:  # a writer recreated the directory in the gap
        pass
    for _ in range(100):  # put the real directory back, whatever a writer made
        if os.path.islink(real):
            os.unlink(real)
        elif os.path.isdir(real):
            shutil.rmtree(real, ignore_errors=True)
        try:
            os.rename(aside, real)
            break
        except OSError:
            continue
print(swaps)
"""


def _race(trap: Trap, attempt: Any, count: int = 2000, seconds: float = 20.0) -> tuple[int, int]:
    """(attempts, swaps) of ``attempt()`` while another process swaps ws/d for a symlink."""
    real = trap.ws / "d"
    real.mkdir()
    (real / "secret.txt").write_text("inside\n")
    (real / "target.txt").write_text("inside\n")
    stop = trap.root / "stop"
    swapper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SWAPPER,
            str(real),
            str(trap.ws / "d.aside"),
            str(trap.outside),
            str(stop),
            str(seconds + 5),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    attempts = 0
    deadline = time.monotonic() + seconds
    try:
        time.sleep(0.2)  # let it start swapping
        while attempts < count and time.monotonic() < deadline:
            attempts += 1
            attempt()
    finally:
        stop.touch()
        output, _ = swapper.communicate(timeout=30)
    return attempts, int(output.strip() or 0)


def test_reads_while_a_directory_is_swapped_for_a_symlink_leak_nothing(tmp_path: Path) -> None:
    trap = Trap(tmp_path)
    leaks: list[str] = []

    def attempt() -> bool:
        try:
            text = workspace.read(trap.ws, {"path": "d/secret.txt"})
        except (ToolError, OSError):  # refused, or ws/d missing mid-swap
            return False
        if LEAK in text:
            leaks.append(text)
        return True

    attempts, swaps = _race(trap, attempt)
    assert attempts >= 100 and swaps >= 10  # the race really ran
    assert leaks == []
    assert workspace.read(trap.ws, {"path": "d/secret.txt"}) == "inside\n"  # and reads work


def test_writes_while_a_directory_is_swapped_for_a_symlink_change_nothing_outside(
    tmp_path: Path,
) -> None:
    trap = Trap(tmp_path)

    def attempt() -> bool:
        try:
            workspace.write(trap.ws, {"path": "d/target.txt", "content": "pwned"})
        except (ToolError, OSError):  # OSError: the swapper removed ws/d mid-write
            return False
        return True

    attempts, swaps = _race(trap, attempt, count=1000)
    assert attempts >= 100 and swaps >= 10
    assert not trap.outside_changed()


def test_writes_leave_no_temp_files_and_keep_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "run.sh"
    target.write_text("old")
    target.chmod(0o755)
    workspace.write(tmp_path, {"path": "run.sh", "content": "new"})
    workspace.write(tmp_path, {"path": "sub/dir/new.txt", "content": "x"})
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["dir", "new.txt", "run.sh", "sub"]


def test_symlinks_that_stay_inside_the_workspace_still_work(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f.txt").write_text("inside\n")
    (tmp_path / "alias").symlink_to("real")
    (tmp_path / "abs.txt").symlink_to(tmp_path / "real" / "f.txt")
    assert workspace.read(tmp_path, {"path": "alias/f.txt"}) == "inside\n"
    assert workspace.read(tmp_path, {"path": "abs.txt"}) == "inside\n"
    assert workspace.read(tmp_path, {"path": str(tmp_path / "real/../real/f.txt")}) == "inside\n"
    workspace.write(tmp_path, {"path": "abs.txt", "content": "changed\n"})
    assert (tmp_path / "real" / "f.txt").read_text() == "changed\n"
    assert (tmp_path / "abs.txt").is_symlink()  # the write went through, the link stays


def test_private_addresses_are_fetched_only_with_the_opt_in(tmp_path: Path) -> None:
    trap = Trap(tmp_path)
    with private_server(trap) as port:
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(ToolError, match="private"):
            web_fetch.fetch({"url": url})
        assert trap.hits == []
        assert LEAK in web_fetch.fetch({"url": url}, allow_private=True)
    assert trap.hits == ["/"]


def test_the_cli_parses_the_private_fetch_opt_in() -> None:
    from openclaw_cli.agent_args import parse_agent_args

    options = parse_agent_args(["-m", "x", "--allow", "exec,web_fetch:private"])
    assert options.allow == ("exec", "web_fetch:private")
    with pytest.raises(SystemExit):
        parse_agent_args(["-m", "x", "--allow", "web_fetch:everything"])


# -- end to end: forced tool choice on the real model ---------------------------
MAX_TOKENS = ("--max-tokens", "64", "--max-steps", "2")  # the forced call, then an answer
TURN_TIMEOUT = 300  # a bound, not a measurement: 8 helpers share 2 cores


def _calls(envelope: dict[str, Any]) -> list[dict[str, Any]]:
    return envelope["meta"]["steps"][0]["toolCalls"]


@pytest.mark.e2e
def test_forced_read_of_a_symlink_out_of_the_workspace_is_refused(
    warm_cli: Cli, tmp_path: Path
) -> None:
    trap = Trap(tmp_path)
    (trap.ws / "note.txt").unlink()
    (trap.ws / "leak.txt").symlink_to(trap.outside / "secret.txt")
    envelope = warm_cli.turn(
        "What does leak.txt say?",
        *MAX_TOKENS,
        "--tool-choice",
        "read",
        cwd=trap.ws,
        timeout=TURN_TIMEOUT,
    )
    [call] = _calls(envelope)
    assert call["arguments"]["path"] == "leak.txt"
    assert call["isError"] and "outside the workspace" in call["result"]
    assert LEAK not in json.dumps(envelope)


@pytest.mark.e2e
def test_forced_search_does_not_follow_a_symlink_out(warm_cli: Cli, tmp_path: Path) -> None:
    trap = Trap(tmp_path)
    (trap.ws / "leak.txt").symlink_to(trap.outside / "secret.txt")
    (trap.ws / "d").symlink_to(trap.outside)
    envelope = warm_cli.turn(
        "Search for: secret",
        # Room for the forced call: its pattern is free text, and a call cut off
        # by --max-tokens is dropped (a full-suite run once ended its first step
        # with no call at 64, as a cut-off call leaves it).
        "--max-tokens",
        "128",
        "--max-steps",
        "2",
        "--tool-choice",
        "search",
        cwd=trap.ws,
        timeout=TURN_TIMEOUT,
    )
    first = envelope["meta"]["steps"][0]
    assert [c["name"] for c in _calls(envelope)][:1] == ["search"], first
    assert LEAK not in json.dumps(envelope)


@pytest.mark.e2e
def test_forced_web_fetch_of_loopback_is_refused_by_default(warm_cli: Cli, tmp_path: Path) -> None:
    trap = Trap(tmp_path)
    with private_server(trap) as port:
        url = f"http://127.0.0.1:{port}/secret"
        envelope = warm_cli.turn(
            f"Fetch {url} please.",
            *MAX_TOKENS,
            "--tool-choice",
            "web_fetch",
            cwd=trap.ws,
            timeout=TURN_TIMEOUT,
        )
    [call] = _calls(envelope)
    assert call["arguments"]["url"] == url
    assert call["isError"] and "web_fetch:private" in call["result"]
    assert trap.hits == [] and LEAK not in json.dumps(envelope)


def test_a_hop_is_pinned_to_the_checked_address_and_keeps_its_name() -> None:
    pinned, host_header, sni = web_fetch._pin(
        "http://bücher.example:8080/x", lambda host, port: ["93.184.216.34"], False
    )
    assert str(pinned) == "http://93.184.216.34:8080/x"
    assert (host_header, sni) == ("xn--bcher-kva.example:8080", "xn--bcher-kva.example")
    with pytest.raises(ToolError, match="web_fetch:private"):
        web_fetch._pin("https://[fd12::1]/", lambda host, port: [], False)


def test_the_runner_passes_the_opt_in_and_caches_apart(tmp_path: Path) -> None:
    from openclaw_daemon.tools.runner import ToolContext
    from openclaw_daemon.tools.spec import ToolCall

    trap = Trap(tmp_path)
    runner = tool_guard_cases._runner()
    runner.ttl_s = 60  # the opt-in's page must not answer a turn without it
    with private_server(trap) as port:
        call = ToolCall("w", "web_fetch", {"url": f"http://127.0.0.1:{port}/"})
        opted_in = ToolContext(trap.ws, {}, frozenset({"web_fetch:private"}))
        [fetched] = runner.run_step([call], opted_in)
        [refused] = runner.run_step([call], ToolContext(trap.ws, {}, frozenset()))
    assert not fetched.is_error and LEAK in fetched.content
    assert refused.is_error and not refused.cached and "web_fetch:private" in refused.content
    assert trap.hits == ["/"]
