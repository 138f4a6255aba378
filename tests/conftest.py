"""Shared fixtures: temp state dirs, the real CLI as a subprocess, a running daemon.

End-to-end tests drive the installed ``openclaw`` command against a real
daemon on the embedded model; each module gets its own state dir (kept short
so the socket path fits AF_UNIX limits) and stops its daemon afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openclaw_daemon.wire import frames as protocol

OPENCLAW = Path(sys.executable).with_name("openclaw")

# A suite started as a background job of a non-interactive shell (`nohup scripts/test &`)
# inherits SIGINT ignored, and so would every CLI it starts: the Ctrl-C tests (a
# cancelled turn, the end of `logs --follow`) would then test nothing but the shell.
# A handler is reset to the default across exec, so the children get Ctrl-C back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# The second model family (Gemma 3 270M, sliding window 512): scripts/test
# assembles it into the venv (scripts/test_models.py); OPENCLAW_TEST_GEMMA
# points elsewhere. Read at import: the autouse fixture clears OPENCLAW_*.
GEMMA_GGUF = Path(
    os.environ.get("OPENCLAW_TEST_GEMMA")
    or Path(sys.prefix) / "models" / "gemma-3-270m-q4_k_m.gguf"
)


@dataclass
class Cli:
    """Runs the real ``openclaw`` command with its own state dir."""

    state_dir: Path
    extra_env: dict[str, str]

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        env["OPENCLAW_STATE_DIR"] = str(self.state_dir)
        env.update(self.extra_env)
        return env

    def run(
        self,
        *args: str,
        timeout: float = 120,
        check: bool = True,
        cwd: Path | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``input``: text on the command's stdin; None leaves stdin empty (not a
        terminal), as in a script."""
        proc = subprocess.run(
            [str(OPENCLAW), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            input=input if input is not None else "",
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"openclaw {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def turn(self, message: str, *args: str, **kwargs: Any) -> dict[str, Any]:
        """One ``agent --local --json`` turn; the parsed envelope."""
        proc = self.run("agent", "--local", "-m", message, "--json", *args, **kwargs)
        return json.loads(proc.stdout)

    def status(self) -> dict[str, Any]:
        proc = self.run("daemon", "status", "--json", check=False)
        return json.loads(proc.stdout)

    def stop(self) -> None:
        self.run("daemon", "stop", check=False, timeout=30)
        status_file = self.state_dir / "run" / "daemon.json"
        if status_file.exists():  # belt and braces: never leak a daemon
            pid = json.loads(status_file.read_text()).get("pid")
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def make_state_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="oc-", dir="/tmp"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e/ runs the real model: ``-m "not e2e"`` is the
    fast unit run (fake model, no subprocess daemon)."""
    for item in items:
        if "e2e" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def isolated_state_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own empty state dir, so nothing a test does in-process
    can read or write the user's ~/.openclaw (the CLI fixtures set their own)."""
    state = make_state_dir()
    for name in [k for k in os.environ if k.startswith("OPENCLAW_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OPENCLAW_STATE_DIR", str(state))
    yield state
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """The Gemma 3 270M GGUF; a missing file fails the test (never a skip)."""
    if not GEMMA_GGUF.is_file():
        pytest.fail(
            f"{GEMMA_GGUF} is missing: run scripts/test (it installs and assembles it), "
            "or `.venv/bin/python scripts/test_models.py`"
        )
    return GEMMA_GGUF


@pytest.fixture
def cli() -> Iterator[Cli]:
    """A CLI with a fresh, empty state dir; stops any daemon it started."""
    runner = Cli(make_state_dir(), {})
    yield runner
    runner.stop()
    shutil.rmtree(runner.state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def upstream_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``/v1`` URL of a real llama-cpp-python server on 127.0.0.1 serving the
    embedded model, shared by the upstream tests (started once, stopped at the end)."""
    from tests.upstream_server import llama_cpp_server

    with llama_cpp_server(tmp_path_factory.mktemp("upstream")) as url:
        yield url


@pytest.fixture(scope="session")
def native_tools_upstream_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same server with ``--chat_format chatml-function-calling``: OpenAI tools in
    the request, ``tool_calls`` in the reply (its own tool template, not the GGUF's)."""
    from tests.upstream_server import llama_cpp_server

    log_dir = tmp_path_factory.mktemp("native-upstream")
    with llama_cpp_server(log_dir, chat_format="chatml-function-calling") as url:
        yield url


@pytest.fixture(scope="session")
def llama_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``/v1`` URL of llama.cpp's own llama-server on 127.0.0.1 serving the
    embedded model (``-c 8192``, two slots, alias ``smollm2``), started once and
    stopped at the end. Not installed fails the test (never a skip): scripts/test
    builds it, or ``LLAMA_SERVER`` names one."""
    from tests.upstream_server import LlamaServerMissing, llama_server

    running = contextlib.ExitStack()
    try:
        url, took = running.enter_context(llama_server(tmp_path_factory.mktemp("llama-server")))
    except LlamaServerMissing as exc:
        missing = str(exc)
    else:
        missing = ""
    if missing:  # failed outside the except: the message alone, not a chained traceback
        pytest.fail(missing, pytrace=False)
    with running:
        print(f"llama-server on {url}, healthy after {took:.1f} s")
        yield url


@pytest.fixture(scope="module")
def warm_cli() -> Iterator[Cli]:
    """A CLI whose daemon is already running, shared by a module's tests."""
    runner = Cli(make_state_dir(), {})
    runner.run("daemon", "start", timeout=300)
    yield runner
    runner.stop()
    shutil.rmtree(runner.state_dir, ignore_errors=True)


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def transcript(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def read_frame(sock: socket.socket) -> dict[str, Any]:
    """The next frame on a raw daemon socket (no client-side checks)."""

    def read_exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                break
            data += chunk
        return data

    frame = protocol.read_frame(read_exactly)
    assert frame is not None, "the daemon closed without a frame"
    return frame
