"""Which live sequence a prompt's cached prefix is credited to (``best_live_match``):
the longest shared prefix; among equals, one whose tokens go on past it (what a
divergence report names); then the calling turn's own sequence."""

from __future__ import annotations

from openclaw_daemon.model.base import LiveMatch, best_live_match

PROMPT = (1, 2, 3, 4, 5, 6)


def test_the_longest_shared_prefix_wins_and_the_sequences_read_are_counted() -> None:
    match = best_live_match((0, (1, 2)), [(1, (1, 2, 3, 4, 9)), (2, (1, 2, 3))], PROMPT)
    assert match == LiveMatch(4, 1, (1, 2, 3, 4, 9), sequences=3)


def test_on_a_tie_a_donor_that_goes_on_past_is_named_over_one_that_ends_there() -> None:
    match = best_live_match((0, (1, 2, 3)), [(3, (1, 2, 3, 7, 7))], PROMPT)
    assert (match.length, match.seq_id, match.held) == (3, 3, (1, 2, 3, 7, 7))


def test_on_a_full_tie_the_own_sequence_is_named() -> None:
    match = best_live_match((0, (1, 2, 3, 8)), [(1, (1, 2, 3, 7))], PROMPT)
    assert (match.seq_id, match.held) == (0, (1, 2, 3, 8))


def test_with_one_sequence_it_is_the_match_and_nothing_in_common_is_length_0() -> None:
    assert best_live_match((0, (1, 2)), [], PROMPT) == LiveMatch(2, 0, (1, 2), 1)
    match = best_live_match((0, ()), [(1, (5,))], PROMPT)
    assert (match.length, match.sequences) == (0, 2)
