"""Gemma 3 (sliding window 512) through the real CLI and daemon: a new session
whose first prompt equals an earlier, longer session's gets the same greedy
answer, whether the cache serves it from the live context (L1), a parked state
(L2) or a file after a restart (L3). Before issue 15 the L2/L3 paths answered
``<>`` and stray markup here, with no error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli

pytestmark = pytest.mark.e2e

QUESTION = "List three colours, one per line."


def _ask(cli: Cli, gemma: Path, session: str, message: str = QUESTION) -> dict[str, Any]:
    return cli.turn(
        message, "--model", str(gemma), "--session-id", session, "--max-tokens", "24",
        timeout=300,
    )  # fmt: skip


def _text(envelope: dict[str, Any]) -> str:
    return str(envelope["payloads"][0]["text"])


def _cache(envelope: dict[str, Any]) -> dict[str, Any]:
    return dict(envelope["meta"]["trace"]["cache"])


def test_new_sessions_reuse_an_earlier_sessions_state_and_answer_the_same(
    cli: Cli, gemma_gguf: Path
) -> None:
    first = _ask(cli, gemma_gguf, "a")
    assert cli.status()["kvMemory"] == {"kind": "sliding-window", "slidingWindow": 512}
    assert "sliding window of 512 tokens" in cli.run("daemon", "status").stdout
    reference = _text(first)
    assert reference.strip()
    # Session a goes on, past its first prompt and most of a window.
    _ask(cli, gemma_gguf, "a", "Now name three animals, one per line.")

    live = _ask(cli, gemma_gguf, "b")  # the live context trimmed back (L1)
    assert _text(live) == reference
    assert _cache(live)["tier"] == "L1" and _cache(live)["cachedTokens"] > 0

    _ask(cli, gemma_gguf, "other", "Say hi.")  # parks b's state, fills the live context
    parked = _ask(cli, gemma_gguf, "c")  # restored from RAM (L2), then cut back
    assert _text(parked) == reference
    assert _cache(parked)["tier"] == "L2" and _cache(parked)["cachedTokens"] > 0
    assert not [n for n in _cache(parked).get("notices", []) if "discarded" in n]

    cli.run("daemon", "restart", "--model", str(gemma_gguf), timeout=300)
    restored = _ask(cli, gemma_gguf, "d")  # from the files (L3)
    assert _text(restored) == reference
    assert _cache(restored)["tier"] == "L3" and _cache(restored)["cachedTokens"] > 0
