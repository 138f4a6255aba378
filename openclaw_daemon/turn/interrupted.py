"""A turn stopped mid-way (cancelled, timed out, a model error) keeps what it did.

The user already saw the streamed text and any tool calls run; losing them
would make the transcript disagree with the screen and the KV cache. The
agent loop raises ``Interrupted`` with its finished steps and the interrupted
model call; the pipeline stores them (the last reply marked as OpenClaw marks
an aborted one) and then raises the original error, which is what the client
gets. ``Interrupted`` never leaves the pipeline.
"""

from __future__ import annotations

from typing import Any

from openclaw_daemon.wire.errors import CancelledError, OpenClawError, TurnTimeoutError

# OpenClaw's stopReason for a reply the user stopped, or a deadline did.
_ABORTS = (CancelledError.code, TurnTimeoutError.code)


class Interrupted(Exception):  # noqa: N818 - control flow inside the pipeline, not an error
    def __init__(self, steps: list[Any], error: OpenClawError) -> None:
        super().__init__(error.message)
        self.steps = steps  # finished steps, then the interrupted one
        self.error = error


def stop_reason(error: OpenClawError) -> str:
    return "aborted" if error.code in _ABORTS else "error"


def shown_text(text: str, hidden: list[str]) -> str:
    """The part of an interrupted reply the user saw: up to any tool call (the
    stream hides calls, and an interrupted one was never run). ``hidden`` is
    the format's ``CallTags.hidden``."""
    for tag in hidden:
        text = text.split(tag)[0]
    return text


def worth_keeping(steps: list[Any]) -> bool:
    """Anything the user saw: a finished step, or generated text."""
    return len(steps) > 1 or bool(steps and steps[-1].generation.ids)
