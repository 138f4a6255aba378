"""The turn pipeline and its agent loop on the fake model: usage, cache reuse, tool calls."""

from __future__ import annotations

import json
from pathlib import Path

from openclaw_daemon.model.fake import FakeEngine
from tests.conftest import transcript
from tests.unit.fake_daemon import pipeline_on

N_CTX = 16384


def test_a_plain_turn_prefills_the_prompt_cold_and_streams_the_reply() -> None:
    engine = FakeEngine(["Hello there."], n_ctx=N_CTX)
    with pipeline_on(engine) as harness:
        result = harness.turn("hi")
    assert result["text"] == "Hello there."
    assert harness.streamed_text() == "Hello there."
    assert result["stopReason"] == "stop"
    (prefill,) = engine.prefills
    prompt = engine.detokenize(list(prefill.prompt), special=True).decode()
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    # Nothing was cached: every prompt token is input; the reply's 12 bytes are output.
    assert result["usage"] == {
        "input": len(prefill.prompt),
        "output": len("Hello there."),
        "cacheRead": 0,
        "cacheWrite": 0,
        "total": len(prefill.prompt) + 12,
    }
    assert (prefill.reused, prefill.evaluated) == (0, len(prefill.prompt))
    assert result["cache"]["tier"] == "none"
    entries = transcript(result["sessionFile"])
    roles = [e["message"]["role"] for e in entries if e.get("type") == "message"]
    assert roles == ["user", "assistant"]


def test_a_follow_up_prefills_only_the_new_message() -> None:
    engine = FakeEngine(["Hello there.", "Second answer."], n_ctx=N_CTX)
    with pipeline_on(engine) as harness:
        first = harness.turn("hi")
        second = harness.turn("more please", session_id=first["sessionId"])
    held = len(engine.prefills[0].prompt) + len("Hello there.")  # prompt + reply ids
    new = engine.tokenize(
        "<|im_end|>\n<|im_start|>user\nmore please<|im_end|>\n<|im_start|>assistant\n",
        add_bos=False,
        special=True,
    )
    assert engine.prefills[1].prompt == (
        *engine.prefills[0].prompt,
        *engine.tokenize("Hello there.", add_bos=False),
        *new,
    )
    assert (engine.prefills[1].reused, engine.prefills[1].evaluated) == (held, len(new))
    assert second["usage"]["cacheRead"] == held
    assert second["usage"]["input"] == len(new)
    assert second["cache"]["tier"] == "L1"
    assert second["cache"]["cachedTokens"] == held
    assert engine.kv.restores == [] and engine.kv.trims == []


def test_the_agent_loop_runs_a_hermes_tool_call_and_appends_its_result(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("the launch code is 4242\n")
    call = {"name": "read", "arguments": {"path": "notes.txt"}}
    engine = FakeEngine(
        [f"<tool_call>\n{json.dumps(call)}\n</tool_call>", "The code is 4242."], n_ctx=N_CTX
    )
    with pipeline_on(engine) as harness:
        result = harness.turn("what is the code?", cwd=str(tmp_path))
        events = list(harness.events)
    assert result["text"] == "The code is 4242."
    assert len(result["steps"]) == 2
    (ran,) = result["steps"][0]["toolCalls"]
    assert ran["name"] == "read" and ran["isError"] is False
    assert "the launch code is 4242" in ran["result"]
    tools = [(e["phase"], e["name"]) for e in events if e["type"] == "tool"]
    assert tools == [("start", "read"), ("end", "read")]
    # The call itself is not streamed to the user, only the answer.
    assert harness.streamed_text() == "The code is 4242."
    # The second model call saw the result, wrapped, as a tool message...
    seen = engine.detokenize(list(engine.calls[1].prompt), special=True).decode()
    tool_message = seen.rsplit("<|im_start|>tool\n", 1)[1]
    assert tool_message.startswith("<tool_response>\n")
    assert "the launch code is 4242" in tool_message
    assert tool_message.endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")
    # ...and prefilled only that: the first call's prompt and reply were reused.
    first_reply = engine.tokenize(f"<tool_call>\n{json.dumps(call)}\n</tool_call>", add_bos=False)
    held = len(engine.prefills[0].prompt) + len(first_reply)
    assert engine.prefills[1].reused == held
    step_usage = [s["usage"] for s in result["steps"]]
    assert step_usage[1]["cacheRead"] == held
    assert result["usage"]["input"] == step_usage[0]["input"] + step_usage[1]["input"]
    # The live sequence holds the second prompt and the answer, not its end-of-turn id.
    answer = engine.tokenize("The code is 4242.", add_bos=False)
    assert engine.live_tokens == [*engine.calls[1].prompt, *answer]
    entries = transcript(result["sessionFile"])
    assert [e["message"]["role"] for e in entries if e.get("type") == "message"] == [
        "user",
        "assistant",
        "toolResult",
        "assistant",
    ]


def test_a_forced_tool_call_passes_the_grammar_to_the_model(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha\n")
    call = {"name": "read", "arguments": {"path": "a.txt"}}
    engine = FakeEngine([f"<tool_call>\n{json.dumps(call)}\n</tool_call>", "alpha."], n_ctx=N_CTX)
    with pipeline_on(engine) as harness:
        result = harness.turn("read a.txt", cwd=str(tmp_path), tool_choice="read")
    assert result["text"] == "alpha."
    first, second = engine.calls
    # The fake's "grammar" is the call schema: the named tool and the listed file.
    assert first.grammar is not None
    assert '"read"' in first.grammar and "a.txt" in first.grammar
    assert '"exec"' not in first.grammar
    assert second.grammar is None  # a named tool constrains only the first call
