"""Terminal output: the streamed reply, progress on stderr, JSON for scripts.

rich is imported only when stderr is a terminal and there is something to
draw, so piped and scripted runs never pay for it.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from openclaw_daemon.wire.messages import ToolFrame

# Set once a JSON document went to stdout: a ``--json`` failure after it must
# not print a second one (``main`` prints ``{"ok": false, ...}`` otherwise).
json_printed = False


def print_json(data: Any, stream: TextIO | None = None) -> None:
    global json_printed
    out = stream or sys.stdout
    out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    out.flush()
    if out is sys.stdout:
        json_printed = True


def print_json_failure(kind: str, message: str, hint: str | None = None) -> None:
    """The real OpenClaw CLI's ``--json`` failure before any work: ``{"ok": false, "error"}``.

    Printed at most once, and only if no JSON document went to stdout yet (a
    failed turn prints its own envelope), so a script always gets exactly one.
    """
    if json_printed:
        return
    error: dict[str, Any] = {"type": kind, "message": message}
    if hint:
        error["hint"] = hint
    print_json({"ok": False, "error": error})


class Progress:
    """Progress on stderr: a rich bar on a TTY, nothing otherwise.

    Kept quiet for short waits so a warm turn prints no flicker.
    """

    def __init__(self, *, enabled: bool, min_total: int = 256, delay_s: float = 0.3) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.min_total = min_total
        self.delay_s = delay_s
        self._progress: Any = None
        self._task: Any = None
        self._spinner_task: Any = None

    def _start(self) -> None:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                SpinnerColumn,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()

    def waiting(self, what: str, elapsed: float) -> None:
        """A wait with no known total (daemon start, model load)."""
        if not self.enabled or elapsed < self.delay_s:
            return
        self._start()
        if self._spinner_task is None:
            self._spinner_task = self._progress.add_task(what, total=None, rate="")

    def prefill(self, done: int, total: int, rate: float) -> None:
        if not self.enabled or total < self.min_total:
            return
        self._start()
        label = f"{rate:,.0f} tok/s"
        if self._task is None:
            self._task = self._progress.add_task("prefill", total=total, rate=label)
        self._progress.update(self._task, completed=done, rate=label)
        if done >= total:
            self.stop()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None
            self._spinner_task = None


def notice(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def tool_event(frame: ToolFrame) -> None:
    """One line per tool call start and end, on stderr."""
    if frame.get("phase") == "start":
        args = json.dumps(frame.get("arguments", {}), ensure_ascii=False)
        notice(f"[tool] {frame['name']} {args[:160]}")
        return
    status = "error" if frame.get("isError") else "ok"
    cached = ", cached" if frame.get("cached") else ""
    preview = " ".join(str(frame.get("preview", "")).split())[:100]
    notice(
        f"[tool] {frame['name']} {status} ({frame.get('durationMs', 0):.0f} ms{cached}) {preview}"
    )


_USAGE_PREFIX = "error: "


@contextlib.contextmanager
def usage_errors_as_json(enabled: bool) -> Iterator[None]:
    """argparse prints a usage error to stderr and exits 2: with ``--json`` the
    same error also goes to stdout as one ``ok: false`` document."""
    if not enabled:
        yield
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except SystemExit as exc:
        sys.stderr.write(captured.getvalue())
        if exc.code not in (0, None):
            lines = [line for line in captured.getvalue().splitlines() if line.strip()]
            message = lines[-1] if lines else "bad arguments"
            message = message.split(_USAGE_PREFIX, 1)[-1] if _USAGE_PREFIX in message else message
            print_json_failure("usage", message, "See: openclaw agent --help")
        raise
    sys.stderr.write(captured.getvalue())
