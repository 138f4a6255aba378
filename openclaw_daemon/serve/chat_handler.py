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
from typing import TYPE_CHECKING, Any, cast

from openclaw_daemon.observability import turn_record
from openclaw_daemon.observability.tracing import Trace
from openclaw_daemon.serve import relay
from openclaw_daemon.serve.scheduler import PARK_FORCE_AFTER_S
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.wire import chat_requests, messages
from openclaw_daemon.wire import frames as protocol
from openclaw_daemon.wire.errors import BadRequestError, CancelledError, TurnTimeoutError
from openclaw_daemon.wire.messages import TurnResult

SESSION_KEY = "openai-front"  # what the turn log calls the front's completions

if TYPE_CHECKING:
    from openclaw_daemon.front.chat_turn import ChatTurns
    from openclaw_daemon.serve.scheduler import Scheduler
    from openclaw_daemon.serve.transport import Connection


def serve_chat(
    chats: ChatTurns | None,
    scheduler: Scheduler,
    park: Callable[[], None],
    raw: protocol.Message,
    connection: Connection,
    *,
    keep: Callable[[turn_record.TraceRecord], None],
    memory: Callable[[], Mapping[str, int]],
) -> None:
    """``park``: the session tapes' (it parks the live KV state); ``keep`` stores and
    counts the completion's trace record."""
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
    future: Future[Any] = scheduler.submit(lambda: chats.run(options, context), label="chat")
    future.add_done_callback(lambda _: events.put(relay.JOB_ENDED))
    timed_out = relay.relay(connection, events, future, cancel, deadline)
    relay.drain(connection, events)
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
    scheduler.submit_idle("park", park, force_after_s=PARK_FORCE_AFTER_S)
    scheduler.submit_idle("front tapes", chats.park, force_after_s=PARK_FORCE_AFTER_S)
    keep(trace_record(result, context, memory()))


def trace_record(
    result: dict[str, Any], context: TurnContext, memory: Mapping[str, int]
) -> turn_record.TraceRecord:
    """The completion's record in the turn log, as a turn's (``openclaw trace``,
    ``stats``, ``metrics``), under the session key ``openai-front``."""
    counts = result["usage"]
    prompt, cached = counts["promptTokens"], counts["cachedTokens"]
    shaped = {
        "turnId": context.turn_id,
        "at": time.time(),
        "sessionId": "",
        "sessionKey": SESSION_KEY,
        "agentId": "openai",
        "model": result["model"],
        "daemonMs": round(context.trace.offset_ms(), 3),
        "ttftMs": result["ttftMs"],
        "stopReason": result["finishReason"],
        "usage": turn_record.usage_buckets(prompt - cached, cached, counts["completionTokens"]),
        "spans": result["spans"],
        "cache": {
            "tier": result["cacheTier"],
            "cachedTokens": cached,
            "promptTokens": prompt,
            "summary": f"{cached} of {prompt} prompt tokens from the cache "
            f"({result['cacheTier']}); conversation found at message "
            f"{result['continuedMessages']}",
        },
    }
    return turn_record.build(cast(TurnResult, shaped), None, memory=memory)
