"""The wire contract between the CLI and the daemon: the one place it is defined.

Framing: a 4-byte big-endian length, then a msgpack map of at most
``MAX_FRAME_BYTES``. Every message is a map with a string ``type``.

A connection opens with ``hello`` (client) -> ``hello`` (daemon); a version
mismatch gets an ``error`` frame with code ``version_mismatch``. Then the
client sends one request and reads frames until exactly one terminal frame
(``done`` or ``error``). Intermediate frames are ``token``, ``phase``,
``progress``, ``tool`` and ``notice``. A client may send ``cancel`` (or just
close the socket) to stop a turn; the daemon then still ends the stream.
After a turn's ``done``, the client may send one ``report`` (its own spans,
wall time and time to first token) on the same connection; the daemon stores
the turn's trace record and answers ``done`` (or ``error`` for a bad report).
A turn that fails ends with an ``error`` frame carrying ``turnId``: its trace
record (daemon side) is stored by then.

Imports msgpack and the standard library only: the CLI pays for this module on
every start.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Literal, TypedDict

import msgpack

from openclaw_daemon.wire.errors import OpenClawError, ProtocolError, VersionMismatchError

PROTOCOL_VERSION = 5
MAX_FRAME_BYTES = 16 * 1024 * 1024
HEADER = struct.Struct(">I")

# Requests, client -> daemon.
REQUEST_TYPES = frozenset(
    {
        "hello",
        "turn",
        "status",
        "stop",
        "cancel",
        "ping",
        "cache",
        "compact",
        "metrics",
        "report",
        "tape",
    }
)
# Stream frames, daemon -> client.
STREAM_TYPES = frozenset({"hello", "token", "phase", "progress", "tool", "notice"})
TERMINAL_TYPES = frozenset({"done", "error"})
KNOWN_TYPES = REQUEST_TYPES | STREAM_TYPES | TERMINAL_TYPES

Message = dict[str, Any]


class Hello(TypedDict):
    """First frame both ways. ``version`` must equal PROTOCOL_VERSION."""

    type: Literal["hello"]
    version: int
    client: str  # daemon side: "openclawd"; fields below only from the daemon


class TurnRequest(TypedDict, total=False):
    """One agent turn. ``message`` is the user's text."""

    type: Literal["turn"]
    message: str
    agent_id: str
    session_id: str | None
    max_tokens: int
    temperature: float
    seed: int | None
    stop: list[str]
    cwd: str
    timeout_s: float | None
    system: str | None  # replaces the default system prompt (the cached head)
    tool_choice: str  # auto | none | required | a tool name
    max_steps: int  # most model calls in the turn
    allow: list[str]  # tools that change things the user permits: write, edit, exec
    env: dict[str, str]  # the CLI caller's environment, for exec
    exec_timeout: float | None  # a cap on every exec command of the turn, seconds
    # Idempotency: a committed turn of the session with this id is answered
    # from the transcript (``result.replayed``), not run again.
    request_id: str


class ReportRequest(TypedDict, total=False):
    """After a turn's ``done``: the CLI's spans (``cli.boot``, ``cli.connect`` or
    ``daemon.spawn``, ``cli.render``) in ms from its process start, its wall time,
    its time to first token, and where the daemon's trace origin falls on that
    timeline. The daemon stores the merged record (docs/tracing.md)."""

    type: Literal["report"]
    turnId: str
    spans: list[dict[str, Any]]
    wallMs: float
    ttftMs: float | None
    daemonOffsetMs: float


class MetricsRequest(TypedDict):
    """The daemon's counters, histograms and gauges; ``done`` carries
    ``{"text": ...}`` in Prometheus text exposition format 0.0.4."""

    type: Literal["metrics"]


class CacheRequest(TypedDict):
    """``action`` "stats" (counters, tiers, budgets) or "clear" (drop L2 and L3)."""

    type: Literal["cache"]
    action: Literal["stats", "clear"]


class CompactRequest(TypedDict, total=False):
    """Compact a session now: its older turns become a summary (generated on a
    fork of its cached prompt), and the new layout is prefilled ahead."""

    type: Literal["compact"]
    agent_id: str
    session_id: str
    instructions: str | None  # extra guidance for the summary


