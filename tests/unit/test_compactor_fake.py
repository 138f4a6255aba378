"""Compaction on the fake model. Asked for over the daemon's socket: the summary is a
fork of the cached prompt, the new layout is prefilled ahead, and the next turn is a
cache hit. On overflow, inside the turn: compacted on a fork, then answered."""

from __future__ import annotations

from typing import Any

from openclaw_daemon.model.fake import FakeEngine
from openclaw_daemon.serve.server import Daemon
from openclaw_daemon.turn.compactor import INSTRUCTION
from tests.conftest import transcript, wait_for
from tests.unit.fake_daemon import daemon_on, pipeline_on, result_of, send

N_CTX = 16384


def _status(daemon: Daemon) -> dict[str, Any]:
    return result_of(send(daemon, "status"))


def test_compaction_forks_the_cached_prompt_and_the_next_turn_is_a_cache_hit() -> None:
    engine = FakeEngine(n_ctx=N_CTX)
    long_reply = "A long first answer. " * 40
    engine.enqueue(long_reply, "Second.", "Third.")
    with daemon_on(engine) as daemon:
        first = result_of(send(daemon, "turn", message="first question " * 40))
        session = first["sessionId"]
        result_of(send(daemon, "turn", message="second question", session_id=session))
        result_of(send(daemon, "turn", message="third question", session_id=session))
        live_before = tuple(engine.live_tokens)

        engine.enqueue("They asked three questions.")
        compacted = result_of(send(daemon, "compact", session_id=session))
        # The summary prompt extends the session's cached one: only the instruction
        # (and the last reply's trailer) was prefilled.
        summary_call = engine.calls[-1]
        assert summary_call.prompt[: len(live_before)] == live_before
        instruction = engine.tokenize(
            f"<|im_end|>\n<|im_start|>user\n{INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n",
            add_bos=False,
            special=True,
        )
        assert compacted["summaryPrefillTokens"] == len(instruction)
        assert compacted["summaryCachedTokens"] == len(live_before)
        assert compacted["summaryCacheTier"] == "L1"
        assert compacted["summary"] == "They asked three questions."
        assert compacted["summarizedEntries"] == 2  # the first turn: its question and answer
        assert compacted["tokensAfter"] < compacted["tokensBefore"]

        # Once idle, the daemon prefills the new layout ahead and parks it.
        assert wait_for(lambda: _status(daemon)["compaction"]["prefilledAhead"] == 1, timeout=10)
        laid_out = engine.prefills[-1].prompt
        assert len(laid_out) == compacted["tokensAfter"]
        assert engine.kv.snapshots[-1] == laid_out

        engine.enqueue("Fourth.")
        fourth = result_of(send(daemon, "turn", message="fourth question", session_id=session))
    new = engine.tokenize(
        "<|im_start|>user\nfourth question<|im_end|>\n<|im_start|>assistant\n",
        add_bos=False,
        special=True,
    )
    assert fourth["text"] == "Fourth."
    assert fourth["cache"]["tier"] == "L1"
    assert fourth["usage"]["cacheRead"] == compacted["tokensAfter"]
    assert fourth["usage"]["input"] == len(new)
    report = fourth["compaction"]
    assert report["tokensAfter"] == compacted["tokensAfter"]
    assert report["prefillAheadTokens"] > 0
    # The summary is in the prompt the model answered from; the first turn is not.
    seen = engine.detokenize(list(engine.calls[-1].prompt), special=True).decode()
    assert "They asked three questions." in seen
    assert "first question" not in seen and "third question" in seen


def test_a_turn_that_overflows_compacts_on_a_fork_and_answers() -> None:
    summary = "Earlier: two questions."
    engine = FakeEngine(["r1 " * 50, "r2 " * 50, summary, "Answer three."], n_ctx=3500)
    with pipeline_on(engine) as harness:
        first = harness.turn("q1 " * 50)
        session = first["sessionId"]
        harness.turn("q2 " * 50, session_id=session)
        live_before = tuple(engine.live_tokens)
        third = harness.turn("q3 " * 200, session_id=session)
        notices = [e["text"] for e in harness.events if e["type"] == "notice"]
    # 3,008 tokens held + a 600-token message do not fit 3,500 with room to reply.
    assert len(live_before) + 600 > 3500
    assert third["text"] == "Answer three."
    assert any(n.startswith("compacted the session to fit") for n in notices)
    # The summary was generated on a fork of the cached prompt (nothing re-prefilled)...
    summary_prefill = engine.prefills[2]
    assert summary_prefill.prompt[: len(live_before)] == live_before
    assert summary_prefill.reused == len(live_before)
    # ...and the answer's prompt is the new layout: the head still cached, the
    # summary where the first turn was, the second turn kept verbatim.
    seen = engine.detokenize(list(engine.calls[-1].prompt), special=True).decode()
    assert summary in seen and "q1" not in seen and "q2 q2" in seen
    divergence = third["cache"]["divergence"]
    assert divergence["segment"] == "message 1 (user)"
    assert third["usage"]["cacheRead"] == divergence["position"] > 2000
    entries = transcript(third["sessionFile"])
    (compaction,) = [e for e in entries if e.get("type") == "compaction"]
    assert compaction["summary"] == summary
