"""One upstream model call (``upstream.model_call``) against the fault-injecting server
on 127.0.0.1: streaming into the reply filters, fallbacks in order, a cut reply kept
as partial, a cancel that does not wait for a stalled server, and the stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from openclaw_daemon.observability.tracing import Trace
from openclaw_daemon.tools.formats.hermes import TAGS
from openclaw_daemon.turn.model_calls import CallContext, CallOptions
from openclaw_daemon.upstream.config_file import Provider, UpstreamModel
from openclaw_daemon.upstream.http_client import UpstreamClient
from openclaw_daemon.upstream.model_call import UpstreamCalls
from openclaw_daemon.upstream.targets import Target, UpstreamTargets
from openclaw_daemon.wire.errors import CancelledError, UpstreamError
from tests.upstream_fault_server import FaultServer
from tests.upstream_server import free_port

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(lifetime=30) as fault:
        yield fault


def target(provider_id: str, url: str, chunk_timeout: float = 5.0) -> Target:
    provider = Provider(provider_id, url, "openai-completions", None, {}, 5.0, ())
    model = UpstreamModel(provider_id, "m", None, None)
    client = UpstreamClient(
        provider_id, url, connect_timeout=1.0, first_byte_timeout=5.0, chunk_timeout=chunk_timeout
    )
    return Target(provider, model, client)


def call_on(
    calls: UpstreamCalls, chain: list[Target], cancelled: Any = lambda: False
) -> tuple[Any, list[dict[str, Any]]]:
    frames: list[dict[str, Any]] = []
    ctx = CallContext(Trace(), frames.append, cancelled, 0)
    made = calls.call(chain, MESSAGES, CallOptions(), 16, ctx, hide_calls=True, cache_key="s")
    return made, frames


def test_a_reply_streams_as_token_frames_with_spans(server: FaultServer) -> None:
    calls = UpstreamCalls(UpstreamTargets(), TAGS)
    made, frames = call_on(calls, [target("a", server.url)])
    assert made.generation.text == "Hello, world"
    assert "".join(f["text"] for f in frames if f["type"] == "token") == "Hello, world"
    assert made.target.provider.id == "a" and made.failed == []


def test_fallbacks_are_tried_in_order_and_named(server: FaultServer) -> None:
    gone = target("gone", f"http://127.0.0.1:{free_port()}")
    calls = UpstreamCalls(UpstreamTargets(), TAGS)
    made, frames = call_on(calls, [gone, target("b", server.url)])
    assert made.target.provider.id == "b"
    assert len(made.failed) == 1 and made.failed[0].startswith("gone/m: ")
    assert any(f["type"] == "notice" and "trying b/m" in f["text"] for f in frames)


def test_a_cut_reply_is_kept_as_partial_and_not_retried_elsewhere(server: FaultServer) -> None:
    server.cut_after = 2  # two content events reach the user, then the connection drops
    server.set_mode("cut")
    other = FaultServer(lifetime=30)
    try:
        calls = UpstreamCalls(UpstreamTargets(), TAGS)
        with pytest.raises(UpstreamError):
            call_on(calls, [target("a", server.url), target("b", other.url)])
        assert calls.partial is not None and calls.partial.text == "Hello,"
        assert other.requests == []  # text was shown: no fallback would repeat it
    finally:
        other.stop()


def test_a_cancel_does_not_wait_for_a_stalled_stream(server: FaultServer) -> None:
    server.stall, server.cut_after = 20.0, 1
    server.set_mode("stall_between")
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    calls = UpstreamCalls(UpstreamTargets(), TAGS)
    started = time.monotonic()
    with pytest.raises(CancelledError):
        call_on(calls, [target("a", server.url, chunk_timeout=30.0)], cancel.is_set)
    assert time.monotonic() - started < 5.0  # not the 20 s stall nor the 30 s timeout


def test_a_cancel_before_the_headers_ends_the_call_and_tries_no_fallback(
    server: FaultServer,
) -> None:
    server.stall = 20.0
    server.set_mode("stall_first_byte")
    other = FaultServer(lifetime=30)
    try:
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()
        calls = UpstreamCalls(UpstreamTargets(), TAGS)
        started = time.monotonic()
        chain = [target("a", server.url, chunk_timeout=30.0), target("b", other.url)]
        with pytest.raises(CancelledError):
            call_on(calls, chain, cancel.is_set)
        assert time.monotonic() - started < 3.0  # not the 20 s stall, nor the timeout
        assert not any(p.endswith("/chat/completions") for _, p in other.requests)
    finally:
        other.stop()
