"""Prompt-lookup drafts: the tokens that followed an earlier occurrence of the
sequence's last few tokens (n-gram speculative decoding, no draft model).

Agent replies quote what they read: a file being edited, a tool's arguments, a
summary of a document. When the last three tokens of the live tape appeared
before, what followed them then is a good guess for what follows now; the
engine verifies the guess in one batch and keeps the longest prefix the model
agrees with, so at temperature 0 the output is plain decoding's where batch
rows are computed as single steps are: scripts/setup's llama.cpp build, which
the engine checks at load (docs/internals.md, "Decoding").

Which earlier occurrence, and how far to trust it: the one whose context
matches the tape's furthest back (the latest of those), and a draft as long as
that match earns (``draft_length``). A three-token match alone is often a
common phrase elsewhere in the prompt (``", "`` in the tools' JSON) and its
guess is mostly wrong; a long shared run is a copy in progress.

Pure Python: a dict maps each 3-gram to the positions after its occurrences;
a draft compares at most ``CANDIDATES`` of them over ``LOOK_BACK`` tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from openclaw_daemon.model.base import DecodeStats
from openclaw_daemon.wire.errors import CancelledError

NGRAM = 3  # the shortest context a draft is taken from
LOOK_BACK = 32  # tokens of context compared when choosing between occurrences
CANDIDATES = 16  # the latest occurrences compared
MAX_DRAFT = 8  # tokens verified per batch at most
MIN_DRAFT = 2  # a shorter draft is not worth a batch


def draft_length(context: int) -> int:
    """Tokens to draft from a copy whose context matched ``context`` tokens. A
    batch of 2 rows costs nearly two single steps on a 2-core CPU and each row
    after that about a third to a half of one (docs/internals.md, both builds),
    so a short guess must be a sure one. On the quote bench's reply (an edited
    file, 400 tokens) this drafts 364 rows and keeps 299, against 473 and 288 for
    8-token drafts from the latest 3- (else 2-) gram: 1.39x plain decoding
    instead of 1.12x by the measured batch costs, and 1.33x against 1.08x
    measured in one process."""
    if context >= 8:
        return MAX_DRAFT
    return 4 if context >= 4 else MIN_DRAFT


class Drafter:
    """The tape so far and its 3-gram index; ``extend`` as tokens are accepted."""

    def __init__(self, tape: list[int]) -> None:
        self.tape: list[int] = []
        self._after: dict[tuple[int, ...], list[int]] = {}
        self.extend(tape)

    def extend(self, tokens: list[int]) -> None:
        tape, after = self.tape, self._after
        for token in tokens:
            tape.append(token)
            end = len(tape)
            if end >= NGRAM:
                after.setdefault(tuple(tape[end - NGRAM : end]), []).append(end)

    def draft(self, limit: int = MAX_DRAFT) -> list[int]:
        """Up to ``limit`` guessed next tokens; empty when the tape's ending is new."""
        tape, end = self.tape, len(self.tape)
        if limit < MIN_DRAFT or end < NGRAM:
            return []
        best, start = 0, -1
        for at in reversed(self._after.get(tuple(tape[end - NGRAM :]), [])[-CANDIDATES - 1 :]):
            if at == end:
                continue  # the tape's own ending
            context = self._context(at)
            if context > best:  # ties: the latest, seen first
                best, start = context, at
        if start < 0:
            return []
        guess = tape[start : start + min(limit, draft_length(best))]
        return guess if len(guess) >= MIN_DRAFT else []

    def _context(self, at: int) -> int:
        """How many tokens before ``at`` equal the tape's last ones (at most ``LOOK_BACK``)."""
        tape, i, j, n = self.tape, at - 1, len(self.tape) - 1, 0
        while n < LOOK_BACK and i >= 0 and tape[i] == tape[j]:
            i, j, n = i - 1, j - 1, n + 1
        return n


class Sequence(Protocol):
    """What the drafting loop needs of an engine's live sequence."""

    def live(self) -> int:
        """Tokens the sequence holds."""
        ...

    def evaluate(self, tokens: list[int]) -> None:
        """Append ``tokens``, keeping the logits of every one of them."""
        ...

    def sample(self, row: int) -> int:
        """The greedy id after the ``row``-th token of the last evaluation (-1: its last)."""
        ...

    def cut(self, keep: int) -> None:
        """Drop every token from position ``keep`` on."""
        ...


def drafted_decode(
    seq: Sequence,
    tape: list[int],
    *,
    budget: int,
    is_end: Callable[[int], bool],
    cancelled: Callable[[], bool],
    stats: DecodeStats,
) -> Iterator[int]:
    """Greedy decode of up to ``budget`` ids after a prefill of ``tape``, with drafts.

    Each step evaluates the last accepted id and a draft in one batch; row ``i``'s
    logits give the id after draft token ``i - 1``, so the reply takes rows while
    they agree with the draft and the first that does not. The ids are exactly
    plain greedy decoding's; the rejected drafts' positions are cut away. When the
    generator is exhausted or closed, the sequence holds every yielded id but the
    last (the ``generate`` contract)."""
    drafter = Drafter(tape)
    width = MAX_DRAFT
    keep = seq.live()
    try:
        if cancelled():
            raise CancelledError("the turn was cancelled during decode")
        token = seq.sample(-1)
        produced = 1
        yield token
        while produced < budget and not is_end(token):
            if cancelled():
                raise CancelledError("the turn was cancelled during decode")
            drafter.extend([token])
            draft = drafter.draft(min(width, budget - produced - 1))
            base = seq.live()
            seq.evaluate([token, *draft])
            stats.batches += 1
            stats.drafted += len(draft)
            for row in range(len(draft) + 1):
                token = seq.sample(row)
                produced += 1
                keep = base + 1 + row  # the batch's ids before this one
                yield token
                if row == len(draft) or token != draft[row] or is_end(token):
                    break
                stats.accepted += 1
            agreed = keep - base - 1
            drafter.extend(draft[:agreed])
            seq.cut(keep)
            # A fully accepted draft asks for a full one next; a miss narrows
            # the next draft to what was agreed, so a wrong guess costs little.
            width = MAX_DRAFT if agreed == len(draft) else max(MIN_DRAFT, agreed + 1)
    finally:
        seq.cut(keep)
