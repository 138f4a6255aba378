"""Relay a running job's events to its connection: the turn's and the ``chat``
request's shared loop.

Events (stream frames) are forwarded as they come, coalesced into frames on a
short timer (``frame_batching``); a client that hangs up or sends ``cancel``,
or a job that passes its deadline, sets the job's cancel event, which stops
the generation at the next token or prefill batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from openclaw_daemon.serve.frame_batching import FRAME_INTERVAL_S, FrameBatcher
from openclaw_daemon.serve.transport import Connection
from openclaw_daemon.wire import frames as protocol
from openclaw_daemon.wire.errors import OpenClawError
from openclaw_daemon.wire.messages import StreamFrame
from openclaw_daemon.wire.requests import PermitOptions, parse_permit

log = logging.getLogger("openclawd.handlers")
POLL_S = 0.02  # how often a running job checks for a hang-up, cancel or timeout
# Put on a job's event queue when it ends, so the relay wakes at once instead
# of at its next poll.
JOB_ENDED: protocol.Message = {"type": "_job_ended"}


def relay(
    connection: Connection,
    events: queue.Queue[Mapping[str, Any]],
    future: Any,
    cancel: threading.Event,
    deadline: float | None,
    on_permit: Callable[[PermitOptions], None] | None = None,
) -> bool:
    """Forward events until the job ends; returns True if it timed out. A ``permit``
    from the client (a turn's permission answer) goes to ``on_permit``."""
    timed_out = False
    batcher = FrameBatcher(events, JOB_ENDED, FRAME_INTERVAL_S)
    while not future.done():
        for event in batcher.next(timeout=POLL_S):
            # The pipeline emits messages' stream frames (its emit is untyped).
            connection.send(cast(StreamFrame, event))
        if cancel.is_set():
            continue
        polled = connection.poll_client()
        if isinstance(polled, dict) and polled.get("type") == "permit":
            try:
                permit = parse_permit(polled)
            except OpenClawError as exc:  # a bad answer is no answer; the turn waits on
                log.warning("ignoring a bad permit frame: %s", exc.message)
                continue
            if on_permit is not None:
                on_permit(permit)
            continue
        if polled is True or (isinstance(polled, dict) and polled.get("type") == "cancel"):
            log.info("client went away or cancelled; stopping the job")
            cancel.set()
        elif deadline is not None and time.monotonic() > deadline:
            timed_out = True
            cancel.set()
    return timed_out


def drain(connection: Connection, events: queue.Queue[Mapping[str, Any]]) -> None:
    """Send what the job emitted after the relay saw it end."""
    while True:
        try:
            event = events.get_nowait()
        except queue.Empty:
            return
        if event is not JOB_ENDED:
            connection.send(cast(StreamFrame, event))
