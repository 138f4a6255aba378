"""Turn generated token bytes into text that is safe to stream.

Holds back an incomplete UTF-8 sequence and any tail that could still grow
into a stop string, so what the CLI prints never has to be taken back.
"""

from __future__ import annotations

import codecs


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
