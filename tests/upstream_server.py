"""A real OpenAI-compatible upstream for the tests: llama-cpp-python's own server
(``python -m llama_cpp.server``, the ``server`` extra) serving the embedded model on
127.0.0.1. We did not write it, so the upstream tests are checked against a real
counterpart with no second llama.cpp build."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from openclaw_daemon import config

SERVED_ALIAS = "smollm2"
START_TIMEOUT_SECONDS = 90.0


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
