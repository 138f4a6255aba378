"""Admission and summary-chunk planning at a full context window (no model)."""

from __future__ import annotations

import pytest

from openclaw_daemon.turn.window import Chunk, admits, reply_room, summary_chunks
from openclaw_daemon.wire.errors import ContextOverflowError, KvSlotError, error_from_wire


def test_a_prompt_with_no_room_to_reply_is_not_admitted() -> None:
    assert admits(2000, 2048, 512)
    assert not admits(2040, 2048, 512)  # 8 tokens of room: an overflow
    assert not admits(2048, 2048, 512)
    assert admits(2044, 2048, 4)  # --max-tokens 4 needs only 4
    assert reply_room(0) == 1


def test_a_session_that_fits_is_summarised_in_one_fork() -> None:
    # head 600, two turns; the whole prompt leaves room for instruction + summary.
    assert summary_chunks([600, 900, 950, 1200, 1250], 2048, 240, 216) == [Chunk(1, 5)]


def test_an_over_full_session_forks_from_the_longest_prefix_that_fits() -> None:
    # The edge: 2049 tokens in a 2048 window, after two turns.
    prefixes = [650, 1365, 1371, 2043, 2049]
    chunks = summary_chunks(prefixes, 2048, 240, 216)
    assert chunks[0] == Chunk(1, 3)  # a fork of the cached first turn (1371 <= 1808)
    # The rest follows the first summary; every message is covered once.
    assert chunks[1:] == [Chunk(3, 5)]
    covered = [i for c in chunks for i in range(c.start, c.end)]
    assert covered == [1, 2, 3, 4]
    limit = 2048 - 240
    for chunk in chunks[1:]:
        assert prefixes[0] + 216 + prefixes[chunk.end - 1] - prefixes[chunk.start - 1] <= limit


def test_a_message_too_long_for_any_chunk_is_clipped() -> None:
    # One turn whose user message alone fills the window.
    # Its short reply rides along in the same chunk (one summary call, not two).
    chunks = summary_chunks([650, 2043, 2049], 2048, 240, 216)
    assert chunks == [Chunk(1, 3, clip=True, budget=2048 - 240 - 650 - 6)]
    # A long message later in the session is clipped to the later-chunk budget;
    # a long reply after it is a chunk of its own.
    later = summary_chunks([650, 700, 710, 2040, 2040 + 600], 2048, 240, 216)
    assert later[0] == Chunk(1, 3)
    assert later[1] == Chunk(3, 4, clip=True, budget=2048 - 240 - 650 - 216)
    assert later[2] == Chunk(4, 5)


def test_a_head_that_fills_the_window_cannot_be_summarised() -> None:
    with pytest.raises(ValueError):
        summary_chunks([1900, 2000], 2048, 240, 216)
    assert summary_chunks([600], 2048, 240, 216) == []


def test_no_kv_slot_is_a_recoverable_overflow_on_both_sides_of_the_wire() -> None:
    error = error_from_wire("kv_slot", "no room", "")
    assert isinstance(error, KvSlotError) and isinstance(error, ContextOverflowError)
