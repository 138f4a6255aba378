"""Per-turn phase spans.

A ``Trace`` records named spans (start offset and duration in ms from the
trace's origin, plus token counts) and tells an optional listener about each
finished span, which is how ``phase`` frames reach the CLI as they happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
