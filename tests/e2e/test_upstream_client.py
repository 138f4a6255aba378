"""End to end: the upstream HTTP client against a real OpenAI-compatible server
(llama-cpp-python's, on 127.0.0.1) with the fault-injecting proxy between them:
a streamed reply arrives whole and equals the unstreamed one, a 429 is retried after
its Retry-After and then answered by the real model, a stream cut mid-reply is an
error that cannot be retried, and the real server's context-overflow answer becomes
the error that makes a turn compact and retry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from openclaw_daemon.upstream.http_client import UpstreamClient
from openclaw_daemon.upstream.retry import call_with_retries
from openclaw_daemon.upstream.usage import from_response
from openclaw_daemon.wire.errors import UpstreamContextOverflowError, UpstreamError
from tests.upstream_fault_server import FaultServer
from tests.upstream_server import SERVED_ALIAS

PROVIDER = "local"
BODY: dict[str, Any] = {
    "model": SERVED_ALIAS,
    "messages": [{"role": "user", "content": "Say hello."}],
    "max_tokens": 12,
    "temperature": 0,
}


@pytest.fixture
def proxy(upstream_url: str) -> Iterator[FaultServer]:
    with FaultServer(upstream=upstream_url.removesuffix("/v1"), lifetime=120) as server:
        yield server


def _client(url: str) -> UpstreamClient:
    return UpstreamClient(PROVIDER, url, first_byte_timeout=60.0, chunk_timeout=30.0)


def _streamed_text(client: UpstreamClient) -> str:
    events = client.stream_json("/chat/completions", {**BODY, "stream": True})
    return "".join(
        choice.get("delta", {}).get("content") or ""
        for event in events
        for choice in event.get("choices", [])
    )


def test_stream_through_the_proxy_equals_the_direct_reply(
    upstream_url: str, proxy: FaultServer
) -> None:
    direct = _client(upstream_url).post_json("/chat/completions", BODY)
    expected = direct["choices"][0]["message"]["content"]
    assert expected  # the real model said something
    reported = from_response(direct)  # this server reports no cache detail: unknown
    assert (reported.prompt, reported.cached) == (direct["usage"]["prompt_tokens"], None)
    assert _streamed_text(_client(proxy.url + "/v1")) == expected
    assert len(proxy.requests) == 1


def test_429_is_retried_after_retry_after(upstream_url: str, proxy: FaultServer) -> None:
    expected = _streamed_text(_client(upstream_url))
    proxy.set_mode("429", 1)
    proxy.retry_after = "2"
    slept: list[float] = []
    client = _client(proxy.url + "/v1")
    assert call_with_retries(lambda: _streamed_text(client), sleep=slept.append) == expected
    assert slept == [2.0] and len(proxy.requests) == 2


def test_cut_mid_reply_is_not_retried(proxy: FaultServer) -> None:
    proxy.set_mode("cut", 1)
    proxy.cut_after = 2  # the real server's first reads pass, then the connection drops
    client = _client(proxy.url + "/v1")
    attempts: list[int] = []

    def attempt() -> str:
        attempts.append(1)
        return _streamed_text(client)

    with pytest.raises(UpstreamError) as info:
        call_with_retries(attempt, sleep=lambda s: None)
    assert "cut mid-reply" in str(info.value) and PROVIDER in str(info.value)
    assert not info.value.retryable and attempts == [1]
    assert _streamed_text(client)  # the next request is served normally


def test_real_context_overflow_is_recognised(upstream_url: str) -> None:
    too_long = {**BODY, "messages": [{"role": "user", "content": "word " * 6000}]}
    with pytest.raises(UpstreamContextOverflowError) as info:
        _client(upstream_url).post_json("/chat/completions", too_long)
    assert PROVIDER in str(info.value)
    # Streamed, this server answers 200 with an empty body: an error, not an empty reply.
    with pytest.raises(UpstreamError, match="the stream ended with no event") as streamed:
        list(_client(upstream_url).stream_json("/chat/completions", {**too_long, "stream": True}))
    assert "contextWindow" in str(streamed.value) and not streamed.value.retryable
