"""The exec tool: a shell command in the workspace, with the CLI caller's environment.

The environment is the one the turn's CLI invocation sent, not the daemon's,
so ``exec`` sees the user's PATH and variables. The command runs in its own
process group, killed whole at the timeout; output is capped.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from openclaw_daemon.errors import ToolError

DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 600.0
MAX_OUTPUT_BYTES = 64 * 1024


def run(
    workspace: Path, args: dict[str, Any], env: dict[str, str], *, cap: float = MAX_TIMEOUT_S
) -> str:
    command = args.get("command")
    if not isinstance(command, str) or not command.strip():
        raise ToolError("a command is required")
    try:
        timeout = min(float(args.get("timeout") or DEFAULT_TIMEOUT_S), cap, MAX_TIMEOUT_S)
    except (TypeError, ValueError):
        raise ToolError("timeout must be a number of seconds") from None
    process = subprocess.Popen(
        command,
        shell=True,
        cwd=workspace,
        env=env or None,
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
