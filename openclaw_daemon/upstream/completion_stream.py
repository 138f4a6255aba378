"""One streamed call of llama-server's raw ``/completion``: the request body for our
own prompt ids, then text deltas and a final ``ChatEnd``, as ``chat_stream`` yields
them for ``/v1/chat/completions``.

Each event carries ``content``; the last one has ``stop: true``, the reason
(``stop_type``: ``eos``, ``word`` or ``limit``) and the server's ``timings``
(``cache_n`` reused, ``prompt_n`` prefilled). The stream has no ``[DONE]``: one that
ends before the ``stop`` event was cut.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import httpx

from openclaw_daemon.upstream import usage as server_usage
from openclaw_daemon.upstream.chat_stream import ChatEnd
from openclaw_daemon.upstream.http_client import UpstreamClient
from openclaw_daemon.wire.errors import UpstreamError

# llama-server's stop_type, as the finish_reason chat completions would give.
_FINISH = {"eos": "stop", "word": "stop", "limit": "length"}


def completion_body(
    prompt: Sequence[int],
    *,
    max_tokens: int,
    temperature: float,
    seed: int | None,
    stop: Sequence[str],
    grammar: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": list(prompt),
        "n_predict": max_tokens,
        "temperature": temperature,
        "stream": True,
        "cache_prompt": True,  # the slot keeps its KV for the next request (the default)
    }
    if seed is not None:
        body["seed"] = seed
    if stop:
        body["stop"] = list(stop)
    if grammar:
        body["grammar"] = grammar
    return body


def stream_completion(
    client: UpstreamClient,
    url: str,
    body: dict[str, Any],
    opened: Callable[[httpx.Response], None] | None = None,
) -> Generator[str | ChatEnd, None, None]:
    """The reply's text as it arrives, then one ``ChatEnd``. UpstreamError on every
    failure; a stream cut before its ``stop`` event never ends with ChatEnd."""
    for event in client.stream_json(url, body, require_done=False, opened=opened):
        content = event.get("content")
        if isinstance(content, str) and content:
            yield content
        if event.get("stop") is True:
            stop_type = event.get("stop_type")
            finish = _FINISH.get(stop_type, "") if isinstance(stop_type, str) else ""
            yield ChatEnd(finish, server_usage.from_response(event))
            return
    raise UpstreamError(
        f"upstream {client.provider_id!r}: {url} ended before its final event: "
        "the reply was cut mid-way",
        hint="The server may have crashed or restarted; check its log.",
    )
