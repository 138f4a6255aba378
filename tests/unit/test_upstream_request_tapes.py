"""Per-session request tapes: append-only requests are proved, a divergence is
located, and memory is bounded."""

from __future__ import annotations

from openclaw_daemon.upstream.request_tapes import RequestCheck, RequestTapes


def test_append_only_then_divergence() -> None:
    tapes = RequestTapes()
    first = tapes.record("s", [1, 2, 3])
    assert first == RequestCheck(0, 0, False) and "first request" in first.explain()
    grown = tapes.record("s", [1, 2, 3, 4, 5])
    assert grown == RequestCheck(3, 3, True) and "all 3 tokens" in grown.explain()
    changed = tapes.record("s", [1, 9, 3, 4, 5, 6])
    assert changed == RequestCheck(5, 1, False)
    assert "diverged at token 1 of 5" in changed.explain()
    assert tapes.record("other", [1, 2]).previous == 0  # sessions are separate


def test_compaction_shorter_prompt_is_not_append_only() -> None:
    tapes = RequestTapes()
    tapes.record("s", [1, 2, 3, 4])
    assert tapes.record("s", [1, 2, 7]) == RequestCheck(4, 2, False)


def test_bounded_and_forgettable() -> None:
    tapes = RequestTapes(max_sessions=2)
    for name in ("a", "b", "c"):
        tapes.record(name, [1])
    assert tapes.record("a", [1]).previous == 0  # the oldest was dropped
    tapes.forget("c")
    assert tapes.record("c", [1]).previous == 0
