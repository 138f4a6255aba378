"""OpenAI's request and response shapes for ``openclaw serve``, and nothing else.

An OpenAI body becomes the daemon's ``chat`` request (``chat_request``); the
daemon's result becomes a ``chat.completion`` or ``text_completion`` object,
or a stream of chunks; an ``OpenClawError`` becomes OpenAI's error body and
an HTTP status. Pure functions over dicts: the HTTP server is ``openai_front``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

from openclaw_daemon.wire.errors import BadRequestError, OpenClawError

# Our error codes -> HTTP status (the rest are 500).
_STATUS = {
    "bad_request": 400,
    "context_overflow": 400,
    "kv_slot": 400,
    "not_found": 404,
    "method_not_allowed": 405,
    "permission": 403,
    "busy": 429,
    "daemon_unavailable": 503,
    "resources": 503,
    "timeout": 504,
    "cancelled": 499,
}
# ... and to OpenAI's error ``code``, where it has one clients look for.
_OPENAI_CODES = {
    "context_overflow": "context_length_exceeded",
    "kv_slot": "context_length_exceeded",
}


# The daemon's chat request spells these fields its own way: errors name the
# client's spelling.
_CLIENT_NAMES = {
    "maxTokens": "max_tokens",
    "toolChoice": "tool_choice",
    "parallelToolCalls": "parallel_tool_calls",
    "timeoutS": "timeout",
}
_FIELD = re.compile(r"bad request field '([^']+)'")


def error_body(exc: OpenClawError) -> tuple[int, dict[str, Any]]:
    status = _STATUS.get(exc.code, 500)
    message = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    field = _FIELD.search(message)
    param = None
    if field:
        param = _CLIENT_NAMES.get(field.group(1), field.group(1))
        message = message.replace(f"'{field.group(1)}'", f"'{param}'", 1)
    kind = "invalid_request_error" if status < 500 else "server_error"
    return status, {
        "error": {
            "message": message,
            "type": kind,
            "param": param,
            "code": _OPENAI_CODES.get(exc.code, exc.code),
        }
    }


def _refuse(field: str, problem: str, hint: str = "") -> BadRequestError:
    return BadRequestError(f"bad request field {field!r}: {problem}", hint=hint)


def _tool_choice(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("function"), dict):
        return f"function:{value['function'].get('name')}"
    raise _refuse("tool_choice", "must be a string or a function choice")


def chat_request(body: Any, *, completion: bool) -> dict[str, Any]:
    """The daemon's ``chat`` request for an OpenAI body (chat or plain completion)."""
    if not isinstance(body, dict):
        raise BadRequestError("the request body must be a JSON object")
    if body.get("n", 1) != 1:
        raise _refuse("n", "only n=1 is supported")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type", "text") != "text":
        raise _refuse(
            "response_format", f"{response_format.get('type')!r} is not supported; use text"
        )
    request: dict[str, Any] = {"type": "chat"}
    if completion:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:  # OpenAI allows a batch of one
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise _refuse("prompt", "must be a string (a batch of prompts is not supported)")
        request["prompt"] = prompt
    else:
        request["messages"] = body.get("messages")
        if request["messages"] is None:
            raise _refuse("messages", "is required")
        for key, name in (
            ("tools", "tools"),
            ("toolChoice", "tool_choice"),
            ("parallelToolCalls", "parallel_tool_calls"),
        ):
            value = body.get(name)
            if value is not None:
                request[key] = _tool_choice(value) if name == "tool_choice" else value
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and max_tokens != -1:  # -1: llama-server's "until the window"
        request["maxTokens"] = max_tokens
    for key in ("temperature", "seed", "stop"):
        if body.get(key) is not None:
            request[key] = body[key]
    return request


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def usage(result: dict[str, Any]) -> dict[str, Any]:
    counts = result["usage"]
    prompt, completion = counts["promptTokens"], counts["completionTokens"]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": counts["cachedTokens"]},
    }


def tool_calls(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
        }
        for call in result.get("toolCalls", [])
    ]


def timings(result: dict[str, Any]) -> dict[str, Any]:
    """llama-server's ``timings`` (scripts that measure both read one shape)."""
    spans = {s["name"]: s for s in result.get("spans", []) if isinstance(s, dict)}
    prefill, decode = spans.get("model.prefill", {}), spans.get("model.decode", {})
    return {
        "cache_n": result["usage"]["cachedTokens"],
        "prompt_n": prefill.get("tokens", 0),
        "prompt_ms": prefill.get("durationMs", 0.0),
        "predicted_n": result["usage"]["completionTokens"],
        "predicted_ms": decode.get("durationMs", 0.0),
        "ttft_ms": result.get("ttftMs"),
        "cache_tier": result.get("cacheTier"),
    }


def chat_completion(result: dict[str, Any], *, ident: str, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result["text"] or None}
    calls = tool_calls(result)
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return {
        "id": ident,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": result["finishReason"],
                "logprobs": None,
            }
        ],
        "usage": usage(result),
        "timings": timings(result),
    }


def text_completion(result: dict[str, Any], *, ident: str, model: str) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": result["text"],
                "finish_reason": result["finishReason"],
                "logprobs": None,
            }
        ],
        "usage": usage(result),
        "timings": timings(result),
    }


def chunk(
    *,
    ident: str,
    model: str,
    completion: bool,
    delta: dict[str, Any] | None = None,
    text: str = "",
    finish: str | None = None,
) -> dict[str, Any]:
    """One streamed chunk: a chat ``delta`` or a completion's ``text``."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
    if completion:
        choice["text"] = text
    else:
        choice["delta"] = delta or {}
    return {
        "id": ident,
        "object": "text_completion" if completion else "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }


def usage_chunk(
    result: dict[str, Any], *, ident: str, model: str, completion: bool
) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage`` is set: no choices."""
    return {
        "id": ident,
        "object": "text_completion" if completion else "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage(result),
        "timings": timings(result),
    }


def stream_tool_calls(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The reply's calls as one stream delta each (they are parsed once complete)."""
    return [{"index": i, **call} for i, call in enumerate(tool_calls(result))]
