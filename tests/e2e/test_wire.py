"""The socket boundary: every field checked, connections bounded, fuzzing answered.

Fast tests drive ``requests``/``protocol`` and a ``UnixServer`` with a stub
handler; end-to-end tests fuzz the real daemon and hold 1,100 idle
connections against it, then run a normal turn through the real CLI.
"""

from __future__ import annotations

import contextlib
import math
import resource
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from openclaw_daemon.serve.transport import Connection, UnixServer
from openclaw_daemon.wire import frames as protocol
from openclaw_daemon.wire import requests
from openclaw_daemon.wire.client import DaemonClient
from openclaw_daemon.wire.errors import (
    BadRequestError,
    DaemonBusyError,
    ProtocolError,
    VersionMismatchError,
)
from tests import wire_fuzz
from tests.conftest import Cli

# -- the request parser ------------------------------------------------------------

GOOD_TURN = {
    "type": "turn",
    "message": "hi",
    "agentId": "main",
    "sessionId": None,
    "maxTokens": 8,
    "temperature": 0.0,
    "seed": None,
    "stop": ["\n\n"],
    "cwd": "/tmp",
    "timeoutS": None,
    "system": None,
    "toolChoice": "auto",
    "maxSteps": 6,
    "allow": ["write"],
    "env": {"PATH": "/usr/bin"},
    "execTimeout": None,
}


def test_a_good_turn_parses_to_typed_options() -> None:
    options = requests.parse_turn(GOOD_TURN)
    assert options.max_tokens == 8 and options.stop == ["\n\n"] and options.agent_id == "main"
    assert options.env == {"PATH": "/usr/bin"} and options.allow == ["write"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("message", ["hi"]),
        ("message", "a\x00b"),
        ("message", "x" * (requests.MAX_MESSAGE_CHARS + 1)),
        ("agentId", 7),
        ("agentId", "../../etc"),
        ("sessionId", ["s"]),
        ("sessionId", "s\x00"),
        ("sessionId", ""),
        ("maxTokens", 1.5),
        ("maxTokens", True),
        ("maxTokens", -1),
        ("maxTokens", 10**30),
        ("temperature", math.nan),
        ("temperature", math.inf),
        ("temperature", "abc"),
        ("temperature", 10**400),
        ("seed", 2**40),
        ("seed", math.nan),
        ("stop", "abc"),
        ("stop", [1]),
        ("stop", [""]),
        ("stop", ["s"] * 100),
        ("cwd", "/tmp\x00x"),
        ("cwd", 5),
        ("timeoutS", math.nan),
        ("timeoutS", 0),
        ("system", {"a": 1}),
        ("toolChoice", ["auto"]),
        ("maxSteps", 0),
        ("allow", 3),
        ("allow", [["write"]]),
        ("env", ["PATH"]),
        ("env", {"A": 1}),
        ("env", {"A": "b\x00"}),
        ("execTimeout", -1.0),
    ],
)
def test_a_bad_turn_field_is_refused_naming_it(field: str, value: Any) -> None:
    with pytest.raises(BadRequestError) as caught:
        requests.parse_turn({**GOOD_TURN, field: value})
    assert field in caught.value.message


@pytest.mark.parametrize(
    "message",
    [
        {"type": "compact", "agentId": ["x"], "sessionId": "s"},
        {"type": "compact", "agentId": "main", "sessionId": "a/../b"},
        {"type": "compact", "agentId": "main", "sessionId": "s", "instructions": 5},
        {"type": "cache", "action": ["stats"]},
        {"type": "cache"},
    ],
)
def test_bad_compact_and_cache_fields_are_refused(message: dict[str, Any]) -> None:
    parse = requests.parse_compact if message["type"] == "compact" else requests.parse_cache
    with pytest.raises(BadRequestError):
        parse(message)


@pytest.mark.parametrize("kind", [["hello"], {"hello": 1}, 5, None])
def test_a_type_that_is_not_a_string_is_a_protocol_error(kind: Any) -> None:
    body = msgpack.packb({"type": kind, "version": 5})
    with pytest.raises(ProtocolError):
        protocol.decode_body(body)


