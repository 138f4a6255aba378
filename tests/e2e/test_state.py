"""The state dir, the run dir and the daemon's lifecycle, end to end (issue 13).

Everything goes through the real ``openclaw`` CLI and the real daemon: a
relative state dir, a state dir that is a file / read-only / on a full disk,
bad environment values, restart and start with another n_ctx, a socket in a
shared dir, a pre-created fallback run dir, and another uid on the socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import other_uid_check
from tests.conftest import Cli, make_state_dir, wait_for


def _kill_daemons_under(root: Path) -> None:
    """Never leak a daemon: SIGKILL whatever status file lies below ``root``."""
    for status_file in root.rglob("daemon.json"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(json.loads(status_file.read_text()).get("pid", 0))
            if pid:
                os.kill(pid, signal.SIGKILL)


def _no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout


@pytest.fixture
def tmp_root() -> Iterator[Path]:
    root = make_state_dir()
    yield root
    _kill_daemons_under(root)
    shutil.rmtree(root, ignore_errors=True)


def test_relative_state_dir_socket_in_place_and_stop_reaches_it(tmp_root: Path) -> None:
    cli = Cli(Path("relstate"), {})
    try:
        cli.run("daemon", "start", cwd=tmp_root, timeout=90)
        state = tmp_root / "relstate"
        assert (state / "run" / "daemon.sock").exists()
        assert not (state / "relstate").exists()
        status = json.loads(cli.run("daemon", "status", "--json", cwd=tmp_root).stdout)
        assert status["socket"] == str(state / "run" / "daemon.sock")
        pid = status["pid"]
        out = cli.run("daemon", "stop", cwd=tmp_root, timeout=30)
        assert f"pid {pid}" in out.stderr + out.stdout
        assert wait_for(lambda: not Path(f"/proc/{pid}").exists(), 15)
    finally:
        cli.run("daemon", "stop", cwd=tmp_root, check=False, timeout=30)


def _assert_one_line_failure(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0, proc
    _no_traceback(proc)
    assert needle in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr


COMMANDS = [
    ("daemon", "status"),
    ("daemon", "start"),
    ("sessions", "list"),
    ("agent", "--local", "-m", "hi", "--max-tokens", "2"),
    ("cache", "stats"),
    ("trace", "list"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: "-".join(a[:2]))
def test_state_dir_is_a_file(tmp_root: Path, args: tuple[str, ...]) -> None:
    state = tmp_root / "statefile"
    state.write_text("not a dir")
    proc = Cli(state, {}).run(*args, check=False, timeout=60)
    _assert_one_line_failure(proc, str(state))
    assert state.read_text() == "not a dir"


@contextlib.contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[None]:
    path.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}), so no read-only/full disk")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: "-".join(a[:2]))
def test_state_dir_read_only(tmp_root: Path, args: tuple[str, ...]) -> None:
    # As root, chmod 0500 does not stop writes: a read-only tmpfs does.
    state = tmp_root / "ro"
    with _tmpfs(state, "ro,size=64k,mode=0700"):
        proc = Cli(state, {}).run(*args, check=False, timeout=60)
        if args[:2] in (
            ("daemon", "status"),
            ("sessions", "list"),
            ("trace", "list"),
            ("cache", "stats"),
        ):
            # Read-only commands on an empty, read-only state dir may succeed; no traceback.
            _no_traceback(proc)
        else:
            _assert_one_line_failure(proc, str(state))
            assert "read-only" in proc.stderr.lower(), proc.stderr


def test_state_dir_on_a_full_disk(tmp_root: Path) -> None:
    state = tmp_root / "full"
    with _tmpfs(state, "size=64k,mode=0700"):
        with contextlib.suppress(OSError), (state / "filler").open("wb") as fill:
            for _ in range(64):  # 64 x 4 KiB > 64 KiB: bounded
                fill.write(b"\0" * 4096)
                fill.flush()
        for args in (("daemon", "start"), ("agent", "--local", "-m", "hi", "--max-tokens", "2")):
            proc = Cli(state, {}).run(*args, check=False, timeout=60)
            _assert_one_line_failure(proc, str(state))
            assert "space" in proc.stderr.lower(), proc.stderr


def test_bad_env_value_fails_before_spawning(tmp_root: Path) -> None:
    state = tmp_root / "s"
    bad = (
        {"OPENCLAW_N_CTX": "abc"},
        {"OPENCLAW_THREADS": "x"},
        {"OPENCLAW_CACHE_RAM": "lots"},
        {"OPENCLAW_FLASH_ATTN": "maybe"},
        {"OPENCLAW_IDLE_TIMEOUT": "soon"},
    )
    for env in bad:
        cli = Cli(state, env)
        for args in (("agent", "--local", "-m", "hi"), ("daemon", "start")):
            proc = cli.run(*args, check=False, timeout=60)
            _assert_one_line_failure(proc, next(iter(env)))
            assert not (state / "logs" / "daemon.log").exists(), "a daemon was spawned"
            assert not (state / "run" / "daemon.json").exists()


def test_status_while_down_names_the_log(tmp_root: Path) -> None:
    cli = Cli(tmp_root / "s", {})
    proc = cli.run("daemon", "status", check=False)
    assert proc.returncode == 3
    assert str(tmp_root / "s" / "logs" / "daemon.log") in proc.stdout + proc.stderr
    assert json.loads(cli.run("daemon", "status", "--json", check=False).stdout)["logFile"] == str(
        tmp_root / "s" / "logs" / "daemon.log"
    )


@pytest.fixture(scope="module")
def big_ctx_cli() -> Iterator[Cli]:
    runner = Cli(make_state_dir(), {})
    yield runner
    runner.stop()
    shutil.rmtree(runner.state_dir, ignore_errors=True)


def test_n_ctx_above_training_context_warns(big_ctx_cli: Cli) -> None:
    proc = big_ctx_cli.run("daemon", "start", "--n-ctx", "9000", timeout=300)
    assert "8192" in proc.stderr and "9000" in proc.stderr, proc.stderr
    assert "train" in proc.stderr.lower(), proc.stderr


def test_start_with_another_n_ctx_says_so(big_ctx_cli: Cli) -> None:
    big_ctx_cli.run("daemon", "start", "--n-ctx", "9000", timeout=300)
    status = big_ctx_cli.status()
    pid, running_n_ctx = status["pid"], status["nCtx"]  # 9000, padded by llama.cpp
    proc = big_ctx_cli.run("daemon", "start", "--n-ctx", "4096", check=False, timeout=60)
    _no_traceback(proc)
    assert proc.returncode != 0, proc
    assert f"n_ctx {running_n_ctx}" in proc.stderr and "4096" in proc.stderr, proc.stderr
    assert "restart" in proc.stderr, proc.stderr
    assert big_ctx_cli.status()["pid"] == pid
    # The same n_ctx is still a no-op.
    big_ctx_cli.run("daemon", "start", "--n-ctx", "9000", timeout=60)


def test_restart_with_impossible_n_ctx_keeps_the_daemon(big_ctx_cli: Cli) -> None:
    big_ctx_cli.run("daemon", "start", "--n-ctx", "9000", timeout=300)
    before = big_ctx_cli.status()
    proc = big_ctx_cli.run("daemon", "restart", "--n-ctx", "100000000", check=False, timeout=120)
    _no_traceback(proc)
    assert proc.returncode != 0, proc
    assert "GiB" in proc.stderr, proc.stderr
    after = big_ctx_cli.status()
    assert after["running"] and after["pid"] == before["pid"] and after["nCtx"] == before["nCtx"]


def test_socket_in_a_shared_dir_keeps_its_mode(tmp_root: Path) -> None:
    shared = tmp_root / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp (never the real /tmp: others use it)
    sock = shared / "oc.sock"
    cli = Cli(tmp_root / "s", {"OPENCLAW_SOCKET": str(sock)})
    try:
        cli.run("daemon", "start", timeout=300)
        assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert cli.status()["socket"] == str(sock)
    finally:
        cli.stop()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def _fallback_run_dir(state: Path) -> Path:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from openclaw_daemon import config; print(config.resolve_paths().run_dir)",
        ],
        env={**os.environ, "OPENCLAW_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return Path(out.stdout.strip())


@pytest.mark.parametrize("kind", ["foreign", "wide", "symlink"])
def test_precreated_fallback_run_dir_is_refused(tmp_root: Path, kind: str) -> None:
    state = tmp_root / ("d" * 60) / ("e" * 60)
    run_dir = _fallback_run_dir(state)
    assert not str(run_dir).startswith(str(state)), "expected the short fallback run dir"
    shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        run_dir.unlink()
    target = tmp_root / "elsewhere"
    target.mkdir(mode=0o777)
    os.chmod(target, 0o777)
    if kind == "symlink":
        run_dir.symlink_to(target)
    else:
        run_dir.mkdir(mode=0o777)
        os.chmod(run_dir, 0o777)
        if kind == "foreign":
            os.chown(run_dir, 65534, 65534)
    cli = Cli(state, {})
    try:
        proc = cli.run("agent", "--local", "-m", "hi", "--max-tokens", "2", check=False, timeout=90)
        _no_traceback(proc)
        if proc.returncode == 0:  # avoided: the socket is somewhere safe
            sock = Path(cli.status()["socket"])
            assert sock.parent != run_dir and sock.parent.resolve() != target
            st = sock.parent.lstat()
            assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700
        else:  # refused, clearly, before spawning anything
            assert str(run_dir) in proc.stderr, proc.stderr
            assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr
            assert not (state / "run" / "daemon.json").exists()
        assert stat.S_IMODE(target.stat().st_mode) == 0o777
        if kind != "symlink":
            assert stat.S_IMODE(run_dir.stat().st_mode) == 0o777
    finally:
        cli.stop()
        if run_dir.is_symlink():
            run_dir.unlink()
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def test_another_uid_cannot_connect(tmp_root: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("not root: cannot create a second user to connect as (other-uid check skipped)")
    if not os.access(other_uid_check.PROBE_PYTHON, os.X_OK):
        pytest.skip(f"{other_uid_check.PROBE_PYTHON} missing: cannot run a probe as another user")
    cli = Cli(tmp_root / "s", {})
    try:
        cli.run("daemon", "start", timeout=300)
        result = other_uid_check.check(cli.status()["socket"])
        print("other-uid check:", json.dumps(result))
        assert result["refused"], result
        assert result["peer_check_refused"], result
        assert result["loosened"]["connected"], result  # the loosened probe reached the daemon
        assert cli.status()["running"]  # and the daemon still serves us
    finally:
        cli.stop()
