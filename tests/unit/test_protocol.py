"""Unit tests of the wire: framing round trips and every way a frame can be bad,
the typed message constructors, the version, and the requests' camelCase keys
(the CLI's turn request parses back to its options; protocol 5's snake_case
keys are refused by name)."""

from __future__ import annotations

import io
import struct
from typing import Any

import msgpack
import pytest

from openclaw_daemon.wire import frames as protocol
from openclaw_daemon.wire import messages, requests
from openclaw_daemon.wire.errors import BadRequestError, ProtocolError, VersionMismatchError


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


# -- the typed messages ---------------------------------------------------------------


def test_constructed_frames_round_trip_as_their_typed_shape() -> None:
    span = {"name": "model.decode", "scope": "model", "startMs": 1.5, "durationMs": 2.0}
    phase = messages.phase({**span, "tokens": 3})
    assert protocol.read_frame(reader(protocol.encode(phase))) == {
        "type": "phase",
        **span,
        "tokens": 3,
    }
    done = messages.done({"pong": True})
    assert protocol.read_frame(reader(protocol.encode(done))) == {
        "type": "done",
        "result": {"pong": True},
    }


def test_an_error_frame_names_the_turn_only_when_a_turn_failed() -> None:
    error = BadRequestError("no", hint="fix it")
    assert protocol.error_frame(error) == {
        "type": "error",
        "code": "bad_request",
        "message": "no",
        "hint": "fix it",
    }
    assert protocol.error_frame(error, turn_id="abc")["turnId"] == "abc"


def test_a_version_5_hello_is_a_version_mismatch() -> None:
    assert protocol.PROTOCOL_VERSION == 6
    for version in (5, 6.0, True, "6"):
        with pytest.raises(VersionMismatchError, match="peer speaks"):
            protocol.check_hello({"type": "hello", "version": version, "client": "old"})


# -- requests: camelCase on the wire, snake_case options --------------------------------


def test_the_cli_s_turn_request_parses_to_the_options_it_was_built_from() -> None:
    from openclaw_cli.agent_args import parse_agent_args, turn_request

    argv = ["-m", "hi", "--session-id", "work", "--agent", "ops", "--max-tokens", "7"]
    argv += ["--timeout", "30", "--tool-choice", "exec", "--allow", "exec", "--max-steps", "3"]
    argv += ["--exec-timeout", "4", "--stop", "END", "--seed", "9", "--temperature", "0.5"]
    request = turn_request(parse_agent_args(argv))
    assert all(key == key[0].lower() + key[1:] and "_" not in key for key in request)
    options = requests.parse_turn(request)
    assert options.message == "hi"
    assert (options.agent_id, options.session_id) == ("ops", "work")
    assert (options.max_tokens, options.max_steps, options.seed) == (7, 3, 9)
    assert (options.timeout_s, options.exec_timeout, options.temperature) == (30.0, 4.0, 0.5)
    assert (options.tool_choice, options.allow, options.stop) == ("exec", ["exec"], ["END"])
    assert options.request_id == request["requestId"]


@pytest.mark.parametrize(("switch", "sent"), [("auto", None), ("on", True), ("off", False)])
def test_prompt_lookup_auto_is_left_to_the_daemon(switch: str, sent: bool | None) -> None:
    from openclaw_cli.agent_args import parse_agent_args, turn_request

    default = turn_request(parse_agent_args(["-m", "hi"]))
    assert default["promptLookup"] is None  # auto unless asked
    request = turn_request(parse_agent_args(["-m", "hi", "--prompt-lookup", switch]))
    assert request["promptLookup"] is sent
    assert requests.parse_turn(request).prompt_lookup is sent
    assert requests.parse_turn({"type": "turn", "message": "hi"}).prompt_lookup is None


def test_a_prompt_lookup_that_is_not_a_boolean_is_refused() -> None:
    with pytest.raises(BadRequestError, match="promptLookup"):
        requests.parse_turn({"type": "turn", "message": "hi", "promptLookup": "yes"})


@pytest.mark.parametrize(
    ("old", "new", "value"),
    [
        ("agent_id", "agentId", "main"),
        ("session_id", "sessionId", "s"),
        ("max_tokens", "maxTokens", 5),
        ("timeout_s", "timeoutS", 3.0),
        ("tool_choice", "toolChoice", "none"),
        ("max_steps", "maxSteps", 2),
        ("exec_timeout", "execTimeout", 2.0),
        ("request_id", "requestId", "r"),
    ],
)
def test_a_version_5_key_is_refused_naming_its_new_spelling(old: str, new: str, value: Any) -> None:
    with pytest.raises(BadRequestError) as caught:
        requests.parse_turn({"type": "turn", "message": "hi", old: value})
    assert (
        caught.value.message == f"bad request field {old!r}: protocol version 6 spells it {new!r}"
    )
    assert "camelCase" in caught.value.hint


def test_compact_and_tape_take_camel_case_ids_and_refuse_the_old_ones() -> None:
    compact = requests.parse_compact({"type": "compact", "agentId": "Ops", "sessionId": "work"})
    assert (compact.agent_id, compact.session_id, compact.instructions) == ("ops", "work", None)
    tape = requests.parse_session({"type": "tape", "agentId": "main", "sessionId": "work"})
    assert (tape.agent_id, tape.session_id) == ("main", "work")
    with pytest.raises(BadRequestError, match="'session_id'"):
        requests.parse_session({"type": "tape", "agentId": "main", "session_id": "work"})


def test_a_bad_field_is_named_as_it_is_spelled_on_the_wire() -> None:
    with pytest.raises(BadRequestError, match="'maxTokens'"):
        requests.parse_turn({"type": "turn", "message": "hi", "maxTokens": 1.5})
    with pytest.raises(BadRequestError, match="agentId"):
        requests.parse_turn({"type": "turn", "message": "hi", "agentId": "../etc"})


def test_the_standalone_fuzzer_speaks_this_version_and_knows_the_old_keys() -> None:
    from tests import wire_fuzz

    assert wire_fuzz.PROTOCOL_VERSION == protocol.PROTOCOL_VERSION
    assert set(wire_fuzz.V5_KEYS) == set(requests._V5_KEYS)
    for old, value in wire_fuzz.V5_KEYS.items():
        # Each is a good value under its new name: only the spelling is wrong.
        good = {"type": "turn", "message": "hi", requests._V5_KEYS[old]: value}
        requests.parse_turn(good)
