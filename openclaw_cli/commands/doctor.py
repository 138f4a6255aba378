"""``openclaw doctor``: say in words what recent turns got from the cache, and why not more.

Reads the daemon's turn log (no daemon needed for that part); when the daemon
runs, also reports discarded cache files and memory predicted vs observed.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from openclaw_cli import daemon_control
from openclaw_cli.views import render
from openclaw_daemon import config
from openclaw_daemon.observability.tracing import TurnLog
from openclaw_daemon.wire import ids


def _suggestions(turns: list[dict[str, Any]]) -> list[str]:
    """The same data-driven suggestions as ``openclaw stats``."""
    from openclaw_cli.views import turn_stats

    records = turn_stats.select(turns)
    return turn_stats.summarize(records)["suggestions"] if records else []


def _health(paths: config.Paths) -> dict[str, Any]:
    client = daemon_control.try_connect(paths)
    if client is None:
        return {"running": False}
    with client:
        status = client.call({"type": "status"})
    return {
        "running": True,
        "rssBytes": status["rssBytes"],
        "predictedPeakBytes": status["memoryPredicted"]["peak"],
        "cacheProblems": status["cache"]["problems"],
    }


def run(*, session_id: str | None, last: int, json_out: bool) -> int:
    session_id = ids.optional_session_id(session_id, field="--session-id")
    paths = config.resolve_paths()
    turns = TurnLog(paths.turns_file).read(limit=1000)
    if session_id:
        turns = [t for t in turns if t.get("sessionId") == session_id]
    turns = turns[-last:]
    daemon = _health(paths)
    tips = _suggestions(turns)
    report = {"turns": turns, "suggestions": tips, "daemon": daemon}
    if json_out:
        render.print_json(report)
        return 0
    out = sys.stdout
    if not turns:
        out.write("no turns recorded yet" + (f" for session {session_id}" if session_id else ""))
        out.write("\n")
    for turn in turns:
        stamp = time.strftime("%H:%M:%S", time.localtime(turn.get("at", 0)))
        cache = turn.get("cache") or {}
        who = turn.get("sessionId") or turn.get("sessionKey")  # the OpenAI front has no id
        out.write(f"{stamp} session {who}: {cache.get('summary', '?')}\n")
        divergence = cache.get("divergence")
        if divergence:
            out.write(
                f"    ...{divergence['context']!r} then prompt {divergence['prompt']!r} "
                f"vs cached {divergence['cached']!r}\n"
            )
        for notice in cache.get("notices", []):
            out.write(f"    note: {notice}\n")
    if daemon["running"]:
        out.write(
            f"daemon: {daemon['rssBytes'] / 2**20:.0f} MiB observed, "
            f"{daemon['predictedPeakBytes'] / 2**20:.0f} MiB predicted peak\n"
        )
        for problem in daemon["cacheProblems"]:
            out.write(f"daemon discarded a cache file: {problem}\n")
    else:
        out.write("daemon: not running (start it with: openclaw daemon start)\n")
    for tip in tips:
        out.write(f"suggestion: {tip}\n")
    return 0
