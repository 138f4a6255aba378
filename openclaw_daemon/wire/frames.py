"""The wire between the CLI and the daemon: framing, the version, the type sets.

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

The message shapes (a TypedDict per ``type``) are in ``messages``, imported
here for annotations only. Imports msgpack and the standard library only: the
CLI pays for this module on every start.

Version 6 spells every request key in camelCase, as frames and results were
already (``agentId``, ``maxTokens``); a version-5 peer is refused at the hello.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import msgpack

from openclaw_daemon.wire.errors import OpenClawError, ProtocolError, VersionMismatchError

if TYPE_CHECKING:
    from openclaw_daemon.wire.messages import ErrorFrame, Hello

PROTOCOL_VERSION = 6
MAX_FRAME_BYTES = 16 * 1024 * 1024
HEADER = struct.Struct(">I")

# The ``type`` tags, one per TypedDict in ``messages`` (a unit test checks).
# Requests, client -> daemon.
REQUEST_TYPES = frozenset(
    {
        "hello",
        "turn",
        "chat",
        "status",
        "stop",
        "cancel",
        "permit",
        "ping",
        "cache",
        "compact",
        "metrics",
        "report",
        "tape",
    }
)
# Stream frames, daemon -> client.
STREAM_TYPES = frozenset({"hello", "token", "phase", "progress", "tool", "notice", "permission"})
TERMINAL_TYPES = frozenset({"done", "error"})
KNOWN_TYPES = REQUEST_TYPES | STREAM_TYPES | TERMINAL_TYPES

# A decoded frame before it is checked against its type: the receiving side
# parses it (``requests``) or reads it as the TypedDict its ``type`` names.
Message = dict[str, Any]


def hello(client: str, **extra: Any) -> Hello:
    """Our hello; ``extra`` is ``pid`` (both sides) and the daemon's clocks."""
    return cast("Hello", {"type": "hello", "version": PROTOCOL_VERSION, "client": client, **extra})


def error_frame(exc: OpenClawError, *, turn_id: str = "") -> ErrorFrame:
    """A typed error; a failed turn's also names the turn, whose trace is stored."""
    frame: ErrorFrame = {
        "type": "error",
        "code": exc.code,
        "message": exc.message,
        "hint": exc.hint,
    }
    if turn_id:
        frame["turnId"] = turn_id
    return frame


def encode(message: Mapping[str, Any]) -> bytes:
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


def check_hello(message: Message | None) -> Hello:
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
    return cast("Hello", message)
