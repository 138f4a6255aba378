"""The ``chat`` request: one OpenAI-style completion for ``openclaw serve``.

Relayed like a turn (token frames as they come, a hang-up or ``cancel`` or
the timeout stops it at the next token), on the model worker like a turn, but
with no session lane and no span report after ``done``: the HTTP front is
the client, and the conversation is the one its messages spell.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from openclaw_daemon.observability import turn_record
from openclaw_daemon.observability.tracing import Trace
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.wire import chat_requests, messages
from openclaw_daemon.wire import frames as protocol
from openclaw_daemon.wire.errors import BadRequestError, CancelledError, TurnTimeoutError

if TYPE_CHECKING:
    from openclaw_daemon.serve.handlers import DaemonState
    from openclaw_daemon.serve.transport import Connection

Relay = Callable[
    ["Connection", "queue.Queue[Mapping[str, Any]]", Any, threading.Event, "float | None"], bool
]
Drain = Callable[["Connection", "queue.Queue[Mapping[str, Any]]"], None]


def serve_chat(
    state: DaemonState,
    raw: protocol.Message,
    connection: Connection,
    *,
    relay: Relay,
    drain: Drain,
    job_ended: protocol.Message,
) -> None:
    chats = state.chats
    if chats is None:
        raise BadRequestError("this daemon does not serve OpenAI-style requests")
    options = chat_requests.parse_chat(raw)
    events: queue.Queue[Mapping[str, Any]] = queue.Queue()
    cancel = threading.Event()
    trace = Trace()
    context = TurnContext(
        trace=trace,
        emit=events.put,
        cancelled=cancel.is_set,
        received_at=trace.origin,
        turn_id=turn_record.new_turn_id(),
    )
    timeout = options.timeout_s
    deadline = time.monotonic() + timeout if timeout else None
    future: Future[Any] = state.scheduler.submit(lambda: chats.run(options, context), label="chat")
    future.add_done_callback(lambda _: events.put(job_ended))
    timed_out = relay(connection, events, future, cancel, deadline)
    drain(connection, events)
    try:
        result = future.result()
    except CancelledError as exc:
        if timed_out:
            raise TurnTimeoutError(
                f"the request took longer than its timeout ({timeout:g} s) and was stopped",
                hint="Raise the timeout, or lower max_tokens.",
            ) from exc
        raise
    connection.send(messages.done(result))
    # As after a turn: park the live KV state, then save the reply tapes, when idle.
    state.scheduler.submit_idle("park", state.tapes.park)
    state.scheduler.submit_idle("front tapes", chats.park)
