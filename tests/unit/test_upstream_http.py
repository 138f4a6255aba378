"""The upstream HTTP layer against a real loopback server that injects faults:
every failure becomes the documented error class, names the provider, and says
whether (and after how long) it may be retried."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from openclaw_daemon.upstream.error_bodies import parse_retry_after
from openclaw_daemon.upstream.http_client import UpstreamClient
from openclaw_daemon.upstream.retry import backoff_delay, call_with_retries
from openclaw_daemon.upstream.sse import SSEParser
from openclaw_daemon.wire.errors import UpstreamContextOverflowError, UpstreamError
from tests.upstream_fault_server import FaultServer, chunk_events

PROVIDER = "gpu-box"
BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(lifetime=30) as fault:
        yield fault


def client_for(url: str, **kwargs: Any) -> UpstreamClient:
    kwargs.setdefault("first_byte_timeout", 2.0)
    kwargs.setdefault("chunk_timeout", 2.0)
    return UpstreamClient(PROVIDER, url + "/v1", api_key="k", connect_timeout=1.0, **kwargs)


def stream(client: UpstreamClient) -> list[dict[str, Any]]:
    return list(client.stream_json("/chat/completions", BODY))


def failure(
    fn: Any, cls: type[Exception] = UpstreamError, *, retry_after: float | None = 0.0
) -> Any:
    """The error ``fn`` raises: exactly ``cls``, naming the provider, and (unless the
    test checks it itself) with no Retry-After."""
    with pytest.raises(cls) as info:
        fn()
    assert type(info.value) is cls
    assert PROVIDER in str(info.value)
    if retry_after is not None and isinstance(info.value, UpstreamError):
        assert info.value.retry_after == retry_after
    return info.value


# --- SSE parsing ---------------------------------------------------------------


def test_sse_handles_split_crlf_multiline_comments_and_done() -> None:
    parser = SSEParser(PROVIDER, "u")
    raw = b': keep-alive\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: x\rdata: {"b": 2}\r\r'
    raw += b'data: [DONE]\n\ndata: {"after": 1}\n\n'
    events = [e for i in range(len(raw)) for e in parser.feed(raw[i : i + 1])]
    assert events == [{"a": 1}, {"b": 2}]
    assert parser.done


def test_sse_last_event_without_blank_line_counts() -> None:
    parser = SSEParser(PROVIDER, "u")
    assert list(parser.feed(b'data: {"a": 1}')) == []
    assert list(parser.close()) == [{"a": 1}]


def test_sse_malformed_json_raises() -> None:
    parser = SSEParser(PROVIDER, "http://x/v1")
    error = failure(lambda: list(parser.feed(b"data: {nope\n\n")))
    assert "malformed JSON" in str(error) and "http://x/v1" in str(error)
    assert not error.retryable


# --- success ---------------------------------------------------------------------


def test_stream_yields_each_event_over_one_kept_alive_connection(server: FaultServer) -> None:
    client = client_for(server.url)
    assert stream(client) == chunk_events()
    assert stream(client) == chunk_events()
    assert server.requests == [("POST", "/v1/chat/completions")] * 2
    assert len(set(server.client_ports)) == 1  # the pooled connection was reused


def test_non_sse_reply_is_yielded_once_and_json_helpers(server: FaultServer) -> None:
    client = client_for(server.url)
    server.set_mode("json", 1)
    (only,) = stream(client)
    assert only["object"] == "chat.completion"
    assert client.post_json("/chat/completions", {"stream": False})["object"] == "chat.completion"
    assert client.get_json("/models")["object"] == "chat.completion"


# --- HTTP status failures --------------------------------------------------------


def test_429_retry_after_seconds(server: FaultServer) -> None:
    server.set_mode("429")
    server.retry_after = "2"
    error = failure(lambda: stream(client_for(server.url)), retry_after=None)
    assert "rate limited" in str(error) and "/v1/chat/completions" in str(error)
    assert error.retryable and error.retry_after == 2.0


def test_503_retry_after_http_date(server: FaultServer) -> None:
    server.set_mode("503")
    server.retry_after, server.retry_after_date = "30", True
    error = failure(lambda: stream(client_for(server.url)), retry_after=None)
    assert error.retryable and 25 <= error.retry_after <= 31


def test_500_is_retryable_without_delay(server: FaultServer) -> None:
    server.set_mode("500")
    error = failure(lambda: client_for(server.url).post_json("/chat/completions", {}))
    assert "injected 500" in str(error) and error.retryable and error.retry_after == 0.0


@pytest.mark.parametrize(("mode", "says"), [("401", "apiKey"), ("404", "baseUrl")])
def test_auth_and_not_found_say_what_to_fix(server: FaultServer, mode: str, says: str) -> None:
    server.set_mode(mode)
    error = failure(lambda: stream(client_for(server.url)))
    assert says in str(error) and f"HTTP {mode}" in str(error) and not error.retryable


@pytest.mark.parametrize("mode", ["overflow", "overflow_openai", "error_event"])
def test_context_overflow(server: FaultServer, mode: str) -> None:
    server.set_mode(mode)
    failure(lambda: stream(client_for(server.url)), UpstreamContextOverflowError)


# --- broken streams and stalls ---------------------------------------------------


def test_cut_after_events_is_not_retryable(server: FaultServer) -> None:
    server.set_mode("cut")
    got: list[dict[str, Any]] = []
    error = failure(lambda: got.extend(client_for(server.url).stream_json("/x", BODY)))
    assert len(got) == 2 and "cut mid-reply" in str(error) and not error.retryable


def test_cut_before_any_event_is_retryable(server: FaultServer) -> None:
    server.set_mode("cut")
    server.cut_after = 0
    error = failure(lambda: stream(client_for(server.url)))
    assert "cut mid-reply" in str(error) and error.retryable


def test_stall_before_first_byte(server: FaultServer) -> None:
    server.set_mode("stall_first_byte")
    server.stall = 1.0
    error = failure(lambda: stream(client_for(server.url, first_byte_timeout=0.3)))
    assert "no reply within 0.3s" in str(error) and error.retryable


def test_stall_between_chunks(server: FaultServer) -> None:
    server.set_mode("stall_between")
    server.stall = 1.0
    client = client_for(server.url, first_byte_timeout=5.0, chunk_timeout=0.3)
    error = failure(lambda: stream(client))
    assert "between chunks" in str(error) and not error.retryable


def test_garbage_sse(server: FaultServer) -> None:
    server.set_mode("garbage")
    error = failure(lambda: stream(client_for(server.url)))
    assert "malformed JSON" in str(error) and not error.retryable


# --- connection failures ---------------------------------------------------------


def test_connection_refused_says_start_the_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = failure(lambda: stream(client_for(f"http://127.0.0.1:{port}")))
    assert "connection refused" in str(error) and "Is the server running?" in str(error)
    assert not error.retryable


def test_tls_to_a_plain_http_server(server: FaultServer) -> None:
    error = failure(lambda: stream(client_for(server.url.replace("http:", "https:"))))
    assert "TLS error" in str(error) and "http://" in str(error) and not error.retryable


class Raising(httpx.BaseTransport):
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise self.exc


def test_dns_failure() -> None:
    gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    exc = httpx.ConnectError("[Errno -2] Name or service not known")
    exc.__cause__ = gai
    error = failure(lambda: stream(client_for("http://nowhere.invalid", transport=Raising(exc))))
    assert "cannot resolve" in str(error) and not error.retryable


def test_connect_timeout() -> None:
    transport = Raising(httpx.ConnectTimeout("timed out"))
    error = failure(lambda: stream(client_for("http://10.255.255.1", transport=transport)))
    assert "timed out connecting after 1s" in str(error) and error.retryable


# --- retries -----------------------------------------------------------------------


def test_retry_after_429_then_success(server: FaultServer) -> None:
    server.set_mode("429", 2)
    server.retry_after = "3"
    slept: list[float] = []
    client = client_for(server.url)
    events = call_with_retries(lambda: stream(client), sleep=slept.append, max_delay=4.0)
    assert events == chunk_events() and slept == [3.0, 3.0]  # the server's Retry-After


def test_retry_after_longer_than_the_cap_is_not_retried(server: FaultServer) -> None:
    server.set_mode("429", 1)
    server.retry_after = "3600"
    slept: list[float] = []
    client = client_for(server.url)
    error = failure(
        lambda: call_with_retries(lambda: stream(client), sleep=slept.append), retry_after=3600.0
    )
    assert error.retryable and slept == [] and len(server.requests) == 1


def test_retry_gives_up_after_attempts_and_when_not_allowed(server: FaultServer) -> None:
    server.set_mode("500")
    slept: list[float] = []
    client = client_for(server.url)
    assert failure(
        lambda: call_with_retries(lambda: stream(client), sleep=slept.append, jitter=lambda: 0.2)
    ).retryable
    assert slept == [0.6, 1.2] and len(server.requests) == 3  # backoff plus its jitter
    assert failure(lambda: call_with_retries(lambda: stream(client), may_retry=lambda: False))
    assert len(server.requests) == 4


def test_no_retry_for_non_retryable(server: FaultServer) -> None:
    server.set_mode("401")
    client = client_for(server.url)
    error = failure(lambda: call_with_retries(lambda: stream(client), sleep=lambda s: None))
    assert not error.retryable and len(server.requests) == 1


def test_backoff_and_retry_after_parsing() -> None:
    assert [backoff_delay(n, 0.0, 0.5, 8.0) for n in range(6)] == [0.5, 1, 2, 4, 8, 8]
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=4.0) == 6.0
    assert parse_retry_after("soon") == 0.0 and parse_retry_after(None) == 0.0


# --- as a proxy in front of a real server -----------------------------------------


def test_proxy_injects_faults_then_forwards(server: FaultServer) -> None:
    with FaultServer(upstream=server.url, lifetime=30) as proxy:
        proxy.set_mode("503", 1)
        client = client_for(proxy.url)
        events = call_with_retries(lambda: stream(client), sleep=lambda s: None)
        assert events == chunk_events()
        assert len(proxy.requests) == 2 and len(server.requests) == 1
        proxy.set_mode("cut", 1)
        proxy.cut_after = 0
        error = failure(lambda: stream(client))
        assert error.retryable


def test_stall_after_headers_before_first_event_is_retryable(server: FaultServer) -> None:
    server.set_mode("stall_between")
    server.stall, server.cut_after = 1.0, 0
    client = client_for(server.url, first_byte_timeout=5.0, chunk_timeout=0.3)
    error = failure(lambda: stream(client))
    assert "no event within 0.3s" in str(error) and error.retryable


@pytest.mark.parametrize(
    ("status", "message", "overflow"),
    [
        (400, "This model's maximum context length is 4096 tokens", True),
        (500, "failed to allocate KV cache for context length 131072", False),
        (503, "context length 8192 busy", False),
        (400, "invalid model name", False),
    ],
)
def test_only_a_request_error_is_an_overflow(status: int, message: str, overflow: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"message": message}})

    client = UpstreamClient(PROVIDER, "http://up.test/v1", transport=httpx.MockTransport(handler))
    with pytest.raises(UpstreamError) as info:
        client.post_json("/chat/completions", BODY)
    assert isinstance(info.value, UpstreamContextOverflowError) is overflow
    assert PROVIDER in str(info.value)


@pytest.mark.parametrize(("cut_after", "retryable"), [(0, True), (2, False)])
def test_keep_alive_comments_do_not_hide_a_stall(
    server: FaultServer, cut_after: int, retryable: bool
) -> None:
    server.set_mode("ping_stall")
    server.stall, server.cut_after = 1.5, cut_after
    client = client_for(server.url, chunk_timeout=0.4)
    error = failure(lambda: stream(client))
    assert "only keep-alives for 0.4s" in str(error) and error.retryable is retryable


def test_a_keep_alive_connection_the_server_closed_is_sent_again_once() -> None:
    """llama-server drops idle keep-alive connections; the request it never saw is
    sent again on a new one (once: a second drop is the server's failure)."""
    drops = {"left": 1}

    def handler(request: httpx.Request) -> httpx.Response:
        if drops["left"] > 0:
            drops["left"] -= 1
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={"tokens": [1, 2]})

    client = UpstreamClient("p", "http://127.0.0.1:9/v1", transport=httpx.MockTransport(handler))
    assert client.post_json("/tokenize", {"content": "x"}) == {"tokens": [1, 2]}
    drops["left"] = 2
    with pytest.raises(UpstreamError, match="'p'"):
        client.post_json("/tokenize", {"content": "x"})