@pytest.mark.parametrize("version", [5.0, True, "5", [5], None, 2**70])
def test_hello_needs_exactly_the_integer_version(version: Any) -> None:
    with pytest.raises(VersionMismatchError):
        protocol.check_hello({"type": "hello", "version": version})


# -- the transport, with a stub handler --------------------------------------------


@pytest.fixture
def stub_server() -> Iterator[tuple[UnixServer, threading.Event]]:
    """A UnixServer (cap 4, hello deadline 1 s) whose handler reads a hello and
    then holds the connection until released."""
    release = threading.Event()
    directory = Path(tempfile.mkdtemp(prefix="ocw-", dir="/tmp"))

    def handler(connection: Connection) -> None:
        try:
            protocol.check_hello(connection.receive_opening("hello"))
        except ProtocolError as exc:
            connection.send(protocol.error_frame(exc))
            return
        connection.send(protocol.hello("stub"))
        release.wait(30)

    server = UnixServer(directory / "s.sock", handler, max_connections=4, hello_timeout=1.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, release
    release.set()
    server.shutdown()
    thread.join(5)
    server.close()
    shutil.rmtree(directory, ignore_errors=True)


def _connect(path: Path) -> socket.socket:
    for _ in range(200):  # a full accept queue fails at once (EAGAIN): retry, bounded
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            sock.connect(str(path))
            return sock
        except BlockingIOError:
            sock.close()
            time.sleep(0.02)
    raise AssertionError(f"could not connect to {path}")


def _read_frame(sock: socket.socket) -> dict[str, Any] | None:
    def read_exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            try:
                chunk = sock.recv(size - len(data))
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data

    return protocol.read_frame(read_exactly)


def test_over_the_cap_a_connection_gets_busy_and_the_server_keeps_serving(
    stub_server: tuple[UnixServer, threading.Event],
) -> None:
    server, release = stub_server
    held = []
    for _ in range(4):
        sock = _connect(server.path)
        sock.sendall(protocol.encode(protocol.hello("test")))
        assert (_read_frame(sock) or {}).get("type") == "hello"
        held.append(sock)
    extra = _connect(server.path)
    with contextlib.suppress(OSError):  # it may be answered and closed before our hello
        extra.sendall(protocol.encode(protocol.hello("test")))
    frame = _read_frame(extra)
    assert frame is not None and frame["type"] == "error" and frame["code"] == "busy"
    release.set()
    for sock in held:
        sock.close()
    # Slots come back: a new connection is served again.
    for _ in range(100):
        if server.active == 0:
            break
        time.sleep(0.05)
    again = _connect(server.path)
    again.sendall(protocol.encode(protocol.hello("test")))
    assert (_read_frame(again) or {}).get("type") == "hello"


def test_the_client_waits_out_busy_then_reports_it(
    stub_server: tuple[UnixServer, threading.Event],
) -> None:
    server, release = stub_server
    held = [DaemonClient(server.path) for _ in range(4)]
    for client in held:
        client.connect()
    with pytest.raises(DaemonBusyError):
        DaemonClient(server.path, busy_wait=0.0).connect()
    threading.Timer(0.5, release.set).start()
    patient = DaemonClient(server.path, busy_wait=20.0)
    patient.connect()  # a slot frees while it retries
    assert patient.daemon_info["client"] == "stub"
    for client in [*held, patient]:
        client.close()


def test_a_connection_that_never_says_hello_is_closed_at_the_deadline(
    stub_server: tuple[UnixServer, threading.Event],
) -> None:
    server, _ = stub_server
    silent = _connect(server.path)
    frame = _read_frame(silent)  # the 1 s deadline answers; the 10 s timeout does not
    assert frame is not None and frame["type"] == "error" and "within" in frame["message"]
    trickle = _connect(server.path)
    trickle.sendall(struct.pack(">I", 50) + b"\x81")  # a frame that never finishes
    frame = _read_frame(trickle)
    assert frame is not None and frame["type"] == "error"


# -- end to end, on the real daemon --------------------------------------------------


def _daemon_paths(cli: Cli) -> tuple[Path, Path]:
    status = cli.status()
    return Path(status["socket"]), Path(status["logFile"])


def test_fuzzing_the_socket_answers_everything_and_leaves_no_trace(warm_cli: Cli) -> None:
    socket_path, log_path = _daemon_paths(warm_cli)
    figures = wire_fuzz.run(socket_path, warm_cli.state_dir, 1000, 13, log_path)
    assert figures["inputs"] == 1000
    assert figures["unanswered"] == 0, figures
    assert figures["done"] == 0, figures  # every input was invalid: none may run
    assert figures["tracebacks_in_log"] == 0, log_path.read_text()[-4000:]
    assert figures["files_outside_state"] == 0, figures
    assert figures["error_frames"] + figures["deliberate_closes"] == 1000
    assert figures["error_frames"] > 900, figures  # almost all get a reason, not a close
    envelope = warm_cli.turn("Say hi.", "--max-tokens", "4")
    assert envelope["payloads"][0]["text"]


@pytest.mark.parametrize(
    ("flag_field", "value", "expect"),
    [
        ("version", 5.0, "version_mismatch"),
        ("version", 5, "version_mismatch"),  # a protocol-5 client, which spoke snake_case
        ("max_tokens", 2, "bad_request"),  # protocol 5's spelling, refused by name
        ("type", ["turn"], "protocol"),
        ("maxTokens", "abc", "bad_request"),
        ("temperature", math.nan, "bad_request"),
        ("cwd", "/tmp\x00", "bad_request"),
    ],
)
def test_the_daemon_answers_a_bad_field_with_its_error_code(
    warm_cli: Cli, flag_field: str, value: Any, expect: str
) -> None:
    socket_path, _ = _daemon_paths(warm_cli)
    sock = _connect(socket_path)
    with contextlib.closing(sock):
        hello: dict[str, Any] = {
            "type": "hello",
            "version": protocol.PROTOCOL_VERSION,
            "client": "t",
        }
        if flag_field == "version":
            hello["version"] = value
        sock.sendall(_pack(hello))
        frame = _read_frame(sock)
        if flag_field != "version":
            assert frame is not None and frame["type"] == "hello"
            request = {**GOOD_TURN, "maxTokens": 2}
            request[flag_field] = value
            sock.sendall(_pack(request))
            frame = _read_frame(sock)
        assert frame is not None and frame["type"] == "error", frame
        assert frame["code"] == expect, frame
        if flag_field not in ("version", "type"):
            assert flag_field in frame["message"]


def _pack(message: dict[str, Any]) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def test_1100_idle_connections_get_busy_and_a_turn_still_works(warm_cli: Cli) -> None:
    socket_path, log_path = _daemon_paths(warm_cli)
    want = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want + 400), hard))
    offset = log_path.stat().st_size
    idle: list[socket.socket] = []
    try:
        for _ in range(want):
            idle.append(_connect(socket_path))
        # While they are all held open, a normal turn through the CLI succeeds
        # (it retries "busy" until an idle one's hello deadline frees a slot).
        envelope = warm_cli.turn("Say hi.", "--max-tokens", "4")
        assert envelope["payloads"][0]["text"]
        busy = timed_out = 0
        for sock in idle:
            sock.settimeout(20)
            frame = _read_frame(sock)
            assert frame is not None and frame["type"] == "error", frame
            if frame["code"] == "busy":
                busy += 1
            else:
                timed_out += 1
        assert busy >= want - 64, (busy, timed_out)
        assert timed_out >= 1  # the ones within the cap waited for the hello deadline
    finally:
        for sock in idle:
            sock.close()
    assert b"Traceback" not in log_path.read_bytes()[offset:]
    # And it keeps serving afterwards.
    assert warm_cli.turn("Say hi.", "--max-tokens", "4")["payloads"][0]["text"]
