"""Real OpenAI-compatible upstreams for the tests, serving the embedded model on
127.0.0.1: llama-cpp-python's own server (``python -m llama_cpp.server``, the
``server`` extra), and llama.cpp's own ``llama-server`` (scripts/llama_server_peer.py,
built once by scripts/test). We wrote neither, so the upstream tests are checked
against real counterparts."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx

from openclaw_daemon import config

SERVED_ALIAS = "smollm2"
START_TIMEOUT_SECONDS = 90.0
LLAMA_SERVER_START_TIMEOUT_SECONDS = 120.0
PEER_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "llama_server_peer.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def llama_cpp_server(
    log_dir: Path, n_ctx: int = 4096, chat_format: str | None = None
) -> Iterator[str]:
    """Start the server, wait until it lists its model, yield its ``/v1`` base URL,
    and stop it afterwards (also when the start fails). ``chat_format``: the server's
    ``--chat_format`` (``chatml-function-calling`` takes OpenAI tools), else the
    template the GGUF carries."""
    port = free_port()
    log = (log_dir / "llama_cpp_server.log").open("w")
    formats = ["--chat_format", chat_format] if chat_format else []
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(config.embedded_model_path()),
            "--model_alias",
            SERVED_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(n_ctx),
            "--verbose",
            "False",
            *formats,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited {proc.returncode}; see {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not start in time; see {log.name}")
            time.sleep(0.3)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class LlamaServerMissing(RuntimeError):
    """No llama-server to start: scripts/test builds one."""


@functools.cache
def _peer() -> ModuleType:
    """scripts/llama_server_peer.py, loaded by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("llama_server_peer", PEER_SCRIPT)
    assert spec is not None and spec.loader is not None, PEER_SCRIPT
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def llama_server(log_dir: Path, n_ctx: int = 8192, slots: int = 2) -> Iterator[tuple[str, float]]:
    """Start llama-server (``LLAMA_SERVER``, or the one scripts/test built), wait for
    ``/health``, yield its ``/v1`` base URL and the seconds it took to start, and
    stop it afterwards. One KV buffer for all slots: each may use all of ``n_ctx``."""
    peer = _peer()
    binary = peer.find_binary()
    if binary is None or not binary.is_file():
        raise LlamaServerMissing(
            f"llama-server is not installed ({binary or peer.PEER_VENV}): run scripts/test, "
            "which builds it once (~10 min) into .bench/peers/venv, or set "
            "LLAMA_SERVER=/path/to/llama-server (and LD_LIBRARY_PATH for its libraries)"
        )
    log = log_dir / "llama-server.log"
    extra = ["-np", str(slots), "--kv-unified"]
    server = peer.LlamaServer(
        binary, config.embedded_model_path(), log, n_ctx, alias=SERVED_ALIAS, extra=extra
    )
    try:
        took = server.wait_healthy(LLAMA_SERVER_START_TIMEOUT_SECONDS)
        yield server.url + "/v1", took
    finally:
        server.stop()
