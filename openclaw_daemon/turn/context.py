"""What a running turn shares with its connection: the trace, the event sink,
the cancel check, and (once resolved) the session it runs on.

The handler builds one per turn; the pipeline and the agent loop only read it,
except for ``session``, which the pipeline sets as soon as it has resolved the
session, so that a failed turn's record names the session it failed on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openclaw_daemon.observability.tracing import Trace
from openclaw_daemon.tools.spec import ToolCall
from openclaw_sessions.store import SessionRef


@dataclass
class TurnContext:
    trace: Trace
    emit: Callable[[dict[str, Any]], None]
    cancelled: Callable[[], bool]
    received_at: float
    turn_id: str = ""
    session: SessionRef | None = None  # once resolved: a failed turn's record names it
    # What ran on the model worker while this turn waited for it (scheduler labels).
    waited_behind: list[str] = field(default_factory=list)
    # "provider/model-id" when the turn runs on an upstream (a failed turn's record
    # names it); empty on the embedded model.
    upstream: str = ""
    # Asks the client for a tool permission mid-turn (a turn sent with askPermission).
    ask: Callable[[ToolCall, str], bool] | None = None
