"""Capped exponential backoff for upstream calls.

Retrying is only safe before anything reached the user and before any tool ran
(a second attempt would repeat text or side effects), so the caller says when
it may retry; the error says whether the server failure is worth retrying.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from openclaw_daemon.wire.errors import UpstreamError

T = TypeVar("T")


def call_with_retries(
    fn: Callable[[], T],
    *,
    attempts: int = 3,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
    may_retry: Callable[[], bool] = lambda: True,
    jitter: Callable[[], float] = lambda: random.uniform(0.0, 0.25),
) -> T:
    """``fn()``, called again on a retryable ``UpstreamError`` up to ``attempts`` times
    in all. Waits ``base_delay * 2**n`` or the server's ``Retry-After``, whichever is
    longer, never more than ``max_delay``. A server whose ``Retry-After`` is longer
    than ``max_delay`` is not retried at all (retrying sooner than it asked would
    hammer it): the error goes up, to a fallback or to the user."""
    for attempt in range(max(1, attempts)):
        try:
            return fn()
        except UpstreamError as exc:
            if not exc.retryable or attempt + 1 >= attempts or not may_retry():
                raise
            if exc.retry_after > max_delay:
                raise
            delay = backoff_delay(attempt, exc.retry_after, base_delay, max_delay)
            if not exc.retry_after:
                # Spread the retries of many clients a server failed at once; a
                # Retry-After is the server's own schedule, kept as it said.
                delay = min(max_delay, delay * (1.0 + jitter()))
            sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def backoff_delay(attempt: int, retry_after: float, base_delay: float, max_delay: float) -> float:
    """The wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
    return min(max_delay, max(base_delay * (2**attempt), retry_after))
