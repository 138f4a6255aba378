"""An incremental Server-Sent-Events parser for OpenAI-compatible streams.

Bytes arrive in arbitrary chunks (a line may be split across reads, ``\\r\\n``
across two), so the parser buffers until a full line is seen and emits one
event per blank line, as the SSE spec says. Only ``data:`` matters to the
OpenAI-style servers we talk to; ``event:``/``id:``/``retry:`` are ignored and
``:`` lines are keep-alive comments. ``[DONE]`` ends the stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from openclaw_daemon.wire.errors import UpstreamError

DONE = "[DONE]"


class SSEParser:
    """Feed bytes with :meth:`feed`; it yields each event's decoded ``data`` payload
    (a JSON object). ``done`` turns true once the ``[DONE]`` sentinel was seen."""

    def __init__(self, provider_id: str, url: str) -> None:
        self.provider_id = provider_id
        self.url = url
        self.done = False
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> Iterator[dict[str, Any]]:
        self._buffer += chunk
        while True:
            # A lone trailing \r may be the first half of \r\n: wait for more.
            cut = _line_end(self._buffer)
            if cut is None:
                return
            end, sep = cut
            line = self._buffer[:end]
            self._buffer = self._buffer[end + sep :]
            event = self.feed_line(line.decode("utf-8", errors="replace"))
            if event is not None:
                yield event

    def feed_line(self, line: str) -> dict[str, Any] | None:
        """One line without its terminator; returns the event a blank line completes."""
        if self.done:
            return None
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: servers send these as keep-alives
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        return None

    def close(self) -> Iterator[dict[str, Any]]:
        """End of the body: a last event without its blank line still counts
        (some servers omit the final empty line)."""
        if self._buffer:
            line, self._buffer = self._buffer.rstrip(b"\r\n"), b""
            event = self.feed_line(line.decode("utf-8", errors="replace"))
            if event is not None:
                yield event
        event = self._dispatch()
        if event is not None:
            yield event

    def _dispatch(self) -> dict[str, Any] | None:
        if not self._data:
            return None
        payload = "\n".join(self._data)
        self._data = []
        if payload.strip() == DONE:
            self.done = True
            return None
        try:
            value = json.loads(payload)
        except ValueError as exc:
            raise UpstreamError(
                f"upstream {self.provider_id!r}: malformed JSON in a stream event from "
                f"{self.url}: {_preview(payload)!r} ({exc})",
                hint="Check that baseUrl points at an OpenAI-compatible server.",
            ) from None
        if not isinstance(value, dict):
            raise UpstreamError(
                f"upstream {self.provider_id!r}: a stream event from {self.url} is not a "
                f"JSON object: {_preview(payload)!r}",
                hint="Check that baseUrl points at an OpenAI-compatible server.",
            )
        return value


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    """Where the first line ends and how long its terminator is (\\n, \\r\\n or \\r)."""
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if cr != -1 and (lf == -1 or cr < lf):
        if cr + 1 == len(buffer):
            return None
        return (cr, 2) if buffer[cr + 1 : cr + 2] == b"\n" else (cr, 1)
    if lf != -1:
        return lf, 1
    return None


def _preview(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
