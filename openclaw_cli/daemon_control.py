"""Find, start and stop the daemon from the CLI.

The first command that needs the daemon starts it detached (its output goes to
the daemon log) and waits until its socket answers; a daemon that dies while
starting is reported with the tail of its log. Stale status files and sockets
from a killed daemon are detected and removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openclaw_daemon import config
from openclaw_daemon.config import Paths
from openclaw_daemon.wire.client import DaemonClient
from openclaw_daemon.wire.errors import DaemonUnavailableError, OpenClawError, VersionMismatchError

if TYPE_CHECKING:
    import subprocess

START_TIMEOUT_S = 180.0
Waiting = Callable[[str, float], None]


def log_tail(paths: Paths, lines: int = 15) -> str:
    try:
        text = paths.log_file.read_text(errors="replace")
    except FileNotFoundError:
        return "(no daemon log)"
    return "\n".join(text.splitlines()[-lines:])


def read_status_file(paths: Paths) -> dict[str, Any] | None:
    try:
        data = json.loads(paths.status_file.read_text())
        return data if isinstance(data, dict) else None
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie (killed, not yet reaped) counts as gone."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def clean_stale(paths: Paths) -> int | None:
    """Remove the status file and socket of a daemon that is gone; its pid or None."""
    status = read_status_file(paths)
    if status is None or pid_alive(int(status.get("pid", 0))):
        return None
    with contextlib.suppress(FileNotFoundError):
        paths.status_file.unlink()
    with contextlib.suppress(FileNotFoundError):
        paths.socket.unlink()
    return int(status.get("pid", 0))


def try_connect(paths: Paths) -> DaemonClient | None:
    client = DaemonClient(paths.socket)
    try:
        client.connect()
    except DaemonUnavailableError:
        return None
    return client


def server_command(
    *,
    model: str | None = None,
    n_ctx: int | None = None,
    cache_ram: str | None = None,
    cache_disk: str | None = None,
    chat_template: str | None = None,
    n_gpu_layers: int | None = None,
    idle_timeout: float | None = None,
    preload: str | None = None,
    parallel: int | None = None,
) -> list[str]:
    """The daemon's command line; options left unset fall back to its environment."""
    command = [sys.executable, "-m", "openclaw_daemon.serve.server"]
    for flag, value in (
        ("--model", model),
        ("--n-ctx", n_ctx),
        ("--cache-ram", cache_ram),
        ("--cache-disk", cache_disk),
        ("--chat-template", chat_template),
        ("--preload", preload),
        ("--parallel", parallel),
    ):
        if value:
            command += [flag, str(value)]
    if n_gpu_layers is not None:  # 0 is a choice (CPU only), not "unset"
        command += ["--n-gpu-layers", str(n_gpu_layers)]
    if idle_timeout is not None:  # 0 is a choice (never), not "unset"
        command += ["--idle-timeout", str(idle_timeout)]
    return command


def spawn(paths: Paths, command: list[str]) -> subprocess.Popen[bytes]:
    import subprocess  # only when starting the daemon: a warm turn never needs it

    with paths.log_file.open("ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            # ``python -m`` puts the working directory first on sys.path: run from
            # the state dir so a stray ``openclaw_daemon/`` in the user's cwd is
            # never imported instead of the installed one.
            cwd=paths.state_dir,
            # Its paths as we resolved them: a relative OPENCLAW_STATE_DIR would
            # otherwise be resolved again from the state dir itself.
            env=config.daemon_environment(paths),
        )


def connect_or_start(
    paths: Paths,
    *,
    command: list[str] | None = None,
    waiting: Waiting | None = None,
) -> tuple[DaemonClient, bool]:
    """A connected client, starting the daemon first if needed; and whether we did."""
    client = try_connect(paths)
    if client is not None:
        return client, False
    prepare_start(paths)
    lock_path = paths.state_dir / "daemon.start.lock"
    with lock_path.open("w") as lock:
        # Two CLIs starting at once: one spawns, the other waits, then connects.
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = try_connect(paths)
        if client is not None:
            return client, False
        clean_stale(paths)
        process = spawn(paths, command or server_command())
        return wait_until_ready(paths, process, waiting), True


def prepare_start(paths: Paths) -> None:
    """Everything checkable before spawning: a bad setting or an unusable state
    dir is one clear error now, and no daemon is started."""
    from openclaw_daemon import state_dirs

    config.check_environment()
    state_dirs.prepare(paths)


def wait_until_ready(
    paths: Paths, process: subprocess.Popen[bytes], waiting: Waiting | None
) -> DaemonClient:
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if paths.socket.exists():
            client = try_connect(paths)
            if client is not None:
                return client
        code = process.poll()
        if code is not None:
            raise DaemonUnavailableError(
                f"the daemon exited with code {code} while starting. Log tail:\n" + log_tail(paths),
                hint=f"Full log: {paths.log_file}",
            )
        if elapsed > START_TIMEOUT_S:
            raise DaemonUnavailableError(
                f"the daemon did not become ready within {START_TIMEOUT_S:.0f} s. Log tail:\n"
                + log_tail(paths),
                hint=f"Full log: {paths.log_file}",
            )
        if waiting is not None:
            waiting("starting the daemon and loading the model", elapsed)
        time.sleep(0.02)


def stop(paths: Paths, *, timeout: float = 15.0) -> int | None:
    """Stop the daemon; its pid, or None if it was not running."""
    try:
        client = try_connect(paths)
    except VersionMismatchError:
        # A daemon from another version (say, before an upgrade) cannot be
        # asked; it still gets SIGTERM, which stops it just as cleanly.
        client = None
    if client is None:
        status = read_status_file(paths)
        if status and pid_alive(int(status.get("pid", 0))):
            pid = int(status["pid"])
            os.kill(pid, signal.SIGTERM)
            _wait_gone(pid, timeout)
            return pid
        clean_stale(paths)
        return None
    with client:
        pid = int(client.daemon_info.get("pid", 0))
        try:
            client.call({"type": "stop"}, timeout=timeout)
        except OpenClawError:
            if pid:
                os.kill(pid, signal.SIGTERM)
    if pid:
        _wait_gone(pid, timeout)
    return pid or None


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
