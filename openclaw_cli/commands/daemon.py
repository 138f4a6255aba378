"""``openclaw daemon start|stop|status|restart``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from openclaw_cli import daemon_control
from openclaw_cli.views import render
from openclaw_daemon import config
from openclaw_daemon.wire import ids
from openclaw_daemon.wire.errors import BadRequestError


def model_arg(model: str | None) -> str | None:
    """--model NAME|PATH as an absolute path to an existing GGUF file."""
    if model is None:
        return None
    path = config.resolve_model_path(model)
    config.check_gguf(path)
    return str(path)


def validate_options(
    *,
    model: str | None,
    cache_ram: str | None,
    cache_disk: str | None,
    n_gpu_layers: int | None = None,
) -> None:
    """A typo is a clear error now, not a daemon that fails to start."""
    model_arg(model)
    config.n_gpu_layers_setting(n_gpu_layers)
    for value, name in ((cache_ram, "--cache-ram"), (cache_disk, "--cache-disk")):
        if value is not None:
            config.parse_size(value, name=name)


def chat_template_arg(value: str | None) -> str | None:
    """--chat-template as the daemon gets it: a builtin's name as it is, a file
    as an absolute path (the daemon runs in its state dir)."""
    if not value:
        return None
    path = Path(value).expanduser()
    if path.is_file():
        return str(path.resolve())
    if "/" in value or "." in value:
        raise BadRequestError(
            f"--chat-template {value!r}: no such file",
            hint="Give a builtin template's name (chatml, gemma, llama3, mistral) or a Jinja file.",
        )
    return value  # a name: the daemon knows its builtins and refuses others


def _requested_n_ctx(n_ctx: int | None) -> int | None:
    """--n-ctx, else OPENCLAW_N_CTX if set; None when the user asked for nothing."""
    if n_ctx:
        return n_ctx
    return config.n_ctx_setting() if os.environ.get(config.ENV_N_CTX) else None


def preflight(
    *, model: str | None, n_ctx: int | None, cache_ram: str | None, freed: int = 0
) -> None:
    """Refuse a configuration that will not fit, and warn about a long n_ctx, before
    anything is stopped or spawned (the daemon checks again when it starts)."""
    from openclaw_daemon.model import admission  # reads the GGUF header only

    model_path = Path(model_arg(model) or config.resolve_model_path())
    effective = n_ctx or config.n_ctx_setting()
    admission.predict_memory(
        model_path, effective, config.cache_ram_setting(cache_ram), freed=freed
    )
    warning = admission.n_ctx_warning(model_path, effective)
    if warning:
        render.notice(warning)


def start(
    *,
    model: str | None,
    n_ctx: int | None,
    foreground: bool,
    cache_ram: str | None = None,
    cache_disk: str | None = None,
    checked: bool = False,
    chat_template: str | None = None,
    n_gpu_layers: int | None = None,
    idle_timeout: float | None = None,
    preload: str | None = None,
    parallel: int | None = None,
) -> None:
    paths = config.resolve_paths()
    config.check_environment()
    validate_options(
        model=model, cache_ram=cache_ram, cache_disk=cache_disk, n_gpu_layers=n_gpu_layers
    )
    config.parallel_setting(parallel)  # a bad value before spawning
    command = daemon_control.server_command(
        model=model_arg(model),
        n_ctx=n_ctx,
        cache_ram=cache_ram,
        cache_disk=cache_disk,
        chat_template=chat_template_arg(chat_template),
        n_gpu_layers=n_gpu_layers,
        idle_timeout=idle_timeout,
        preload=ids.session_ref(preload, field="--preload") if preload else None,
        parallel=parallel,
    )
    if idle_timeout is not None:
        config.idle_timeout_setting(idle_timeout)  # a bad value before spawning
    running = daemon_control.try_connect(paths)
    if running is not None:
        with running:
            info = running.call({"type": "status"})
        _check_same_config(info, model=model, n_ctx=_requested_n_ctx(n_ctx), parallel=parallel)
        render.notice(
            f"daemon already running: pid {info['pid']}, model {info['model']}, "
            f"socket {info['socket']}"
        )
        return
    if not checked:
        preflight(model=model, n_ctx=n_ctx, cache_ram=cache_ram)
    if foreground:
        daemon_control.prepare_start(paths)
        os.environ.update(config.daemon_environment(paths))
        os.chdir(paths.state_dir)  # as for a detached daemon: see daemon_control.spawn
        os.execv(sys.executable, command)
    progress = render.Progress(enabled=True)
    client, spawned = daemon_control.connect_or_start(
        paths, command=command, waiting=progress.waiting
    )
    progress.stop()
    with client:
        info = client.call({"type": "status"})
    if not spawned:  # another CLI started one meanwhile
        _check_same_config(info, model=model, n_ctx=_requested_n_ctx(n_ctx), parallel=parallel)
    verb = "started" if spawned else "already running"
    render.notice(
        f"daemon {verb}: pid {info['pid']}, model {info['model']}, socket {info['socket']}"
    )


def _check_same_config(
    info: dict[str, Any], *, model: str | None, n_ctx: int | None, parallel: int | None = None
) -> None:
    """A running daemon with other settings is an error, not a silent no-op."""
    differences = []
    status = info.get("parallel") or {}
    running = int(status.get("parallel") or 1)
    # A sliding-window model runs one sequence whatever was asked: the same flag
    # again names the same daemon.
    if parallel is not None and parallel not in (running, status.get("asked")):
        differences.append(f"--parallel {running}, not {parallel}")
    # llama.cpp pads the context to a multiple of 256: 9000 runs as 9216.
    if n_ctx is not None and int(info.get("nCtx") or 0) not in (n_ctx, -(-n_ctx // 256) * 256):
        differences.append(f"n_ctx {info.get('nCtx')}, not {n_ctx}")
    wanted = model_arg(model)
    if wanted is not None and str(info.get("modelPath")) != wanted:
        differences.append(f"model {info.get('modelPath')}, not {wanted}")
    if differences:
        raise BadRequestError(
            f"the daemon (pid {info.get('pid')}) is already running with "
            + " and ".join(differences),
            hint="To change it, run: openclaw daemon restart"
            + (f" --n-ctx {n_ctx}" if n_ctx is not None else "")
            + (f" --model {wanted}" if wanted else "")
            + (f" --parallel {parallel}" if parallel is not None else ""),
        )


def restart(
    *,
    model: str | None,
    n_ctx: int | None,
    cache_ram: str | None,
    cache_disk: str | None,
    chat_template: str | None = None,
    n_gpu_layers: int | None = None,
    idle_timeout: float | None = None,
    preload: str | None = None,
    parallel: int | None = None,
) -> None:
    """Check the new configuration (memory included) first, then stop and start:
    an impossible option must not leave you with no daemon."""
    paths = config.resolve_paths()
    config.check_environment()
    validate_options(
        model=model, cache_ram=cache_ram, cache_disk=cache_disk, n_gpu_layers=n_gpu_layers
    )
    if idle_timeout is not None:
        config.idle_timeout_setting(idle_timeout)  # before stopping the running one
    config.parallel_setting(parallel)
    if preload:
        ids.session_ref(preload, field="--preload")
    freed = 0
    running = daemon_control.try_connect(paths)
    if running is not None:
        with running:
            freed = int(running.call({"type": "status"}).get("rssBytes") or 0)
    preflight(model=model, n_ctx=n_ctx, cache_ram=cache_ram, freed=freed)
    stop()
    start(
        model=model,
        n_ctx=n_ctx,
        foreground=False,
        cache_ram=cache_ram,
        cache_disk=cache_disk,
        checked=True,
        idle_timeout=idle_timeout,
        preload=preload,
        chat_template=chat_template,
        n_gpu_layers=n_gpu_layers,
        parallel=parallel,
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
        info: dict[str, Any] = {
            "running": False,
            "socket": str(paths.socket),
            "logFile": str(paths.log_file),
        }
        if stale:
            info["cleanedStalePid"] = stale
        if json_out:
            render.print_json(info)
        else:
            extra = f" (removed the stale pid file of pid {stale})" if stale else ""
            render.notice(f"daemon is not running{extra}; its log: {paths.log_file}")
        return 3
    with client:
        info = {"running": True, **client.call({"type": "status"})}
    if json_out:
        render.print_json(info)
        return 0
    rows = [
        ("pid", info["pid"]),
        ("model", f"{info['model']} ({info['modelPath']})"),
        ("model name", info.get("modelName", "")),
        ("uptime", f"{info['uptimeS']:.0f} s"),
        (
            "rss",
            f"{info['rssBytes'] / 2**20:.0f} MiB observed, "
            f"{info['memoryPredicted']['peak'] / 2**20:.0f} MiB predicted peak",
        ),
        ("kv cache", _cache_line(info["cache"])),
        ("n_ctx", info["nCtx"]),
        ("chat template", f"{info.get('templateFamily')} ({info.get('templateSource')})"),
        ("kv memory", _kv_memory_line(info.get("kvMemory") or {})),
        ("offload", _offload_line(info)),
        ("parallel", _parallel_line(info.get("parallel") or {})),
        ("prompt lookup", _lookup_line(info.get("promptLookup") or {})),
        ("sessions", info["sessions"]),
        ("turns served", info["turnsServed"]),
        ("socket", info["socket"]),
        ("log", info["logFile"]),
    ]
    for name, value in rows:
        sys.stdout.write(f"{name:<13} {value}\n")
    return 0


def _parallel_line(parallel: dict[str, Any]) -> str:
    count = int(parallel.get("parallel") or 1)
    if count == 1:
        return "1 turn at a time (--parallel 1)"
    shared = f", {parallel.get('sharedSteps', 0)} of {parallel.get('steps', 0)} steps shared"
    return f"{count} turns at once, {parallel.get('running', 0)} running{shared}"


def _lookup_line(lookup: dict[str, Any]) -> str:
    exact = "drafts exact" if lookup.get("draftsExact") else "drafts not exact on this build"
    default = "on" if lookup.get("byDefault") else "off"
    return f"{default} by default at temperature 0 ({exact}; --prompt-lookup on|off)"


def _offload_line(info: dict[str, Any]) -> str:
    offload = info.get("offload") or {}
    if not offload.get("layersOffloaded"):
        return f"cpu (0 of {offload.get('layersTotal', '?')} layers on a GPU)"
    return (
        f"{offload['backend']}: {offload['layersOffloaded']} of {offload['layersTotal']} "
        f"layers on the GPU ({info['memoryPredicted'].get('device', 0) / 2**20:.0f} MiB "
        "predicted device memory)"
    )


def _cache_line(cache: dict[str, Any]) -> str:
    return (
        f"{cache['ramEntries']} in RAM ({cache['ramBytes'] / 2**20:.0f} of "
        f"{cache['ramBudget'] / 2**20:.0f} MiB), {cache['diskEntries']} on disk "
        f"({cache['diskBytes'] / 2**20:.0f} of {cache['diskBudget'] / 2**20:.0f} MiB)"
    )


def _kv_memory_line(memory: dict[str, Any]) -> str:
    """How far a cached state can be reused: any prefix, or less (docs/internals.md)."""
    kind = memory.get("kind", "full")
    if kind == "sliding-window":
        return f"sliding window of {memory.get('slidingWindow')} tokens (reuse checked per state)"
    if kind in ("recurrent", "hybrid"):
        return f"{kind} (reused only at exact stored boundaries)"
    return "full attention (any cached prefix reused)"
