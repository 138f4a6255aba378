"""``openclaw logs``: the daemon log's last lines, and ``--follow`` for new ones
(as ``tail -F``: a log truncated or replaced is read again from its start)."""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from pathlib import Path

from openclaw_cli.views import render
from openclaw_daemon import config
from openclaw_daemon.wire.errors import BadRequestError

_POLL_S = 0.25


def _last_lines(path: Path, count: int) -> tuple[list[str], int]:
    """The last ``count`` lines and the offset reading stopped at."""
    with path.open("rb") as handle:
        tail: deque[bytes] = deque(handle, maxlen=count) if count else deque()
        end = handle.tell() if count else handle.seek(0, os.SEEK_END)
    return [line.decode("utf-8", "replace").rstrip("\n") for line in tail], end


def show(*, lines: int, follow: bool, json_out: bool, max_follow_s: float | None = None) -> int:
    """``max_follow_s`` bounds a follow (None: until interrupted)."""
    path = config.resolve_paths().log_file
    if json_out and follow:
        raise BadRequestError("--follow prints lines as they come; it has no --json form")
    if not path.exists() and not follow:
        raise BadRequestError(
            f"no daemon log at {path} yet",
            hint="The daemon writes it once started: openclaw daemon start",
        )
    shown, offset = _last_lines(path, lines) if path.exists() else ([], 0)
    if json_out:
        render.print_json({"file": str(path), "lines": shown})
        return 0
    for line in shown:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if follow:
        try:
            _follow(path, offset, max_follow_s)
        except KeyboardInterrupt:  # Ctrl-C is how a follow ends
            return 0
    return 0


def _follow(path: Path, offset: int, max_s: float | None) -> None:
    """Print what is appended until interrupted (or ``max_s``, for tests)."""
    started = time.monotonic()
    identity = _identity(path)
    while max_s is None or time.monotonic() - started < max_s:
        now = _identity(path)
        if now is None:
            time.sleep(_POLL_S)
            continue
        if now[0] != (identity or (None,))[0] or now[1] < offset:
            offset = 0  # replaced or truncated: read the new file from its start
        identity = now
        if now[1] > offset:
            with path.open("rb") as handle:
                handle.seek(offset)
                data = handle.read()
            offset += len(data)
            sys.stdout.write(data.decode("utf-8", "replace"))
            sys.stdout.flush()
        time.sleep(_POLL_S)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_size
