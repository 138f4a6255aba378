"""llama-server's raw /completion stream read into text and a ChatEnd."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from openclaw_daemon.upstream.chat_stream import ChatEnd
from openclaw_daemon.upstream.completion_stream import completion_body, stream_completion
from openclaw_daemon.wire.errors import UpstreamError


class _Client:
    provider_id = "ls"

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.sent: list[tuple[str, dict[str, Any], bool]] = []

    def stream_json(
        self, url: str, body: dict[str, Any], *, require_done: bool = True, opened: Any = None
    ) -> Iterator[dict[str, Any]]:
        self.sent.append((url, body, require_done))
        yield from self.events


FINAL = {"content": "", "stop": True, "stop_type": "limit",
         "timings": {"cache_n": 90, "prompt_n": 10, "predicted_n": 2}}  # fmt: skip


def test_text_then_the_servers_own_usage_and_reason() -> None:
    client = _Client([{"content": "Hel", "stop": False}, {"content": "lo", "stop": False}, FINAL])
    body = completion_body([1, 2, 3], max_tokens=2, temperature=0.0, seed=7, stop=["\n"],
                           grammar="root ::= \"a\"")  # fmt: skip
    items = list(stream_completion(client, "http://h/completion", body))  # type: ignore[arg-type]
    assert items[:2] == ["Hel", "lo"]
    end = items[2]
    assert isinstance(end, ChatEnd) and end.finish_reason == "length"
    assert (end.usage.prompt, end.usage.cached, end.usage.output) == (100, 90, 2)
    url, sent, require_done = client.sent[0]
    assert require_done is False  # this stream has no [DONE]; its stop event ends it
    assert sent["prompt"] == [1, 2, 3] and sent["cache_prompt"] is True
    assert (sent["n_predict"], sent["seed"], sent["stop"]) == (2, 7, ["\n"])
    assert sent["grammar"] == 'root ::= "a"'


@pytest.mark.parametrize(("stop_type", "finish"), [("eos", "stop"), ("word", "stop"), ("x", "")])
def test_the_stop_type_is_the_finish_reason(stop_type: str, finish: str) -> None:
    client = _Client([{**FINAL, "stop_type": stop_type}])
    end = list(stream_completion(client, "u", {}))[-1]  # type: ignore[arg-type]
    assert isinstance(end, ChatEnd) and end.finish_reason == finish


def test_a_stream_without_its_stop_event_was_cut() -> None:
    client = _Client([{"content": "Hel", "stop": False}])
    items = stream_completion(client, "http://h/completion", {})  # type: ignore[arg-type]
    assert next(items) == "Hel"
    with pytest.raises(UpstreamError, match="ended before its final event"):
        next(items)
