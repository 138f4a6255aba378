"""Per-turn phase spans, and the per-turn trace records stored under the state dir.

A ``Trace`` records named spans (start offset and duration in ms from the
trace's origin, plus token counts) and tells an optional listener about each
finished span, which is how ``phase`` frames reach the CLI as they happen.
``TurnLog`` keeps one JSON line per finished turn (the record documented in
docs/tracing.md) under ``$STATE/traces/``.

Every span belongs to one scope, as in the reference Gantt figure: what the
CLI process pays (``process``), what the request waits for (``request``), what
building the prompt costs (``prompt``), the model itself (``model``), and
tools (``tool``).

Standard library only: the CLI reads the turn log.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Span = dict[str, Any]
SpanListener = Callable[[Span], None]

SCOPES = ("process", "request", "prompt", "model", "tool")
_SCOPE_BY_NAME = {
    "cli.boot": "process",
    "daemon.spawn": "process",
    "cli.connect": "request",
    "api.connect": "request",  # the Python API's (openclaw_cli.client)
    "api.result": "process",
    "request.send": "request",
    "reply.receive": "request",
    "lane.wait": "request",
    "cli.render": "process",
    "session.load": "prompt",
    "prompt.render": "prompt",
    "prompt.tokenize": "prompt",
    "prompt.grammar": "prompt",
    "prompt.results": "prompt",
    "cache.lookup": "prompt",
    "cache.restore": "prompt",
    "cache.report": "prompt",
    "session.persist": "prompt",
    "model.prefill": "model",
    "model.decode": "model",
    "session.compact": "prompt",
}
# The phases that are the model's or a tool's own work; everything else in a
# turn's wall time is the framework residual.
WORK_SCOPES = frozenset({"model", "tool"})


def scope_of(name: str) -> str:
    if name.startswith("tool."):
        return "tool"
    return _SCOPE_BY_NAME.get(name, "prompt" if not name.startswith("cli.") else "process")


class Trace:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.perf_counter,
        listener: SpanListener | None = None,
    ) -> None:
        self.clock = clock
        self.origin = clock()
        self.spans: list[Span] = []
        self.listener = listener

    def offset_ms(self, at: float | None = None) -> float:
        return ((self.clock() if at is None else at) - self.origin) * 1000.0

    def add(self, name: str, start: float, end: float, **attrs: Any) -> Span:
        span: Span = {
            "name": name,
            "scope": scope_of(name),
            "startMs": round((start - self.origin) * 1000.0, 3),
            "durationMs": round((end - start) * 1000.0, 3),
            **attrs,
        }
        self.spans.append(span)
        if self.listener is not None:
            self.listener(span)
        return span

    @contextmanager
    def span(self, name: str, **attrs: Any) -> Iterator[dict[str, Any]]:
        """Time a block; the block may add attributes (e.g. tokens) to the yielded dict."""
        extra: dict[str, Any] = dict(attrs)
        start = self.clock()
        try:
            yield extra
        finally:
            self.add(name, start, self.clock(), **extra)


def covered_ms(spans: list[Span]) -> float:
    """Milliseconds covered by the union of the spans (parallel tools overlap)."""
    intervals = sorted(
        (float(s["startMs"]), float(s["startMs"]) + float(s["durationMs"])) for s in spans
    )
    total = 0.0
    current_start, current_end = None, None
    for start, end in intervals:
        if current_end is None or start > current_end:
            if current_end is not None and current_start is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None and current_start is not None:
        total += current_end - current_start
    return total


class TurnLog:
    """Append-only JSON lines, one per turn, rotated to ``<name>.1`` past ``max_bytes``."""

    def __init__(self, path: Path, *, max_bytes: int = 16 << 20) -> None:
        self.path = path
        self.max_bytes = max_bytes
        # Connection threads store records concurrently: one rotates at a time.
        self._lock = threading.Lock()

    @property
    def rotated(self) -> Path:
        return self.path.with_name(self.path.name + ".1")

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                if self.path.stat().st_size > self.max_bytes:
                    os.replace(self.path, self.rotated)
            # One write of one line in append mode: a killed daemon leaves at
            # most a torn last line, which ``read`` skips.
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)

    def read(self, limit: int | None = 50) -> list[dict[str, Any]]:
        """The last ``limit`` records (all with None), oldest first, across the rotation."""
        lines: list[bytes] = []
        for path in (self.rotated, self.path):
            with contextlib.suppress(FileNotFoundError):
                lines += path.read_bytes().splitlines()
        records: list[dict[str, Any]] = []
        for line in reversed(lines):
            if limit is not None and len(records) >= limit:
                break
            # A damaged line (torn, not UTF-8, not JSON) is skipped, not fatal.
            with contextlib.suppress(ValueError):
                record = json.loads(line.decode("utf-8"))
                if isinstance(record, dict):
                    records.append(record)
        records.reverse()
        return records
