"""Context-window arithmetic: does a prompt leave room to answer, and how a
compaction summary is made from prefixes that fit.

A session whose prompt fills the window to within a few tokens cannot be
answered, and a summary forked off that prompt cannot be generated either
(llama.cpp finds no KV slot for the instruction). So a turn is admitted only
with room for a reply, and an over-full session is summarised in chunks: the
first is a fork of the longest cached prefix that leaves room for the
instruction and the summary; each later chunk is [head][summary so far][the
next messages]. A message too long for any chunk is clipped (``Chunk.clip``).

Pure functions over token counts: no engine, no llama_cpp.
"""

from __future__ import annotations

from dataclasses import dataclass

# A turn needs room for at least this many reply tokens (or its --max-tokens,
# if smaller); with less it is an overflow: compact, then retry.
MIN_REPLY_ROOM = 16
# What a carried summary costs in a later chunk beyond its own tokens: the
# summary's user/assistant markup and the acknowledgement.
SUMMARY_CARRY_MARKUP = 24


def reply_room(max_tokens: int) -> int:
    """The reply room a turn must have to be admitted."""
    return max(1, min(max_tokens, MIN_REPLY_ROOM))


def admits(prompt_tokens: int, n_ctx: int, max_tokens: int) -> bool:
    """True if the prompt leaves the window room for the turn's minimum reply."""
    return prompt_tokens + reply_room(max_tokens) <= n_ctx


@dataclass(frozen=True)
class Chunk:
    """Messages ``[start, end)`` of the tape (0 is the head), summarised in one call.

    The first chunk always starts at 1 and is a fork of the session's own
    prefix; a later one follows the summary of the chunks before it. ``clip``:
    the chunk's first message is too long to fit and is cut to ``budget``
    tokens (the messages after it in the chunk are whole).
    """

    start: int
    end: int
    clip: bool = False
    budget: int = 0  # tokens the chunk's messages may take (after head and carry)


def summary_chunks(prefix_tokens: list[int], n_ctx: int, reserve: int, carry: int) -> list[Chunk]:
    """The chunks that summarise every message after the head.

    ``prefix_tokens[i]``: tokens of the rendered prefix of messages ``[0, i]``
    (so ``prefix_tokens[0]`` is the head). ``reserve``: the instruction plus
    the summary's tokens. ``carry``: what the summary so far costs a later
    chunk. Raises ValueError if not even the head leaves room.
    """
    limit = n_ctx - reserve
    head = prefix_tokens[0]
    count = len(prefix_tokens)
    if count < 2:
        return []
    if head >= limit or head + carry >= limit:
        raise ValueError(
            f"the head is {head} tokens: no room for a summary in a {n_ctx}-token window"
        )
    # The first chunk forks the session's own cached prefix: as far as it fits.
    end = 1
    while end < count and prefix_tokens[end] <= limit:
        end += 1
    chunks: list[Chunk] = []
    if end > 1:
        chunks.append(Chunk(1, end))
        start = end
    else:  # the first message alone does not fit: clip it
        chunks.append(_clipped(prefix_tokens, 1, limit - head))
        start = chunks[-1].end
    budget = limit - head - carry
    while start < count:
        if prefix_tokens[start] - prefix_tokens[start - 1] > budget:
            chunks.append(_clipped(prefix_tokens, start, budget))
        else:
            end, used = start, 0
            while end < count and used + _size(prefix_tokens, end) <= budget:
                used += _size(prefix_tokens, end)
                end += 1
            chunks.append(Chunk(start, end))
        start = chunks[-1].end
    return chunks


def _size(prefix_tokens: list[int], index: int) -> int:
    return prefix_tokens[index] - prefix_tokens[index - 1]


def _clipped(prefix_tokens: list[int], start: int, budget: int) -> Chunk:
    """A chunk that clips message ``start`` and takes the short messages after it
    (up to a quarter of the budget) whole: each chunk costs a summary call, and
    a reply to a long message is often a few tokens."""
    end, taken = start + 1, 0
    while end < len(prefix_tokens) and taken + _size(prefix_tokens, end) <= budget // 4:
        taken += _size(prefix_tokens, end)
        end += 1
    return Chunk(start, end, clip=True, budget=budget - taken)
