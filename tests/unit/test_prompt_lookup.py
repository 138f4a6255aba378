"""Prompt-lookup drafts (model/prompt_lookup.py) on a scripted model: the ids are
plain greedy decoding's, whatever the drafts guess, and the sequence holds every
yielded id but the last when the decode ends or is closed. The real model's
equivalence is tests/e2e/test_prompt_lookup.py."""

from __future__ import annotations

import itertools

import pytest

from openclaw_daemon.model.base import DecodeStats
from openclaw_daemon.model.prompt_lookup import MAX_DRAFT, Drafter, draft_length, drafted_decode
from openclaw_daemon.wire.errors import CancelledError

END = 0


class ScriptedSequence:
    """A "model" whose greedy next id is a function of the whole sequence so far,
    evaluated as a real one is: ``sample(row)`` reads the row of the last batch."""

    def __init__(self, prompt: list[int], next_id) -> None:  # type: ignore[no-untyped-def]
        self.held = list(prompt)
        self.next_id = next_id
        self.rows: list[int] = [next_id(self.held)]  # the prefill's last row
        self.batches: list[list[int]] = []

    def live(self) -> int:
        return len(self.held)

    def evaluate(self, tokens: list[int]) -> None:
        self.batches.append(list(tokens))
        self.rows = []
        for token in tokens:
            self.held.append(token)
            self.rows.append(self.next_id(self.held))

    def sample(self, row: int) -> int:
        return self.rows[row]

    def cut(self, keep: int) -> None:
        assert keep <= len(self.held)
        del self.held[keep:]


def plain(prompt: list[int], next_id, budget: int) -> list[int]:  # type: ignore[no-untyped-def]
    out, seq = [], list(prompt)
    for _ in range(budget):
        token = next_id(seq)
        out.append(token)
        if token == END:
            break
        seq.append(token)
    return out


def quoting(source: list[int]):  # type: ignore[no-untyped-def]
    """Copies ``source`` after the marker 99, then deviates every 7th token."""

    def next_id(seq: list[int]) -> int:
        start = seq.index(99) + 1 if 99 in seq else len(seq)
        done = len(seq) - start
        if done >= len(source):
            return END
        return 50 + done if done % 7 == 6 else source[done]

    return next_id


SOURCE = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28]
PROMPT = [1, 2, *SOURCE, 3, 99]


def run(prompt: list[int], next_id, budget: int) -> tuple[list[int], ScriptedSequence, DecodeStats]:  # type: ignore[no-untyped-def]
    seq, stats = ScriptedSequence(prompt, next_id), DecodeStats()
    ids = list(
        drafted_decode(
            seq, list(prompt), budget=budget, is_end=lambda t: t == END,
            cancelled=lambda: False, stats=stats,
        )
    )  # fmt: skip
    return ids, seq, stats


@pytest.mark.parametrize("budget", [1, 2, 5, 9, 30])
def test_same_ids_as_plain_greedy_and_drafts_are_used(budget: int) -> None:
    ids, seq, stats = run(PROMPT, quoting(SOURCE), budget)
    assert ids == plain(PROMPT, quoting(SOURCE), budget)
    # Every yielded id but the last is held, nothing of a rejected draft.
    assert seq.held == PROMPT + ids[:-1]
    if budget == 30:
        assert stats.accepted > 0 and stats.drafted > stats.accepted
        assert stats.batches < len(ids) - 1  # fewer evaluations than tokens


def test_no_draft_when_nothing_repeats() -> None:
    def counting(seq: list[int]) -> int:
        return 1000 + len(seq)

    ids, seq, stats = run([1, 2, 3], counting, 6)
    assert ids == plain([1, 2, 3], counting, 6)
    assert stats.drafted == 0 and stats.batches == 5
    assert all(len(b) == 1 for b in seq.batches)


def test_closing_early_holds_the_yielded_ids_but_the_last() -> None:
    seq, stats = ScriptedSequence(PROMPT, quoting(SOURCE)), DecodeStats()
    gen = drafted_decode(
        seq, list(PROMPT), budget=30, is_end=lambda t: t == END,
        cancelled=lambda: False, stats=stats,
    )  # fmt: skip
    taken = list(itertools.islice(gen, 4))  # a stop string after the 4th id
    assert len(seq.held) > len(PROMPT) + 3  # the batch in flight ran ahead
    gen.close()
    assert seq.held == PROMPT + taken[:-1]


def test_cancel_stops_between_batches() -> None:
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    seq = ScriptedSequence(PROMPT, quoting(SOURCE))
    gen = drafted_decode(
        seq, list(PROMPT), budget=30, is_end=lambda t: t == END,
        cancelled=cancelled, stats=DecodeStats(),
    )  # fmt: skip
    taken: list[int] = []
    with pytest.raises(CancelledError):
        for token in gen:
            taken.append(token)
    assert seq.held == PROMPT + taken[:-1]


def test_drafter_copies_the_occurrence_with_the_longest_shared_context() -> None:
    # 5 6 7 follows 8 9 1 2 3 4 twice; the tape ends with 1 2 3 4 5 6 7.
    drafter = Drafter([8, 9, 1, 2, 3, 4, 5, 6, 7, 30, 31, 32, 33, 34, 35, 36, 37, 38])
    drafter.extend([0, 4, 5, 6, 7, 40, 41, 42, 43])  # a later 5 6 7, less context
    drafter.extend([1, 2, 3, 4, 5, 6, 7])
    assert drafter.draft() == [30, 31, 32, 33]  # 7 tokens of context: a draft of 4
    drafter.extend([30, 31, 32, 33])
    assert drafter.draft() == [34, 35, 36, 37, 38, 0, 4, 5]  # 11 tokens: a full one
    assert len(drafter.draft()) <= MAX_DRAFT
    assert drafter.draft(limit=3) == [34, 35, 36]
    assert drafter.draft(limit=1) == []  # too short to be worth a batch


def test_a_bare_three_token_match_drafts_little_and_ties_go_to_the_latest() -> None:
    drafter = Drafter([1, 5, 6, 7, 10, 11, 12, 2, 5, 6, 7, 20, 21, 22, 3, 5, 6, 7])
    assert drafter.draft() == [20, 21]  # three tokens of context each: the latest, 2 long
    assert Drafter([1, 2, 3]).draft() == []
    assert Drafter([1, 2, 1, 2]).draft() == []  # a 2-gram is not enough
    assert draft_length(3) == 2 and draft_length(4) == 4 and draft_length(8) == MAX_DRAFT
