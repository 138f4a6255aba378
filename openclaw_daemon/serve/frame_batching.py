"""A running turn's stream frames, with its tokens gathered into fewer frames.

A frame per token wakes this relay thread, the socket and the CLI process some 50
times a second, on the same cores llama.cpp's threads decode on; each wake-up
takes a little of the model's time. So the first token goes out at once (the
time to first token is not delayed), and after a token frame the next one waits
until ``FRAME_INTERVAL_S`` has passed, carrying every token decoded meanwhile.
Other frames keep their order relative to the tokens; they are never merged.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Mapping
from typing import Any

FRAME_INTERVAL_S = 0.05  # at most 20 token frames a second: smooth to read, few wake-ups

Frame = Mapping[str, Any]


class FrameBatcher:
    """Reads a turn's event queue; ``next`` returns the frames to send now."""

    def __init__(self, events: queue.Queue[Frame], ended: object, interval: float) -> None:
        self.events = events
        self.ended = ended  # the sentinel that says the job ended (not a frame)
        self.interval = interval
        self._token_sent_at: float | None = None

    def next(self, timeout: float) -> list[Frame]:
        """Frames for the socket, after waiting up to ``timeout`` for the first."""
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            return []
        if event is self.ended:
            return []
        if event.get("type") != "token":
            return [event]
        if self._token_sent_at is not None:
            wait = self._token_sent_at + self.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the decode goes on; its tokens queue up meanwhile
        frames = _merged([event, *self._queued()])
        self._token_sent_at = time.monotonic()
        return frames

    def _queued(self) -> list[Frame]:
        out: list[Frame] = []
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return out
            if event is not self.ended:
                out.append(event)


def _merged(frames: list[Frame]) -> list[Frame]:
    """Consecutive token frames as one, in order with the others."""
    out: list[Frame] = []
    for frame in frames:
        if frame.get("type") == "token" and out and out[-1].get("type") == "token":
            out[-1] = {"type": "token", "text": out[-1]["text"] + frame["text"]}
        else:
            out.append(frame)
    return out
