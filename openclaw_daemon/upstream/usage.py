"""What an upstream says it reused: its own report of a request's prompt tokens and
how many came from its prefix cache, read from whichever field the server fills.

- OpenAI, vLLM (``--enable-prompt-tokens-details``), SGLang (``--enable-cache-report``):
  ``usage.prompt_tokens_details.cached_tokens``;
- llama-server: ``timings.cache_n`` (reused) and ``timings.prompt_n`` (prefilled), on
  ``/completion`` and, as an extension, on ``/v1/chat/completions``;
- llama-cpp-python's server: nothing (``cached`` is None: unknown, never 0).

The turn's usage buckets (``cacheRead`` / ``input``) come from here, so they are the
server's own numbers, not our guess; the tier is named after the upstream.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class ServerUsage(NamedTuple):
    prompt: int | None  # prompt tokens the server counted
    cached: int | None  # of them, reused from its cache; None when it does not say
    output: int | None
    source: str  # which field it came from: "timings", "usage.details", "usage", "none"

    @property
    def cached_share(self) -> float | None:
        if self.cached is None or not self.prompt:
            return None
        return self.cached / self.prompt


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def from_response(body: dict[str, Any]) -> ServerUsage:
    """The usage in one final response object (or the last streamed event)."""
    timings = body.get("timings")
    raw_usage = body.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    if isinstance(timings, dict) and _int(timings.get("cache_n")) is not None:
        cached, prefilled = _int(timings.get("cache_n")), _int(timings.get("prompt_n"))
        prompt = cached + prefilled if cached is not None and prefilled is not None else None
        output = _int(timings.get("predicted_n"))
        return ServerUsage(prompt, cached, output, "timings")
    prompt, output = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and _int(details.get("cached_tokens")) is not None:
        return ServerUsage(prompt, _int(details.get("cached_tokens")), output, "usage.details")
    if usage:
        return ServerUsage(prompt, None, output, "usage")
    return ServerUsage(None, None, None, "none")


def tier_name(provider_id: str) -> str:
    """The cache tier a reused upstream token is reported under in traces and stats."""
    return f"upstream:{provider_id}"
