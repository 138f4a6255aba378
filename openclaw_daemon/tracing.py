"""Per-turn phase spans.

A ``Trace`` records named spans (start offset and duration in ms from the
trace's origin, plus token counts) and tells an optional listener about each
finished span, which is how ``phase`` frames reach the CLI as they happen.
``TurnLog`` keeps one JSON line per finished turn under the state dir.

Standard library only: the CLI reads the turn log.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Span = dict[str, Any]
SpanListener = Callable[[Span], None]


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


class TurnLog:
    """Append-only JSON lines, one per turn, rotated to ``<name>.1`` past ``max_bytes``."""

    def __init__(self, path: Path, *, max_bytes: int = 4 << 20) -> None:
        self.path = path
        self.max_bytes = max_bytes

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_size > self.max_bytes:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        line = json.dumps(record, separators=(",", ":")) + "\n"
        # One write of one line in append mode: a killed daemon leaves at most
        # a torn last line, which ``read`` skips.
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)

    def read(self, limit: int = 50) -> list[dict[str, Any]]:
        """The last ``limit`` records, oldest first."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines[-limit:]:
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
        return records
