"""OpenClaw edge command-line client.

Thin by design: it imports the protocol, config and client modules of
``openclaw_daemon`` and nothing heavier until a command needs it; it never
imports llama_cpp. ``BOOT`` anchors the turn trace at the process's real start.
``wants_json`` is here because both ``main`` and the agent command need it and
this package init is loaded anyway: a module of its own would cost every start.
"""

from __future__ import annotations

import os
import time


def _process_age_s() -> float:
    """Seconds since this process started, from /proc where there is one."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        with open("/proc/uptime", "rb") as handle:
            uptime = float(handle.read().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
        return max(0.0, uptime - int(fields[19]) / ticks)
    except (OSError, ValueError, IndexError):
        return 0.0


# perf_counter() value at the moment the process started (approximately).
BOOT = time.perf_counter() - _process_age_s()


def __getattr__(name: str) -> object:
    """``from openclaw_cli import Client`` (the Python API, docs/python-api.md),
    loaded on first use: the CLI's own start never pays for it."""
    if name in ("Client", "AsyncClient"):
        from openclaw_cli import client

        return getattr(client, name)
    raise AttributeError(f"module 'openclaw_cli' has no attribute {name!r}")


def wants_json(argv: list[str]) -> bool:
    """``--json`` among the options (not after ``--``, where it would be text)."""
    head = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in head
