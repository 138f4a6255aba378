"""The exec tool: a shell command in the workspace, with the CLI caller's environment.

The environment is the one the turn's CLI invocation sent, never the daemon's
(an empty one stays empty), so ``exec`` sees the user's PATH and variables.
The timeout must be a finite number of seconds and is always held to the
turn's ``--exec-timeout`` cap. The command runs in its own
process group, killed whole at the timeout; output is capped.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from openclaw_daemon.wire.errors import ToolError

DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 600.0
MAX_OUTPUT_BYTES = 64 * 1024


def _cap_of(cap: float) -> float:
    """The turn's cap, held to (0, MAX_TIMEOUT_S]: a NaN or inf from the request cannot lift it."""
    if isinstance(cap, bool) or not isinstance(cap, int | float) or not math.isfinite(cap):
        return DEFAULT_TIMEOUT_S
    return min(cap, MAX_TIMEOUT_S) if cap > 0 else DEFAULT_TIMEOUT_S


def check_timeout(raw: Any, cap: float) -> float:
    """The seconds a command may run: a finite number in (0, MAX_TIMEOUT_S], then capped.

    ``min(nan, cap)`` is NaN and ``communicate(timeout=nan)`` never times out,
    so anything but a plain finite positive number is refused before the
    command starts.
    """
    cap = _cap_of(cap)
    if raw is None:
        return min(DEFAULT_TIMEOUT_S, cap)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ToolError(f"timeout must be a number of seconds, not {raw!r}")
    if not math.isfinite(raw) or not 0 < raw <= MAX_TIMEOUT_S:
        raise ToolError(f"timeout must be more than 0 and at most {MAX_TIMEOUT_S:g} s, not {raw!r}")
    return min(float(raw), cap)


def run(
    workspace: Path, args: dict[str, Any], env: dict[str, str], *, cap: float = MAX_TIMEOUT_S
) -> str:
    command = args.get("command")
    if not isinstance(command, str) or not command.strip():
        raise ToolError("a command is required")
    if "\0" in command:
        raise ToolError("a command may not contain NUL bytes")
    timeout = check_timeout(args.get("timeout"), cap)
    # Always the caller's environment, even an empty one: ``env or None``
    # would hand an empty environment the daemon's own.
    env = {k: v for k, v in env.items() if "\0" not in k + v and "=" not in k and k}
    process = subprocess.Popen(
        command,
        shell=True,
        cwd=workspace,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise ToolError(
            f"timed out after {timeout:g} s and was killed; output so far:\n" + _cap(output)
        ) from None
    text = _cap(output)
    if process.returncode != 0:
        raise ToolError(f"exit code {process.returncode}\n{text}")
    return text or "(no output)"


def _cap(output: bytes) -> str:
    if len(output) <= MAX_OUTPUT_BYTES:
        return output.decode("utf-8", errors="replace")
    half = MAX_OUTPUT_BYTES // 2
    omitted = len(output) - MAX_OUTPUT_BYTES
    return (
        output[:half].decode("utf-8", errors="replace")
        + f"\n[... {omitted} bytes omitted ...]\n"
        + output[-half:].decode("utf-8", errors="replace")
    )
