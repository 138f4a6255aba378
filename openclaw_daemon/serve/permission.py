"""Permission prompts: a tool that changes things asks the user mid-turn.

A turn sent with ``askPermission`` (the terminal chat) does not refuse a
``write``, ``edit`` or ``exec`` call it was not ``--allow``ed: it sends a
``permission`` frame and waits, on the model worker, for the client's
``permit`` answer (the relay loop hands it over). "Always" allows that
permission for the rest of the turn (the chat remembers it for its next turns).
A cancel, the turn's timeout or no answer within ``ANSWER_TIMEOUT_S`` is a no.
While it waits, the model worker waits too: other sessions' turns queue behind it.
The one-shot path keeps ``--allow``: a script is never asked.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from openclaw_daemon.tools.spec import ToolCall
from openclaw_daemon.wire.requests import PermitOptions

# The question is asked on the model worker, so other sessions' turns wait behind it
# (docs/protocol.md, ``permit``): an unanswered one is a no after this long.
ANSWER_TIMEOUT_S = 300.0
_POLL_S = 0.05


class PermissionAsker:
    def __init__(
        self,
        emit: Callable[[dict[str, Any]], None],
        cancelled: Callable[[], bool],
        *,
        timeout_s: float = ANSWER_TIMEOUT_S,
    ) -> None:
        self.emit = emit
        self.cancelled = cancelled
        self.timeout_s = timeout_s
        self._answers: queue.Queue[PermitOptions] = queue.Queue()
        self._lock = threading.Lock()  # a step's calls may run in parallel: one question at a time
        self._always: set[str] = set()

    def answer(self, permit: PermitOptions) -> None:
        """The client's answer (from the relay loop's thread)."""
        self._answers.put(permit)

    def __call__(self, call: ToolCall, permission: str) -> bool:
        with self._lock:
            if permission in self._always:
                return True
            self.emit(
                {
                    "type": "permission",
                    "id": call.id,
                    "name": call.name,
                    "permission": permission,
                    "arguments": call.arguments,
                }
            )
            deadline = time.monotonic() + self.timeout_s
            while not self.cancelled() and time.monotonic() < deadline:
                try:
                    permit = self._answers.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if permit.call_id != call.id:
                    continue  # an answer to an earlier question, too late
                if permit.allow and permit.always:
                    self._always.add(permission)
                return permit.allow
            return False
