"""A reusable fuzzer for the daemon socket: malformed frames and field values.

``run`` opens one connection per input and sends something wrong: a truncated,
oversized or non-msgpack frame, a message with a missing or mistyped
``type``, a bad protocol version, or a valid hello followed by a request with
exactly one bad field (wrong type, NaN or infinity, negative or enormous
number, NUL byte, path-like id, huge string), or a good turn that spells one
key the version-5 way (``max_tokens``). Every input is invalid, so none
of them may start the model: a turn with a bad field must be refused before
its prefill. Each input is classified by how the daemon answered it: an
``error`` frame, a deliberate close (EOF without an error), or nothing within
the timeout (``unanswered``, a bug). Afterwards the daemon log is searched for
tracebacks and the filesystem for files the path-like ids would have made.

Used by tests/e2e/test_wire.py (about 1,000 inputs) and scripts/faults (10,000).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import socket
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

PROTOCOL_VERSION = 6  # openclaw_daemon.wire.frames (this file stands alone)
MAX_FRAME_BYTES = 16 * 1024 * 1024
# Longer than the daemon's hello deadline (5 s): an input it answers only at
# that deadline still counts as answered.
ANSWER_TIMEOUT_S = 15.0

Frame = bytes
# Protocol 5's request keys, each with a value that would be good under its
# version-6 name: the daemon must refuse them, not ignore them.
V5_KEYS: dict[str, Any] = {
    "agent_id": "fuzz",
    "session_id": "fuzz-v5",
    "max_tokens": 1,
    "timeout_s": 30.0,
    "tool_choice": "none",
    "max_steps": 1,
    "exec_timeout": 5.0,
    "request_id": "fuzz-v5",
}


def _frame(body: bytes) -> Frame:
    return struct.pack(">I", len(body)) + body


def _pack(message: Any) -> Frame:
    return _frame(msgpack.packb(message, use_bin_type=True))


def _hello() -> Frame:
    return _pack({"type": "hello", "version": PROTOCOL_VERSION, "client": "wire-fuzz"})


class _Inputs:
    """Draws one invalid input: the bytes to send on a fresh connection."""

    def __init__(self, rng: random.Random, marker: str) -> None:
        self.rng = rng
        self.marker = marker  # in every path-like value, to find what it created

    def huge_string(self, limit: int) -> str:
        """Just past a field's length limit, or far past it."""
        return "x" * self.rng.choice([limit + 1, 2 * limit])

    def path_like(self) -> str:
        return self.rng.choice(
            [
                f"../../../../../../../../tmp/{self.marker}",
                f"../{self.marker}",
                f"/tmp/{self.marker}",
                f"..\\..\\{self.marker}",
                f"{self.marker}/../../../..",
                "..",
                ".",
                f"{self.marker}\x00.jsonl",
                f"~/{self.marker}",
            ]
        )

    def bad_value(self) -> Any:
        """Something no field accepts in this position (paired with a type below)."""
        return self.rng.choice(
            [
                [1, 2],
                {"a": 1},
                {"nested": [{"x": None}]},
                b"\x00bytes",
                math.nan,
                math.inf,
                -math.inf,
                -1,
                -(2**63),
                2**64 - 1,
                2**64 - 1,
                True,
                "abc",
                "\x00",
                "a\x00b",
                msgpack.ExtType(5, b"ext"),
            ]
        )

    def bad_for(self, field: str) -> Any:
        """A value that is wrong for ``field`` specifically."""
        rng = self.rng
        strings = {
            "message": [self.huge_string(1_000_000), "", " ", "hi\x00", 5, [b"x"], {"k": "v"}],
            "agentId": [self.path_like(), 7, ["main"], "a" * 300, "ab\x00", {"x": 1}],
            "sessionId": [self.path_like(), 3.5, ["s"], "s" * 300, "s\x00", {"x": 1}],
            "cwd": [f"/tmp/{self.marker}\x00", 1, ["/"], "/" * 5000, {"x": 1}],
            "system": ["s\x00", 1.5, [1], self.huge_string(200_000), {"x": 1}],
            "toolChoice": ["auto\x00", 1, ["auto"], "t" * 100, {"x": 1}],
        }
        numbers = {
            "maxTokens": [0, -5, 2**40, 2**64 - 1, 1.5, math.nan, "abc", True, [1], None],
            "temperature": [math.nan, math.inf, -1.0, 1e308, "abc", True, [0.5], {"t": 1}],
            "seed": [-1, 2**33, 2**64 - 1, 1.5, math.nan, "abc", True, [1]],
            "timeoutS": [0, -1.0, math.nan, math.inf, 1e300, "abc", True, [1]],
            "maxSteps": [0, -3, 10**6, 1.5, math.nan, "abc", True, [1]],
            "execTimeout": [0.0, -2, math.nan, math.inf, 1e300, "abc", [1]],
        }
        lists = {
            "stop": ["abc", 5, [1, 2], ["a\x00"], ["x" * 1000], [""], ["s"] * 100, {"a": 1}],
            "allow": ["write", 3, [1], ["w\x00"], ["x" * 200], ["write"] * 50, {"a": 1}],
            "env": ["PATH=/x", 5, [["a", "b"]], {"A": 1}, {"A": "b\x00"}, {"": "x"}, {"A=B": "c"}],
        }
        choices = strings.get(field) or numbers.get(field) or lists.get(field)
        assert choices is not None, field
        value = rng.choice(choices)
        if value is None and field == "maxTokens":
            value = math.nan
        return value

    def base_turn(self) -> dict[str, Any]:
        return {
            "type": "turn",
            "message": "hi",
            "agentId": "fuzz",
            "maxTokens": 1,
            "temperature": 0.0,
            "stop": [],
            "cwd": tempfile.gettempdir(),
            "toolChoice": "none",
            "maxSteps": 1,
            "allow": [],
            "env": {"PATH": "/usr/bin"},
        }

    # -- input families --------------------------------------------------------
    def raw_garbage(self) -> list[bytes]:
        rng = self.rng
        body = msgpack.packb({"type": "hello", "version": PROTOCOL_VERSION})
        return rng.choice(
            [
                [b""],
                [b"\x00"],
                [b"\x00\x00"],
                [struct.pack(">I", 100) + b"short"],  # truncated body
                [struct.pack(">I", len(body)) + body[: len(body) // 2]],
                [struct.pack(">I", MAX_FRAME_BYTES + 1)],  # oversized
                [struct.pack(">I", 0xFFFFFFFF) + b"x" * 10],
                [struct.pack(">I", 0)],  # empty body
                [_frame(rng.randbytes(rng.randint(1, 200)))],  # non-msgpack
                [_frame(b"\xc1")],  # the one never-used msgpack byte
                [_frame(msgpack.packb([1, 2, 3]))],  # not a map
                [_frame(msgpack.packb("hello"))],
                [_frame(msgpack.packb(None))],
                [_frame(msgpack.packb({1: "int key"}))],
                [_frame(b"\x91" * 5000 + b"\xc0")],  # deeply nested lists
                [_frame(msgpack.packb({"type": "hello"}) + b"trailing")],
                [rng.randbytes(rng.randint(1, 64))],
            ]
        )

    def bad_hello(self) -> list[bytes]:
        rng = self.rng
        version = rng.choice(
            [6.0, "6", True, None, -1, 0, 5, 7, 2**63 - 1, [6], {"v": 6}, math.nan, b"6", "6\x00"]
        )
        kind = rng.choice(["missing", "list", "map", "int", "nul", "version", "other"])
        message: dict[Any, Any] = {"version": PROTOCOL_VERSION, "client": "fuzz"}
        if kind == "missing":
            pass
        elif kind == "list":
            message["type"] = ["hello"]
        elif kind == "map":
            message["type"] = {"hello": 1}
        elif kind == "int":
            message["type"] = rng.choice([0, 1, -1, 2**40, 1.5, None, True])
        elif kind == "nul":
            message["type"] = "hel\x00lo"
        elif kind == "version":
            message["type"] = "hello"
            message["version"] = version
        else:
            message["type"] = rng.choice(["turn", "done", "error", "ping", "x" * 5000, ""])
        return [_pack(message)]

    def bad_request(self) -> list[bytes]:
        rng = self.rng
        family = rng.random()
        if family < 0.6:
            request = self.base_turn()
            name = rng.choice(
                [
                    "message",
                    "agentId",
                    "sessionId",
                    "cwd",
                    "system",
                    "toolChoice",
                    "maxTokens",
                    "temperature",
                    "seed",
                    "timeoutS",
                    "maxSteps",
                    "execTimeout",
                    "stop",
                    "allow",
                    "env",
                ]
            )
            request[name] = self.bad_for(name)
            if rng.random() < 0.1:
                del request["message"]
        elif family < 0.65:
            # Protocol 5's snake_case spelling of a key, with a good value:
            # refused by name, never run without the limit it meant to set.
            request = self.base_turn()
            old, value = rng.choice(list(V5_KEYS.items()))
            request[old] = value
        elif family < 0.7:
            request = {"type": "cache", "action": rng.choice([self.bad_value(), "drop", None])}
        elif family < 0.8:
            request = {
                "type": "compact",
                "agentId": rng.choice([self.path_like(), self.bad_value()]),
                "sessionId": rng.choice([self.path_like(), self.bad_value(), "nope"]),
            }
            if rng.random() < 0.5:
                request["agentId"] = "fuzz"
                request["instructions"] = rng.choice([self.bad_value(), "x" * 30_000])
        elif family < 0.9:
            request = {
                "type": rng.choice(
                    [["turn"], {"t": 1}, 5, None, "hello", "token", "done", "cancel", "report", ""]
                )
            }
        else:
            tail = self.raw_garbage()
            return [_hello(), *tail]
        return [_hello(), _pack(request)]

    def draw(self) -> list[bytes]:
        pick = self.rng.random()
        if pick < 0.2:
            return self.raw_garbage()
        if pick < 0.4:
            return self.bad_hello()
        return self.bad_request()


def _answer(sock: socket.socket, deadline: float) -> str:
    """Read until an ``error`` frame, EOF, or ``deadline``: its classification."""
    buffer = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "unanswered"
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            return "unanswered"
        except OSError:
            return "close"
        if not chunk:
            return "close"
        buffer += chunk
        while len(buffer) >= 4:
            (length,) = struct.unpack(">I", buffer[:4])
            if len(buffer) < 4 + length:
                break
            message = msgpack.unpackb(buffer[4 : 4 + length], raw=False)
            buffer = buffer[4 + length :]
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "error":
                return "error"
            if kind == "done":
                return "done"  # a valid input slipped through: counted apart


def _send_one(socket_path: Path, pieces: list[bytes]) -> str:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(ANSWER_TIMEOUT_S)
        sock.connect(str(socket_path))
        for piece in pieces:
            if piece:
                try:
                    sock.sendall(piece)
                except OSError:
                    break  # the daemon refused early; read what it said
        # Half-close: the daemon sees EOF after our input instead of waiting
        # for the rest of a truncated frame until its deadline.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        return _answer(sock, time.monotonic() + ANSWER_TIMEOUT_S)
    finally:
        sock.close()


def _outside_snapshot(roots: list[Path], marker: str) -> set[str]:
    """Every path under ``roots`` (two levels deep) whose name holds ``marker``."""
    found: set[str] = set()
    for root in roots:
        try:
            level1 = list(root.iterdir())
        except OSError:
            continue
        for entry in level1:
            if marker in entry.name:
                found.add(str(entry))
            if entry.is_dir() and not entry.is_symlink():
                with contextlib.suppress(OSError):
                    found.update(str(e) for e in entry.iterdir() if marker in e.name)
    return found


def _tracebacks(log_path: Path, offset: int) -> int:
    try:
        with log_path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().count(b"Traceback")
    except FileNotFoundError:
        return 0


def run(
    socket_path: Path,
    state_dir: Path,
    count: int,
    seed: int,
    log_path: Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Send ``count`` invalid inputs; how they were answered, and what they left.

    Returns {inputs, error_frames, deliberate_closes, unanswered,
    tracebacks_in_log, files_outside_state} (plus ``done``: inputs the daemon
    took as valid, which should be 0).
    """
    rng = random.Random(seed)
    marker = f"ocfuzz{seed}x{os.getpid()}"
    state_dir = state_dir.resolve()
    roots = [state_dir.parent, Path(tempfile.gettempdir()), Path.cwd(), Path.home()]
    before = _outside_snapshot(roots, marker)
    offset = log_path.stat().st_size if log_path.exists() else 0
    inputs = _Inputs(rng, marker)
    counts = {"error": 0, "close": 0, "unanswered": 0, "done": 0}
    for index in range(count):
        counts[_send_one(socket_path, inputs.draw())] += 1
        if progress is not None and index % 1000 == 999:
            progress(index + 1)
    after = _outside_snapshot(roots, marker)
    outside = {p for p in after - before if not Path(p).resolve().is_relative_to(state_dir)}
    time.sleep(0.2)  # let the last connection's log lines land
    return {
        "inputs": count,
        "error_frames": counts["error"],
        "deliberate_closes": counts["close"],
        "unanswered": counts["unanswered"],
        "done": counts["done"],
        "tracebacks_in_log": _tracebacks(log_path, offset),
        "files_outside_state": len(outside),
    }


if __name__ == "__main__":  # python tests/wire_fuzz.py SOCKET STATE_DIR LOG [COUNT] [SEED]
    import json
    import sys

    started = time.monotonic()
    figures: dict[str, Any] = run(
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        int(sys.argv[4]) if len(sys.argv) > 4 else 1000,
        int(sys.argv[5]) if len(sys.argv) > 5 else 0,
        Path(sys.argv[3]),
        progress=lambda n: print(f"{n} inputs", file=sys.stderr, flush=True),
    )
    figures["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures))
