"""What we sent each upstream, per session: the evidence for its prefix cache.

An upstream keeps its own KV cache, so we cannot look inside it. What we can know is
whether our requests let it hit: each request of a session should start with the
whole previous one (append-only). This keeps the last request's tokens per session
and says, for the next one, how much of it is shared and, on a miss, where and why
they diverged — the explained miss the embedded engine gives, from our own tapes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

from openclaw_daemon.model.base import common_prefix

MAX_SESSIONS = 256  # a bounded memory of what was sent; the oldest session goes first


class RequestCheck(NamedTuple):
    previous: int  # tokens of the session's previous request (0: its first one)
    shared: int  # of the new request, leading tokens equal to the previous request
    append_only: bool  # the new request starts with the whole previous one

    def explain(self) -> str:
        if self.previous == 0:
            return "first request of this session on this upstream"
        if self.append_only:
            return f"append-only: all {self.previous} tokens of the previous request reused"
        return (
            f"diverged at token {self.shared} of {self.previous}: the prompt changed before "
            "the new message (the upstream re-prefills from there)"
        )


class RequestTapes:
    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self._last: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._max = max_sessions
        self._lock = threading.Lock()  # turns of different sessions record at once

    def record(self, session: str, tokens: Sequence[int]) -> RequestCheck:
        """Compare ``tokens`` with the session's previous request, then remember them."""
        with self._lock:
            previous = self._last.pop(session, ())
            self._last[session] = tuple(tokens)
            while len(self._last) > self._max:
                self._last.popitem(last=False)
        shared = common_prefix(previous, tokens)
        return RequestCheck(len(previous), shared, shared == len(previous) > 0)

    def forget(self, session: str) -> None:
        with self._lock:
            self._last.pop(session, None)
