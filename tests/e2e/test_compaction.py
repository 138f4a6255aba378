"""Cache-aware compaction, end to end: real CLI, real daemon, real embedded model.

The summary is generated on a fork of the cached prompt (only the instruction
is prefilled), the transcript keeps every old entry plus the compaction
entry, and the compacted layout is prefilled ahead, so the next turn is a hit.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from openclaw_daemon.observability.turn_record import prompt_tokens
from tests.conftest import Cli, transcript, wait_for

pytestmark = pytest.mark.e2e


def fact(label: str, count: int = 12) -> str:
    return " ".join(f"{label} note {i}: shelf {i} holds jar {i * 3 % 7}." for i in range(count))


def turn(cli: Cli, message: str, session: str) -> dict[str, Any]:
    return cli.turn(message, "--session-id", session, "--max-tokens", "8")


def compaction_status(cli: Cli) -> dict[str, int]:
    return cli.status()["compaction"]


def messages(path: str) -> list[dict[str, Any]]:
    return [e for e in transcript(path) if e["type"] == "message"]


def test_manual_compaction_keeps_every_entry_and_the_next_turn_hits(cli: Cli) -> None:
    first = turn(cli, fact("Red") + " Say OK.", "comp")
    for label in ("Green", "Blue"):
        turn(cli, fact(label) + " Say OK.", "comp")
    session_file = first["meta"]["agentMeta"]["sessionFile"]
    before = messages(session_file)
    result = json.loads(cli.run("sessions", "compact", "comp", "--json", timeout=300).stdout)
    # The summary was generated on a fork of the cached prompt: only the
    # instruction was prefilled.
    assert result["summaryCachedTokens"] >= 0.9 * (
        result["summaryCachedTokens"] + result["summaryPrefillTokens"]
    )
    assert result["summaryPrefillTokens"] < 80
    assert result["summary"] and result["summarizedEntries"] >= 2
    entries = transcript(session_file)
    assert [e for e in entries if e["type"] == "message"] == before  # nothing lost
    [compaction] = [e for e in entries if e["type"] == "compaction"]
    assert compaction["summary"] == result["summary"]
    assert compaction["firstKeptEntryId"] in {e["id"] for e in before}
    assert compaction["tokensBefore"] == result["tokensBefore"] > 0
    assert compaction["tokensAfter"] == result["tokensAfter"] > 0
    assert compaction["parentId"] == before[-1]["id"]
    assert wait_for(lambda: compaction_status(cli)["prefilledAhead"] >= 1, timeout=120)
    follow = turn(cli, "Which jar is on shelf 2?", "comp")
    usage = follow["meta"]["agentMeta"]["usage"]
    assert usage["cacheRead"] >= 0.9 * prompt_tokens(usage), usage
    # The turn says what the compaction cost and saved (the cost model's rate).
    compacted = follow["meta"]["compaction"]
    assert compacted["tokensAfter"] == result["tokensAfter"]
    assert compacted["prefillAheadTokens"] > 0 and compacted["savedS"] > 0
    assert "saved about" in compacted["summary"]
    assert follow["payloads"][0]["text"].strip()
    shown = cli.run("sessions", "show", "comp").stdout
    assert "compaction:" in shown and result["summary"][:40] in " ".join(shown.split())


def test_a_session_past_its_threshold_compacts_in_the_background(cli: Cli) -> None:
    # A 2048-token window: compaction is due past 2048 - 512 prompt tokens.
    cli.extra_env["OPENCLAW_N_CTX"] = "2048"
    for label in ("Amber", "Olive", "Slate"):  # ~320 tokens a turn after a ~670-token head
        last = turn(cli, fact(label, 20) + " Say OK.", "auto")
    assert prompt_tokens(last["meta"]["agentMeta"]["usage"]) > 2048 - 512
    assert wait_for(lambda: compaction_status(cli)["prefilledAhead"] >= 1, timeout=180)
    entries = transcript(last["meta"]["agentMeta"]["sessionFile"])
    [compaction] = [e for e in entries if e["type"] == "compaction"]
    assert compaction["tokensAfter"] < compaction["tokensBefore"]
    follow = turn(cli, "Thanks.", "auto")
    usage = follow["meta"]["agentMeta"]["usage"]
    assert usage["cacheRead"] >= 0.9 * prompt_tokens(usage), usage
    assert prompt_tokens(usage) < compaction["tokensBefore"]


def test_a_foreground_turn_preempts_the_background_prefill(cli: Cli) -> None:
    cli.extra_env["OPENCLAW_N_CTX"] = "4096"
    for label in ("Coral", "Ivory", "Jade", "Onyx", "Pearl", "Ruby"):  # ~480 tokens a turn
        last = turn(cli, fact(label, 30) + " Say OK.", "long")
    assert prompt_tokens(last["meta"]["agentMeta"]["usage"]) > 4096 - 1024
    # Wait for the background compaction; its prefill ahead then runs in batches.
    assert wait_for(lambda: compaction_status(cli)["compactions"] >= 1, timeout=300)
    other = turn(cli, "Say hi.", "other")  # arrives while the layout is prefilled ahead
    assert other["payloads"][0]["text"].strip()
    lane_wait = next(s for s in other["meta"]["trace"]["spans"] if s["name"] == "lane.wait")
    assert lane_wait["durationMs"] < 2000  # served first, not after the background prefill
    # The trace says what the turn waited behind: the background job it stopped.
    assert any(label.startswith("prefill-ahead:") for label in lane_wait["behind"]), lane_wait
    chart = cli.run("trace", "show", other["meta"]["trace"]["turnId"]).stdout
    assert "behind prefill-ahead:" in " ".join(chart.split()), chart
    assert wait_for(lambda: compaction_status(cli)["prefilledAhead"] >= 1, timeout=300)
    status = compaction_status(cli)
    assert status["prefillAheadPreempted"] >= 1, status
    follow = turn(cli, "Thanks.", "long")
    usage = follow["meta"]["agentMeta"]["usage"]
    assert usage["cacheRead"] >= 0.9 * prompt_tokens(usage), usage
