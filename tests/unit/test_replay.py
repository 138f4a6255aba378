"""Request ids and the tape check, without a model."""

from __future__ import annotations

import pytest

from openclaw_daemon.turn import replay, tape_check
from openclaw_daemon.wire.errors import BadRequestError
from openclaw_sessions.entries import assistant_entry, tool_result_entry, user_entry

USAGE = {"input": 10, "output": 3, "cacheRead": 0, "cacheWrite": 10, "total": 13}


def turn(request_id: str, text: str, stop: str = "stop") -> list[dict]:
    user = user_entry(None, "hi", request_id=request_id)
    call = assistant_entry(
        user["id"], text="", tool_calls=[{"id": "c1", "name": "read", "arguments": {"path": "a"}}],
        usage=USAGE, model="m", provider="p", api="a", stop_reason="toolUse", raw_text="<x>",
    )  # fmt: skip
    result = tool_result_entry(call["id"], call_id="c1", tool_name="read", text="A", is_error=False)
    final = assistant_entry(
        result["id"], text=text, tool_calls=[], usage=USAGE, model="m", provider="p", api="a",
        stop_reason=stop,
    )  # fmt: skip
    return [user, call, result, final]


def test_a_committed_turn_is_found_and_replayed_without_model_calls() -> None:
    entries = [*turn("a", "first"), *turn("b", "second")]
    found = replay.committed_turn(entries, "b", "hi")
    assert found is not None and found[0]["requestId"] == "b" and len(found) == 4
    reply = replay.reply(found)
    assert reply["text"] == "second" and reply["steps"] == []
    assert reply["usage"]["output"] == 0 and reply["replayed"]["usage"]["output"] == 3
    [first, _final] = reply["replayed"]["steps"]
    assert first["toolCalls"][0]["result"] == "A"
    assert replay.committed_turn(entries, "c", "hi") is None


def test_an_interrupted_turn_is_not_a_reply_and_a_reused_id_is_refused() -> None:
    assert replay.committed_turn(turn("a", "par", stop="aborted"), "a", "hi") is None
    with pytest.raises(BadRequestError, match="another message"):
        replay.committed_turn(turn("a", "x"), "a", "something else")
    for bad in ("x" * 200, 7, "a\nb"):
        with pytest.raises(BadRequestError):
            replay.check_id(bad)
    assert replay.check_id(None) == "" and replay.check_id("req-1") == "req-1"


def test_tape_check_reports_the_first_differing_byte() -> None:
    spell = {1: b"<s>", 2: b"ab", 3: b"cd", 4: b"cX"}

    def detok(ids: list[int]) -> bytes:
        return b"".join(spell[i] for i in ids)

    same = tape_check.compare(detok, [1, 2, 3], "abcd", bos_id=1)
    assert same["tapeMatchesTranscript"] and same["firstDifference"] is None
    diff = tape_check.compare(detok, [2, 4], "abcd")
    assert not diff["tapeMatchesTranscript"] and diff["firstDifference"] == 3
    short = tape_check.compare(detok, [2], "abcd")
    assert short["firstDifference"] == 2
