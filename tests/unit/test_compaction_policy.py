"""The compaction policy, without a model: when, where to cut, and what stays active."""

from __future__ import annotations

from typing import Any

from openclaw_sessions.compaction import CompactionSettings, active_messages, plan_compaction


def message(entry_id: str, role: str, size: int = 10) -> dict[str, Any]:
    return {"type": "message", "id": entry_id, "message": {"role": role, "size": size}}


def size(entry: dict[str, Any]) -> int:
    return int(entry["message"]["size"])


def conversation() -> list[dict[str, Any]]:
    return [
        {"type": "session", "id": "s"},
        message("u1", "user"),
        message("a1", "assistant"),
        message("u2", "user"),
        message("a2", "assistant", 40),  # a tool call ...
        message("r2", "toolResult", 100),  # ... and its result
        message("a2b", "assistant"),
        message("u3", "user"),
        message("a3", "assistant"),
        message("u4", "user", 30),
        message("a4", "assistant", 30),
    ]


def test_settings_scale_to_the_window() -> None:
    small = CompactionSettings.for_window(8192)
    assert (small.reserve, small.keep_recent) == (2048, 1638)
    assert small.needs_compaction(6200) and not small.needs_compaction(6000)
    large = CompactionSettings.for_window(200_000)
    assert (large.reserve, large.keep_recent) == (20_000, 20_000)


def test_the_tail_is_whole_recent_turns_within_budget() -> None:
    plan = plan_compaction(conversation(), size, keep_recent=100)
    assert plan is not None
    assert plan.first_kept_id == "u3"  # u3+a3 (20) + u4+a4 (60) fit; turn 2 (160) does not
    assert [e["id"] for e in plan.summarized] == ["u1", "a1", "u2", "a2", "r2", "a2b"]
    assert [e["id"] for e in plan.kept] == ["u3", "a3", "u4", "a4"]


def test_a_tool_call_is_never_separated_from_its_result() -> None:
    for budget in range(0, 400, 5):
        plan = plan_compaction(conversation(), size, keep_recent=budget)
        assert plan is not None
        kept = [e["id"] for e in plan.kept]
        assert plan.kept[0]["message"]["role"] == "user"
        assert ("a2" in kept) == ("r2" in kept)


def test_the_last_turn_is_kept_even_over_budget_and_one_turn_is_not_compacted() -> None:
    plan = plan_compaction(conversation(), size, keep_recent=0)
    assert plan is not None and plan.first_kept_id == "u4"
    assert plan_compaction(conversation()[:3], size, keep_recent=0) is None


def test_active_context_follows_the_latest_compaction() -> None:
    entries = conversation()
    entries.append(
        {"type": "compaction", "id": "c1", "summary": "Earlier: u1-u2.", "firstKeptEntryId": "u3"}
    )
    entries += [message("u5", "user"), message("a5", "assistant")]
    summary, active = active_messages(entries)
    assert summary == "Earlier: u1-u2."
    assert [e["id"] for e in active] == ["u3", "a3", "u4", "a4", "u5", "a5"]
    # A second compaction plans over the active context only.
    plan = plan_compaction(entries, size, keep_recent=25)
    assert plan is not None and plan.first_kept_id == "u5"
    assert [e["id"] for e in plan.summarized] == ["u3", "a3", "u4", "a4"]


def test_on_overflow_a_single_huge_turn_is_summarised_whole() -> None:
    entries = [
        message("u1", "user", 10),
        message("a1", "assistant", 50),
        message("r1", "toolResult", 5000),
    ]
    assert plan_compaction(entries, size, keep_recent=100) is None  # normal: keep the last turn
    plan = plan_compaction(entries, size, keep_recent=100, keep_last_turn=False)
    assert plan is not None and plan.kept == [] and plan.first_kept_id is None
    assert [e["id"] for e in plan.summarized] == ["u1", "a1", "r1"]
