"""End to end: tokens without the model file. Against llama-cpp-python's real server
the daemon finds its ``/extras/tokenize`` (the model's own ids, template markers as
single special tokens); against a server with no tokenizer it falls back to the
offline ``cl100k_base`` estimate, marked as one."""

from __future__ import annotations

import pytest

from openclaw_daemon.upstream.http_client import UpstreamClient
from openclaw_daemon.upstream.tokens import detect
from openclaw_daemon.wire.errors import UpstreamError
from tests.upstream_fault_server import FaultServer
from tests.upstream_server import SERVED_ALIAS

TEXT = "The quick brown fox jumps over the lazy dog."


def test_the_servers_own_tokenizer_is_found(upstream_url: str) -> None:
    tokenizer = detect(UpstreamClient("local", upstream_url), SERVED_ALIAS)
    assert (tokenizer.source, tokenizer.estimate) == ("llama-cpp-python", False)
    ids = tokenizer.tokenize(TEXT)
    assert 5 < len(ids) < 20 and tokenizer.detokenize(ids) == TEXT
    marker = tokenizer.tokenize("<|im_start|>")
    assert len(marker) == 1  # a ChatML marker is the model's special token, not text
    rendered = tokenizer.tokenize(f"<|im_start|>user\n{TEXT}<|im_end|>\n")
    assert rendered[0] == marker[0] and len(rendered) > len(ids)


def test_a_server_without_one_gets_the_marked_estimate() -> None:
    with FaultServer(lifetime=30) as server:  # answers chat completions, no tokenizer
        tokenizer = detect(UpstreamClient("bare", server.url + "/v1"), "m")
        assert (tokenizer.source, tokenizer.estimate) == ("estimate:cl100k_base", True)
        assert len(server.requests) == 3  # each known endpoint asked once
    ids = tokenizer.tokenize(TEXT)
    assert len(ids) == 10 and tokenizer.detokenize(ids) == TEXT
    assert tokenizer.tokenize("<|im_start|>")  # markers are text, never an error


def test_a_down_or_refusing_server_is_an_error_not_an_estimate() -> None:
    from tests.upstream_server import free_port

    down = UpstreamClient("gone", f"http://127.0.0.1:{free_port()}/v1", connect_timeout=1.0)
    with pytest.raises(UpstreamError, match="connection refused"):
        detect(down, "m")
    with FaultServer(lifetime=30) as server:
        server.set_mode("401")
        with pytest.raises(UpstreamError, match="apiKey"):
            detect(UpstreamClient("locked", server.url + "/v1"), "m")
        assert len(server.requests) == 1  # no other endpoint was tried


def test_a_request_counted_message_by_message_is_the_whole_requests_tokens(
    upstream_url: str,
) -> None:
    """The per-message cache (upstream/request_tokens.py) joins ids tokenized one
    message at a time: on the model's own tokenizer that must be exactly the ids of
    the whole request, or the size and the append-only check would drift."""
    from openclaw_daemon.upstream.request_tokens import RequestTokens, request_text

    tokenizer = detect(UpstreamClient("local", upstream_url), SERVED_ALIAS)
    messages = [
        {"role": "system", "content": "You are terse.\nAnswer in one line."},
        {"role": "user", "content": f"{TEXT}\n\n  Indented, then <b>tags</b> and 12345."},
        {"role": "assistant", "content": "Done.\n"},
        {"role": "user", "content": "ünïcode, emoji 🦊 and a trailing space "},
    ]
    counted = RequestTokens().tokenize(tokenizer, messages)
    assert counted == tokenizer.tokenize(request_text(messages))
