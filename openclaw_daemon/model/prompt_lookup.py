"""Prompt-lookup drafts: the tokens that followed the latest earlier occurrence
of the sequence's last few tokens (n-gram speculative decoding, no draft model).

Agent replies quote what they read: a file being edited, a tool's arguments, a
summary of a document. When the last three (else two) tokens of the live tape
appeared before, what followed them then is a good guess for what follows now;
the engine verifies the guess in one batch and keeps the longest prefix the
model agrees with, so at temperature 0 the output is exactly plain decoding's.

Pure Python and O(1) per token: a dict per n-gram size maps each n-gram to the
position right after its latest occurrence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from openclaw_daemon.model.base import DecodeStats
from openclaw_daemon.wire.errors import CancelledError

NGRAM_SIZES = (3, 2)  # tried longest first: a longer match is a surer guess
MAX_DRAFT = 8  # tokens verified per batch at most
MIN_DRAFT = 2  # a shorter draft is not worth a batch


class Drafter:
    """The tape so far and its n-gram index; ``extend`` as tokens are accepted."""

    def __init__(self, tape: list[int]) -> None:
        self.tape: list[int] = []
        self._after: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in NGRAM_SIZES}
        # For each size, where the continuation of the tape's own last n-gram
        # starts, found before that n-gram was indexed (else it would find itself).
        self._continuation: dict[int, int | None] = {n: None for n in NGRAM_SIZES}
        self.extend(tape)

    def extend(self, tokens: list[int]) -> None:
        tape = self.tape
        for token in tokens:
            tape.append(token)
            end = len(tape)
            for n, index in self._after.items():
                if end < n:
                    continue
                key = tuple(tape[end - n : end])
                self._continuation[n] = index.get(key)
                index[key] = end

    def draft(self, limit: int = MAX_DRAFT) -> list[int]:
        """Up to ``limit`` guessed next tokens; empty when the tape's ending is new."""
        if limit < MIN_DRAFT:
            return []
        for n in NGRAM_SIZES:
            start = self._continuation[n]
            if start is not None:
                guess = self.tape[start : start + limit]
                if len(guess) >= MIN_DRAFT:
                    return guess
        return []


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
