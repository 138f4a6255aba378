"""OpenAI's shapes for ``openclaw serve``: a body becomes the daemon's ``chat`` request,
errors become OpenAI's error body with the status clients branch on."""

from __future__ import annotations

import pytest

from openclaw_cli import openai_shapes as shapes
from openclaw_daemon.wire.errors import (
    BadRequestError,
    ContextOverflowError,
    DaemonUnavailableError,
    OpenClawError,
)


def test_a_chat_body_becomes_a_chat_request() -> None:
    body = {
        "model": "anything",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 12,
        "temperature": 0.5,
        "stop": "\n",
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
    }
    assert shapes.chat_request(body, completion=False) == {
        "type": "chat",
        "messages": body["messages"],
        "tools": body["tools"],
        "toolChoice": "function:f",
        "maxTokens": 12,
        "temperature": 0.5,
        "stop": "\n",
    }


def test_a_completion_body_takes_a_prompt_or_a_batch_of_one() -> None:
    assert shapes.chat_request({"prompt": ["Once"], "max_tokens": -1}, completion=True) == {
        "type": "chat",
        "prompt": "Once",
    }
    with pytest.raises(BadRequestError, match="prompt"):
        shapes.chat_request({"prompt": ["a", "b"]}, completion=True)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([1, 2], "JSON object"),
        ({"messages": [], "n": 2}, "'n'"),
        ({"messages": [], "response_format": {"type": "json_schema"}}, "response_format"),
        ({}, "'messages'"),
    ],
)
def test_unsupported_bodies_are_refused(body: object, field: str) -> None:
    with pytest.raises(BadRequestError, match=field):
        shapes.chat_request(body, completion=False)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BadRequestError("bad", hint="fix it"), 400, "bad_request"),
        (ContextOverflowError("too long"), 400, "context_length_exceeded"),
        (DaemonUnavailableError("gone"), 503, "daemon_unavailable"),
        (OpenClawError("bug"), 500, "internal"),
    ],
)
def test_errors_get_openai_bodies(error: OpenClawError, status: int, code: str) -> None:
    got_status, body = shapes.error_body(error)
    assert got_status == status
    assert body["error"]["code"] == code
    assert body["error"]["message"].startswith(error.message)
    assert body["error"]["type"] == ("server_error" if status >= 500 else "invalid_request_error")


def test_a_result_becomes_a_chat_completion_with_cached_tokens() -> None:
    result = {
        "text": "",
        "toolCalls": [{"id": "call_1", "name": "f", "arguments": {"x": 1}}],
        "finishReason": "tool_calls",
        "usage": {"promptTokens": 10, "completionTokens": 3, "cachedTokens": 7},
        "spans": [{"name": "model.prefill", "tokens": 3, "durationMs": 5.0}],
    }
    body = shapes.chat_completion(result, ident="chatcmpl-1", model="m")
    message = body["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"x": 1}'}
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 7}
    assert body["usage"]["total_tokens"] == 13
    assert body["timings"]["prompt_n"] == 3 and body["timings"]["cache_n"] == 7


def test_an_error_names_the_field_as_the_client_spelled_it() -> None:
    status, body = shapes.error_body(
        BadRequestError("bad request field 'maxTokens': must be between 1 and 1048576, not 0")
    )
    assert status == 400
    assert body["error"]["param"] == "max_tokens"
    assert body["error"]["message"].startswith("bad request field 'max_tokens'")
    _, other = shapes.error_body(BadRequestError("bad request field 'messages[0].role': x"))
    assert other["error"]["param"] == "messages[0].role"
