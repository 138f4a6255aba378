"""One streamed ``/v1/chat/completions`` call: the request body, then text deltas
and a final ``ChatEnd`` read from the server's SSE events.

Any OpenAI-compatible server takes this (vLLM, SGLang, llama-server, llama-cpp-python,
hosted APIs). The messages are the session's own, rendered by our transcript and
append-only turn after turn, so the server's template renders a prompt whose earlier
turns are byte-identical and its prefix cache hits. Tool calls are written in our
own format (Hermes ``<tool_call>`` tags, defined in the system message), so every
server carries them, native tool calling or not.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any, NamedTuple

import httpx

from openclaw_daemon.upstream import usage as server_usage
from openclaw_daemon.upstream.http_client import UpstreamClient
from openclaw_daemon.upstream.usage import ServerUsage

CHAT_PATH = "/chat/completions"


class ChatEnd(NamedTuple):
    finish_reason: str  # "stop", "length", or what the server said; "" if it said none
    usage: ServerUsage


def chat_body(
    model: str,
    messages: Sequence[dict[str, Any]],
    *,
    max_tokens: int,
    temperature: float,
    seed: int | None,
    stop: Sequence[str],
    cache_key: str | None,
    cache_prompt: bool = False,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        # OpenAI, vLLM and SGLang report usage in a last chunk only when asked;
        # servers that do not know the option ignore it.
        "stream_options": {"include_usage": True},
    }
    if cache_prompt:
        # llama.cpp keeps the slot's KV for the next request (its default, said anyway).
        body["cache_prompt"] = True
    if seed is not None:
        body["seed"] = seed
    if stop:
        body["stop"] = list(stop)
    if cache_key:
        # OpenAI routes requests with one key to one cache; others ignore it.
        body["prompt_cache_key"] = cache_key
    return body


def stream_chat(
    client: UpstreamClient,
    body: dict[str, Any],
    opened: Callable[[httpx.Response], None] | None = None,
    *,
    on_tool_calls: Callable[[list[Any]], None] | None = None,
) -> Generator[str | ChatEnd, None, None]:
    """The reply's text deltas as they arrive, then one ``ChatEnd``. UpstreamError
    (from the client) on every failure; a stream cut mid-way never ends with ChatEnd.
    ``on_tool_calls`` gets each event's native ``tool_calls`` (``native_tools``)."""
    finish = ""
    final: dict[str, Any] = {}
    for event in client.stream_json(CHAT_PATH, body, opened=opened):
        choices = event.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            delta = choice.get("delta")
            if not isinstance(delta, dict):  # a non-streamed reply (stream ignored)
                delta = choice.get("message") if isinstance(choice.get("message"), dict) else {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                yield content
            calls = delta.get("tool_calls") if isinstance(delta, dict) else None
            if on_tool_calls is not None and isinstance(calls, list):
                on_tool_calls(calls)
            if isinstance(choice.get("finish_reason"), str):
                finish = choice["finish_reason"]
        if isinstance(event.get("usage"), dict) or isinstance(event.get("timings"), dict):
            final = event  # the last event with a report wins (usage chunk, timings)
    yield ChatEnd(finish, server_usage.from_response(final))
