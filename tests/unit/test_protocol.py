"""Unit tests of the wire framing: round trips and every way a frame can be bad."""

from __future__ import annotations

import io
import struct

import msgpack
import pytest

from openclaw_daemon.wire import frames as protocol
from openclaw_daemon.wire.errors import ProtocolError, VersionMismatchError


def reader(data: bytes):  # type: ignore[no-untyped-def]
    return io.BytesIO(data).read


def test_round_trip_preserves_message() -> None:
    message = {"type": "token", "text": "héllo ✓"}
    frame = protocol.encode(message)
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert protocol.read_frame(reader(frame)) == message


def test_stream_of_frames_reads_in_order_then_eof() -> None:
    frames = [{"type": "token", "text": str(i)} for i in range(3)] + [{"type": "done"}]
    read = reader(b"".join(protocol.encode(f) for f in frames))
    assert [protocol.read_frame(read) for _ in range(4)] == frames
    assert protocol.read_frame(read) is None


def test_oversized_header_is_refused_before_reading_body() -> None:
    header = struct.pack(">I", protocol.MAX_FRAME_BYTES + 1)
    with pytest.raises(ProtocolError, match="exceeds"):
        protocol.read_frame(reader(header))


def test_encode_refuses_oversized_message() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        protocol.encode({"type": "token", "text": "x" * (protocol.MAX_FRAME_BYTES + 1)})


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"\xc1", "malformed"),  # 0xc1 is never valid msgpack
        (msgpack.packb([1, 2, 3]), "expected a map"),
        (msgpack.packb({"type": "launch_missiles"}), "unknown message type"),
        (msgpack.packb({"text": "no type"}), "unknown message type"),
    ],
)
def test_malformed_bodies_raise_protocol_error(body: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        protocol.read_frame(reader(struct.pack(">I", len(body)) + body))


def test_truncated_header_and_body_are_errors() -> None:
    frame = protocol.encode({"type": "ping"})
    with pytest.raises(ProtocolError, match="header"):
        protocol.read_frame(reader(frame[:2]))
    with pytest.raises(ProtocolError, match="body"):
        protocol.read_frame(reader(frame[:-1]))


def test_message_without_type_cannot_be_encoded() -> None:
    with pytest.raises(ProtocolError):
        protocol.encode({"text": "x"})


def test_hello_version_check() -> None:
    assert protocol.check_hello(protocol.hello("test"))["client"] == "test"
    with pytest.raises(VersionMismatchError, match="daemon restart"):
        protocol.check_hello({"type": "hello", "version": protocol.PROTOCOL_VERSION + 1})
    with pytest.raises(ProtocolError, match="hello"):
        protocol.check_hello({"type": "turn"})
