"""Reading what an upstream says when it fails: the message in an error body, whether
it is a context overflow, and how long ``Retry-After`` asks to wait."""

from __future__ import annotations

import email.utils
import json
import time

# How servers word "the prompt is longer than my window" (llama-server, vLLM, OpenAI,
# SGLang); matched case-insensitively in an error body.
_OVERFLOW_MARKERS = (
    "exceeds the available context size",
    "context length",
    "maximum context length",
    "context_length_exceeded",
    "context window",
)


def parse_retry_after(value: str | None, now: float | None = None) -> float:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date; 0 if absent/bad."""
    if not value:
        return 0.0
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# Only a request error is an overflow: a 5xx "failed to allocate KV cache for context
# length N" is the server's own problem, to retry or fall back from.
_REQUEST_ERROR_STATUSES = (400, 413, 422)


def is_overflow(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _OVERFLOW_MARKERS)


def is_request_overflow(status: int, text: str) -> bool:
    return status in _REQUEST_ERROR_STATUSES and is_overflow(text)


def error_detail(text: str) -> str:
    """The human part of an error body: OpenAI's ``{"error": {"message"}}``, or the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text.strip()[:300]
    if isinstance(value, dict):
        error = value.get("error", value)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
    return text.strip()[:300]
