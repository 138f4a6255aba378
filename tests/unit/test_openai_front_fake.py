"""The ``chat`` request (``openclaw serve``'s completions) on the fake model, through
the whole in-process daemon: a conversation is found again by its messages, so
a follow-up prefills only what is new, however the client rewrites the reply;
client tools come back as calls; bad input is refused naming the field.

The same against the real model and the ``openai`` SDK: tests/e2e/test_openai_front.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from openclaw_daemon.front.front_tapes import FrontTapes
from openclaw_daemon.model.fake import FakeEngine
from openclaw_daemon.model.tape import TokenTape
from openclaw_daemon.serve.server import Daemon
from openclaw_daemon.wire.errors import BadRequestError, ContextOverflowError
from tests.conftest import wait_for
from tests.unit.fake_daemon import daemon_on, result_of, send

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def chat(daemon: Daemon, messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return result_of(send(daemon, "chat", messages=messages, **fields))


def test_a_follow_up_prefills_only_its_new_messages() -> None:
    engine = FakeEngine(["Hello there.", "Bonjour."])
    with daemon_on(engine) as daemon:
        first_messages = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ]
        first = chat(daemon, first_messages)
        assert first["text"] == "Hello there." and first["finishReason"] == "stop"
        assert first["usage"]["cachedTokens"] == 0
        assert first["continuedMessages"] == 0
        first_prompt = engine.calls[-1].prompt
        # The client sends the reply back as it got it, plus a new question.
        follow_up = [
            *first_messages,
            {"role": "assistant", "content": first["text"]},
            {"role": "user", "content": "In French?"},
        ]
        second = chat(daemon, follow_up)
        assert second["text"] == "Bonjour."
        assert second["continuedMessages"] == 3
        prompt = engine.calls[-1].prompt
        # The second prompt extends the first one with the generated reply's ids.
        reply_ids = engine.tokenize("Hello there.", add_bos=False)
        assert prompt[: len(first_prompt) + len(reply_ids)] == (*first_prompt, *reply_ids)
        usage = second["usage"]
        assert usage["cachedTokens"] == len(first_prompt) + len(reply_ids)
        new = engine.tokenize(
            "<|im_end|>\n<|im_start|>user\nIn French?<|im_end|>\n<|im_start|>assistant\n",
            add_bos=False,
            special=True,
        )
        assert usage["promptTokens"] - usage["cachedTokens"] == len(new)


def test_a_tool_call_comes_back_as_a_call_and_its_result_continues_the_tape() -> None:
    engine = FakeEngine([f"Let me look.\n{CALL}", "It is sunny."])
    with daemon_on(engine) as daemon:
        ask = [{"role": "user", "content": "Weather in Paris?"}]
        first = chat(daemon, ask, tools=[WEATHER])
        assert first["finishReason"] == "tool_calls"
        assert first["text"] == "Let me look."
        [call] = first["toolCalls"]
        assert call["name"] == "get_weather" and call["arguments"] == {"city": "Paris"}
        # The definitions went into the head in the model's format.
        head = engine.detokenize(list(engine.calls[0].prompt)).decode()
        assert '"name": "get_weather"' in head and "<tools>" in head
        # The client rewrites the call as clients do: its own spacing, another id,
        # content null.
        follow_up = [
            *ask,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "renamed-by-client",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "renamed-by-client", "content": "sunny, 24C"},
        ]
        second = chat(daemon, follow_up, tools=[WEATHER])
        assert second["continuedMessages"] == 2
        assert second["text"] == "It is sunny." and second["toolCalls"] == []
        prompt = engine.detokenize(list(engine.calls[-1].prompt)).decode()
        assert "<tool_response>\nsunny, 24C\n</tool_response>" in prompt
        assert second["usage"]["cachedTokens"] >= len(engine.calls[0].prompt)


def test_required_tool_choice_constrains_the_reply_to_the_clients_tools() -> None:
    engine = FakeEngine([CALL])
    with daemon_on(engine) as daemon:
        result = chat(
            daemon,
            [{"role": "user", "content": "Weather?"}],
            tools=[WEATHER],
            tool_choice="required",
        )
        grammar = engine.calls[-1].grammar
        assert grammar is not None and '"get_weather"' in grammar and "city" in grammar
        assert result["finishReason"] == "tool_calls"


def test_a_malformed_call_is_returned_as_text() -> None:
    engine = FakeEngine(["<tool_call>\n{not json}\n</tool_call>"])
    with daemon_on(engine) as daemon:
        result = chat(daemon, [{"role": "user", "content": "Weather?"}], tools=[WEATHER])
        assert result["toolCalls"] == [] and result["finishReason"] == "stop"
        assert "{not json}" in result["hiddenText"]


def test_a_plain_completion_uses_no_template() -> None:
    engine = FakeEngine([" world"])
    with daemon_on(engine) as daemon:
        result = result_of(send(daemon, "chat", prompt="Hello"))
        assert result["text"] == " world"
        assert engine.calls[-1].prompt == tuple(engine.tokenize("Hello", add_bos=False))


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"messages": []}, "no messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "toolChoice": "function:nope"},
            "tool_choice",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "maxTokens": 0}, "maxTokens"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "x"}]}, "tools[0]"),
        (
            {"messages": [{"role": "user", "content": "x"}, {"role": "assistant"}]},
            "nothing to answer",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field(fields: dict[str, Any], words: str) -> None:
    engine = FakeEngine(["never"])
    with daemon_on(engine) as daemon:
        with pytest.raises(BadRequestError, match=re.escape(words)):
            send(daemon, "chat", **fields)
        assert engine.calls == []
        # ... and the daemon serves the next request.
        assert chat(daemon, [{"role": "user", "content": "hi"}])["text"] == "never"


def test_a_prompt_over_the_window_is_a_context_overflow() -> None:
    engine = FakeEngine(["x"], n_ctx=256)
    with daemon_on(engine) as daemon, pytest.raises(ContextOverflowError, match="context window"):
        chat(daemon, [{"role": "user", "content": "word " * 300}])


def test_saved_tapes_are_found_after_a_restart_and_only_for_their_model(tmp_path: Path) -> None:
    tape = TokenTape(tokens=[1, 2, 3], text="abc", messages=[{"role": "user", "content": "a"}])
    saved = FrontTapes(tmp_path, "model-a", n_vocab=10)
    saved.put("k" * 64, tape)
    assert saved.save() == 1
    again = FrontTapes(tmp_path, "model-a", n_vocab=10)
    assert again.longest(["k0" * 32, "k" * 64]) == (1, tape)
    other = FrontTapes(tmp_path, "model-b", n_vocab=10)
    assert other.longest(["k0" * 32, "k" * 64]) == (0, None)
    (tmp_path / f"{'k' * 40}.json").write_text(json.dumps({"model": "model-a", "tokens": [99]}))
    assert FrontTapes(tmp_path, "model-a", n_vocab=10).longest(["x", "k" * 64]) == (0, None)


def test_a_call_cut_off_by_max_tokens_is_dropped_and_the_calls_before_it_stand() -> None:
    cut = f'{CALL}\n<tool_call>\n{{"name": "get_wea'
    engine = FakeEngine([cut, "Fine."])
    with daemon_on(engine) as daemon:
        ask = [{"role": "user", "content": "Weather in Paris?"}]
        budget = len(engine.tokenize(cut, add_bos=False))
        first = chat(daemon, ask, tools=[WEATHER], max_tokens=budget)
        assert first["finishReason"] == "tool_calls"
        [call] = first["toolCalls"]
        assert call["arguments"] == {"city": "Paris"}
        follow_up = [
            *ask,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
        ]
        second = chat(daemon, follow_up, tools=[WEATHER])
        assert second["continuedMessages"] == 2
        prompt = engine.detokenize(list(engine.calls[-1].prompt)).decode()
        # The cut call is in neither the reply nor the tape the next prompt extends.
        assert '"get_wea' not in prompt.replace('"get_weather', "")


def test_text_after_a_call_is_not_content_so_stream_and_plain_agree() -> None:
    engine = FakeEngine([f"Checking.\n{CALL}\nI will report back."])
    with daemon_on(engine) as daemon:
        frames = send(daemon, "chat", messages=[{"role": "user", "content": "Go"}], tools=[WEATHER])
        result = result_of(frames)
        streamed = "".join(f["text"] for f in frames if f["type"] == "token")
        assert result["text"] == "Checking." == streamed.strip()
        assert result["finishReason"] == "tool_calls"


def test_each_completion_is_in_the_turn_log() -> None:
    engine = FakeEngine(["One.", "Two."])
    with daemon_on(engine) as daemon:
        ask = [{"role": "user", "content": "Count"}]
        first = chat(daemon, ask)
        chat(daemon, [*ask, {"role": "assistant", "content": first["text"]},
                      {"role": "user", "content": "Again"}])  # fmt: skip
        # Stored just after the reply went out.
        assert wait_for(lambda: len(daemon.state.turn_log.read(limit=None)) == 2)
        records = daemon.state.turn_log.read(limit=None)
    assert [r["sessionKey"] for r in records] == ["openai-front", "openai-front"]
    last = records[-1]
    assert last["usage"]["cacheRead"] > 0 and last["stopReason"] == "stop"
    assert {"model.prefill", "model.decode", "cache.lookup"} <= {s["name"] for s in last["spans"]}
