"""Turn generated token bytes into text that is safe to stream.

Holds back an incomplete UTF-8 sequence and any tail that could still grow
into a stop string, so what the CLI prints never has to be taken back.
``control_ids`` says which generated ids are decoded with their control-token
spelling (a tool-call format's tags), since the rest are decoded without.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from typing import Protocol


class Tokenizer(Protocol):
    def tokenize(self, text: str, *, add_bos: bool, special: bool = False) -> list[int]: ...

    def detokenize(self, tokens: list[int], *, special: bool = False) -> bytes: ...


def control_tokens(tokenizer: Tokenizer, tags: Iterable[str]) -> dict[str, int]:
    """Those ``tags`` that are one token each in this vocabulary, with their ids.

    Generated text is decoded without control tokens (an end-of-turn id must
    not print), but a tool-call format's tags may be control tokens, and then
    they would vanish before the parser sees them. A tag that is several
    tokens here is plain text already, and needs nothing.
    """
    found: dict[str, int] = {}
    for tag in tags:
        tokens = tokenizer.tokenize(tag, add_bos=False, special=True)
        if len(tokens) == 1 and tokenizer.detokenize(tokens, special=True) == tag.encode():
            found[tag] = tokens[0]
    return found


def control_ids(tokenizer: Tokenizer, tags: Iterable[str]) -> frozenset[int]:
    """The ids of ``control_tokens``: what the decoder spells."""
    return frozenset(control_tokens(tokenizer, tags).values())


def spell(tokenizer: Tokenizer, tokens: list[int], spelled: frozenset[int]) -> bytes:
    """The bytes of ``tokens``, the ``spelled`` control ids as their tags."""
    if not spelled.intersection(tokens):
        return tokenizer.detokenize(tokens)
    return b"".join(tokenizer.detokenize([t], special=t in spelled) for t in tokens)


class TextStream:
    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self._emitted = 0
        self.stopped = False

    def push(self, piece: bytes) -> str:
        """Add a token's bytes; return the text that may be shown now."""
        if self.stopped:
            return ""
        previous = len(self.text)
        self.text += self._decoder.decode(piece)
        self._apply_stops(previous)
        return self._release(final=self.stopped)

    def finish(self) -> str:
        """Flush what is held back at the end of generation."""
        if not self.stopped:
            previous = len(self.text)
            self.text += self._decoder.decode(b"", final=True)
            self._apply_stops(previous)
        return self._release(final=True)

    def _apply_stops(self, previous: int) -> None:
        for stop in self.stops:
            index = self.text.find(stop, max(0, previous - len(stop) + 1))
            if index >= 0:
                self.text = self.text[:index]
                self.stopped = True

    def _release(self, *, final: bool) -> str:
        end = len(self.text) if final else len(self.text) - self._held_back()
        end = max(end, self._emitted)
        out = self.text[self._emitted : end]
        self._emitted = end
        return out

    def _held_back(self) -> int:
        """Length of the longest tail of ``text`` that begins some stop string."""
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if stop.startswith(self.text[-size:]):
                    longest = size
                    break
        return longest