class TapeRequest(TypedDict, total=False):
    """Check a session: does the token tape its next turn would extend spell
    exactly its transcript's render? (``tape_check.compare``'s fields.)"""

    type: Literal["tape"]
    agent_id: str
    session_id: str


class TokenFrame(TypedDict):
    """A piece of the reply's text, streamed as it is decoded."""

    type: Literal["token"]
    text: str


class ProgressFrame(TypedDict):
    """Prefill progress: ``done`` of ``total`` prompt tokens, rate tok/s, eta s."""

    type: Literal["progress"]
    phase: str
    done: int
    total: int
    rate: float
    eta_s: float


class PhaseFrame(TypedDict):
    """A finished trace span: name, start offset and duration in ms."""

    type: Literal["phase"]
    name: str
    start_ms: float
    duration_ms: float


class ToolFrame(TypedDict, total=False):
    """A tool call started (``phase`` "start": name, arguments) or ended ("end":
    isError, durationMs, cached, and a short preview of the result)."""

    type: Literal["tool"]
    phase: Literal["start", "end"]
    id: str
    name: str
    arguments: dict[str, Any]
    isError: bool
    durationMs: float
    cached: bool
    preview: str


class NoticeFrame(TypedDict):
    type: Literal["notice"]
    text: str


class DoneFrame(TypedDict, total=False):
    """Terminal success frame. For a turn: the reply, usage and trace."""

    type: Literal["done"]
    result: dict[str, Any]


class ErrorFrame(TypedDict):
    """Terminal failure frame: an ``OpenClawError`` code plus text for people."""

    type: Literal["error"]
    code: str
    message: str
    hint: str


def hello(client: str, **extra: Any) -> Message:
    return {"type": "hello", "version": PROTOCOL_VERSION, "client": client, **extra}


def error_frame(exc: OpenClawError, *, turn_id: str = "") -> Message:
    """A typed error; a failed turn's also names the turn, whose trace is stored."""
    frame: Message = {"type": "error", "code": exc.code, "message": exc.message, "hint": exc.hint}
    if turn_id:
        frame["turnId"] = turn_id
    return frame


def encode(message: Message) -> bytes:
    """Serialise one message to a length-prefixed frame."""
    if not isinstance(message.get("type"), str):
        raise ProtocolError("a message needs a string 'type'")
    body = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> Message:
    """Parse and validate one frame body (without its header)."""
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"malformed frame: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("malformed frame: expected a map")
    kind = message.get("type")
    # Checked as a string first: a list or map here is unhashable, and the
    # peer must still get an error frame, not a silent close.
    if not isinstance(kind, str):
        shown = "missing" if kind is None else f"a {type(kind).__name__}"
        raise ProtocolError(f"unknown message type: 'type' must be a string, not {shown}")
    if kind not in KNOWN_TYPES:
        raise ProtocolError(f"unknown message type {kind[:40]!r}")
    return message


def frame_length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES} limit")
    return int(length)


def read_frame(read_exactly: Callable[[int], bytes]) -> Message | None:
    """Read one frame with ``read_exactly(n)``; None on a clean EOF between frames.

    ``read_exactly`` returns fewer bytes than asked only at EOF.
    """
    header = read_exactly(HEADER.size)
    if not header:
        return None
    if len(header) < HEADER.size:
        raise ProtocolError("connection closed inside a frame header")
    length = frame_length(header)
    body = read_exactly(length)
    if len(body) < length:
        raise ProtocolError("connection closed inside a frame body")
    return decode_body(body)


def check_hello(message: Message | None) -> Message:
    """Validate the peer's hello; raise VersionMismatchError if versions differ."""
    if message is None or message.get("type") != "hello":
        raise ProtocolError("expected a hello frame first")
    version = message.get("version")
    # Exactly the integer: 5.0 == 5 (and True == 1) in Python, but neither is
    # what we speak.
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise VersionMismatchError(
            f"protocol version mismatch: peer speaks {repr(version)[:40]}, "
            f"we speak {PROTOCOL_VERSION}",
            hint="Restart the daemon so both sides run the same version: openclaw daemon restart",
        )
    return message
