"""``openclaw daemon start|stop|status|restart``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from openclaw_cli import daemon_control, render
from openclaw_daemon import config


def _model_arg(model: str | None) -> str | None:
    if model is None:
        return None
    path = Path(model).expanduser().resolve()
    config.check_gguf(path)
    return str(path)


def validate_options(*, model: str | None, cache_ram: str | None, cache_disk: str | None) -> None:
    """A typo is a clear error now, not a daemon that fails to start."""
    _model_arg(model)
    for value, name in ((cache_ram, "--cache-ram"), (cache_disk, "--cache-disk")):
        if value is not None:
            config.parse_size(value, name=name)


def start(
    *,
    model: str | None,
    n_ctx: int | None,
    foreground: bool,
    cache_ram: str | None = None,
    cache_disk: str | None = None,
) -> None:
    paths = config.resolve_paths()
    validate_options(model=model, cache_ram=cache_ram, cache_disk=cache_disk)
    command = daemon_control.server_command(
        model=_model_arg(model), n_ctx=n_ctx, cache_ram=cache_ram, cache_disk=cache_disk
    )
    if foreground:
        from openclaw_daemon.transport import ensure_private_dir

        ensure_private_dir(paths.state_dir)
        os.chdir(paths.state_dir)  # as for a detached daemon: see daemon_control.spawn
        os.execv(sys.executable, command)
    progress = render.Progress(enabled=True)
    client, spawned = daemon_control.connect_or_start(
        paths, command=command, waiting=progress.waiting
    )
    progress.stop()
    with client:
        info = client.call({"type": "status"})
    verb = "started" if spawned else "already running"
    render.notice(
        f"daemon {verb}: pid {info['pid']}, model {info['model']}, socket {info['socket']}"
    )


def stop() -> None:
    paths = config.resolve_paths()
    pid = daemon_control.stop(paths)
    render.notice(f"daemon stopped (pid {pid})" if pid else "daemon is not running")


def status(*, json_out: bool) -> int:
    paths = config.resolve_paths()
    client = daemon_control.try_connect(paths)
    if client is None:
        stale = daemon_control.clean_stale(paths)
        info: dict[str, Any] = {"running": False, "socket": str(paths.socket)}
        if stale:
            info["cleanedStalePid"] = stale
        if json_out:
            render.print_json(info)
        else:
            extra = f" (removed the stale pid file of pid {stale})" if stale else ""
            render.notice(f"daemon is not running{extra}")
        return 3
    with client:
        info = {"running": True, **client.call({"type": "status"})}
    if json_out:
        render.print_json(info)
        return 0
    rows = [
        ("pid", info["pid"]),
        ("model", f"{info['model']} ({info['modelPath']})"),
        ("uptime", f"{info['uptimeS']:.0f} s"),
        (
            "rss",
            f"{info['rssBytes'] / 2**20:.0f} MiB observed, "
            f"{info['memoryPredicted']['peak'] / 2**20:.0f} MiB predicted peak",
        ),
        ("kv cache", _cache_line(info["cache"])),
        ("n_ctx", info["nCtx"]),
        ("gpu offload", "yes" if info["gpuOffload"] else "no (CPU)"),
        ("sessions", info["sessions"]),
        ("turns served", info["turnsServed"]),
        ("socket", info["socket"]),
        ("log", info["logFile"]),
    ]
    for name, value in rows:
        sys.stdout.write(f"{name:<13} {value}\n")
    return 0


def _cache_line(cache: dict[str, Any]) -> str:
    return (
        f"{cache['ramEntries']} in RAM ({cache['ramBytes'] / 2**20:.0f} of "
        f"{cache['ramBudget'] / 2**20:.0f} MiB), {cache['diskEntries']} on disk "
        f"({cache['diskBytes'] / 2**20:.0f} of {cache['diskBudget'] / 2**20:.0f} MiB)"
    )
