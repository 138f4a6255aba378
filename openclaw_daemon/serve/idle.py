"""Idle exit, as ollama's keep_alive: after ``timeout_s`` with no connection, no
turn and no background job, the daemon stops itself. Stopping parks the live
session and finishes its disk writes (``Daemon.serve``), so the next turn starts
the daemon again and restores from disk (L3) instead of prefilling cold.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("openclawd")


def watch(
    timeout_s: float,
    *,
    idle_for: Callable[[], float],
    stop: Callable[[], None],
    stopped: threading.Event,
) -> threading.Thread | None:
    """Start the watcher (none when ``timeout_s`` is 0: never exit when idle).
    ``idle_for`` is 0 while anything is going on, else seconds since it ended."""
    if timeout_s <= 0:
        return None
    poll = min(5.0, max(0.2, timeout_s / 10))

    def run() -> None:
        while not stopped.wait(poll):
            quiet = idle_for()
            if quiet >= timeout_s:
                log.info("idle for %.0f s: stopping (sessions resume from disk)", quiet)
                stop()
                return

    thread = threading.Thread(target=run, name="idle-exit", daemon=True)
    thread.start()
    return thread
