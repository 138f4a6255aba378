"""A daemon in its own temp state dir, started through the real CLI.

Owns the processes the suite starts: it only ever signals the pid its own
state dir's status file names, never a daemon found by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openclaw_cli.daemon_control import pid_alive
from openclaw_daemon.wire.client import DaemonClient

OPENCLAW = Path(sys.executable).with_name("openclaw")


@dataclass
class Harness:
    """One state dir, its daemon, and the real CLI pointed at it."""

    state_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def fresh(cls, prefix: str = "oc-f-", **env: str) -> Harness:
        # /tmp and a short prefix: the socket path must fit AF_UNIX's 108 bytes.
        return cls(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")), dict(env))

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        env["OPENCLAW_STATE_DIR"] = str(self.state_dir)
        env.update(self.extra_env)
        return env

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "run" / "daemon.sock"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "logs" / "daemon.log"

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache" / "kv"

    def sessions_dir(self, agent_id: str = "main") -> Path:
        return self.state_dir / "agents" / agent_id / "sessions"

    def run(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """The real CLI; a hung command becomes exit code -9, never a hung suite."""
        try:
            return subprocess.run(
                [str(OPENCLAW), *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.state_dir,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return subprocess.CompletedProcess(exc.cmd, -9, out, f"timed out after {timeout}s")

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(OPENCLAW), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.state_dir,
        )

    def turn(
        self, message: str, session: str, *extra: str, max_tokens: int = 8, timeout: float = 300
    ) -> tuple[bool, dict[str, Any], str]:
        """One ``agent --local --json`` turn: (ok, envelope, stderr)."""
        proc = self.run(
            "agent",
            "--local",
            "--session-id",
            session,
            "-m",
            message,
            "--json",
            "--max-tokens",
            str(max_tokens),
            *extra,
            timeout=timeout,
        )
        try:
            envelope = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except json.JSONDecodeError:
            envelope = {}
        return proc.returncode == 0, envelope, proc.stderr.strip()

    def start(self, timeout: float = 300.0) -> None:
        proc = self.run("daemon", "start", timeout=timeout)
        if proc.returncode != 0 or self.pid() is None:
            raise RuntimeError(f"daemon start failed ({proc.returncode}): {proc.stderr.strip()}")

    def pid(self) -> int | None:
        try:
            status = json.loads((self.state_dir / "run" / "daemon.json").read_text())
        except (OSError, ValueError):
            return None
        pid = status.get("pid")
        return int(pid) if isinstance(pid, int) and pid_alive(pid) else None

    def alive(self) -> bool:
        """The daemon answers a ping on its socket."""
        try:
            with DaemonClient(self.socket_path, connect_timeout=10) as client:
                client.call({"type": "ping"}, timeout=10)
            return True
        except Exception:  # any failure to answer is "not alive" here
            return False

    def kill9(self) -> bool:
        """SIGKILL our own daemon (the pid in our status file); True if one died."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        self.run("daemon", "stop", timeout=60)
        self.kill9()  # belt and braces: never leak a daemon

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)


def turn_request(message: str, session: str, **over: Any) -> dict[str, Any]:
    """A ``turn`` frame as the CLI builds it (docs/protocol.md); ``over`` takes
    the wire's camelCase keys (``maxTokens=48``)."""
    request: dict[str, Any] = {
        "type": "turn",
        "message": message,
        "agentId": "main",
        "sessionId": session,
        "maxTokens": 8,
        "temperature": 0.0,
        "seed": 1,
        "stop": [],
        "cwd": "/tmp",
        "timeoutS": None,
        "system": None,
        "toolChoice": "auto",
        "maxSteps": 2,
        "allow": [],
        "execTimeout": 10.0,
        "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    }
    request.update(over)
    return request
