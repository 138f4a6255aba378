"""Client side of the Unix socket, used by the CLI.

Connects, exchanges hellos, sends one request and yields the stream until its
terminal frame, turning ``error`` frames back into typed errors. What it
sends is a typed request and what it yields a typed daemon frame
(``messages``, imported for annotations only). Standard library plus
``frames`` only: it is on the CLI's start-up path.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from openclaw_daemon.wire import frames as protocol
from openclaw_daemon.wire.errors import (
    DaemonBusyError,
    DaemonUnavailableError,
    OpenClawError,
    PermissionDeniedError,
    TurnTimeoutError,
    error_from_wire,
)

if TYPE_CHECKING:
    from openclaw_daemon.wire.messages import DoneFrame, ErrorFrame, Request, StreamFrame


class DaemonClient:
    """One connection to the daemon; use as a context manager."""

    def __init__(
        self, socket_path: Path, *, connect_timeout: float = 5.0, busy_wait: float = 10.0
    ) -> None:
        self.socket_path = socket_path
        self.connect_timeout = connect_timeout
        # A daemon at its connection cap frees a slot within its hello
        # deadline (5 s by default): wait that long before reporting "busy".
        self.busy_wait = busy_wait
        self.sock: socket.socket | None = None
        self.daemon_info: Mapping[str, Any] = {}  # the daemon's hello

    def __enter__(self) -> DaemonClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connect and exchange hellos; a ``busy`` daemon is retried for ``busy_wait`` s."""
        check_socket_owner(self.socket_path)
        give_up = time.monotonic() + self.busy_wait
        delay = 0.05
        while True:
            try:
                self._connect_once()
                return
            except DaemonBusyError:
                self.close()
                if time.monotonic() + delay > give_up:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _connect_once(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect(str(self.socket_path))
        except BlockingIOError as exc:  # the daemon's accept queue is full: retried
            sock.close()
            raise DaemonBusyError(
                "the daemon is not accepting connections fast enough; try again"
            ) from exc
        except OSError as exc:
            sock.close()
            raise DaemonUnavailableError(
                f"cannot connect to the daemon at {self.socket_path}: {exc.strerror or exc}",
                hint="Start it with: openclaw daemon start",
            ) from exc
        self.sock = sock
        # A daemon at its connection cap answers "busy" and closes at once,
        # maybe before our hello went out: read that answer anyway.
        with contextlib.suppress(DaemonUnavailableError):
            self._send(protocol.hello("openclaw-cli", pid=os.getpid()))
        reply = self._receive(deadline=time.monotonic() + self.connect_timeout)
        if reply is not None and reply.get("type") == "error":
            refusal = cast("ErrorFrame", reply)
            raise error_from_wire(refusal["code"], refusal["message"], refusal.get("hint", ""))
        self.daemon_info = protocol.check_hello(reply)

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def request(
        self, message: Request, *, timeout: float | None = None
    ) -> Iterator[StreamFrame | DoneFrame]:
        """Send one request; yield its stream frames, return after ``done``.

        Raises the typed error from an ``error`` frame, DaemonUnavailableError if
        the daemon vanishes mid-stream, TurnTimeoutError past ``timeout``.
        """
        self._send(message)
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            frame = self._receive(deadline=deadline)
            if frame is None:
                raise DaemonUnavailableError(
                    "the daemon closed the connection before finishing the request",
                    hint="See the daemon log (openclaw daemon status) and retry.",
                )
            kind = frame["type"]
            if kind == "error":
                failed = cast("ErrorFrame", frame)
                error = error_from_wire(failed["code"], failed["message"], failed.get("hint", ""))
                error.turn_id = str(failed.get("turnId") or "")
                raise error
            # frames.read_frame checked the type is known; the daemon builds
            # every frame as the TypedDict its type names.
            yield cast("StreamFrame | DoneFrame", frame)
            if kind == "done":
                return

    def call(self, message: Request, *, timeout: float | None = 30.0) -> dict[str, Any]:
        """A request whose only interesting frame is its ``done`` result."""
        result: dict[str, Any] = {}
        for frame in self.request(message, timeout=timeout):
            if frame["type"] == "done":
                result = dict(frame.get("result") or {})
        return result

    def cancel(self) -> None:
        """Best effort: the daemon may already have ended the stream."""
        with contextlib.suppress(OpenClawError):
            self._send({"type": "cancel"})

    def permit(self, call_id: str, *, allow: bool, always: bool = False) -> None:
        """Answer a turn's ``permission`` question."""
        self._send({"type": "permit", "id": call_id, "allow": allow, "always": always})

    def _send(self, message: Request) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall(protocol.encode(message))
        except OSError as exc:
            raise DaemonUnavailableError(f"lost the daemon connection: {exc}") from exc

    def _receive(self, *, deadline: float | None) -> protocol.Message | None:
        assert self.sock is not None
        sock = self.sock

        def read_exactly(size: int) -> bytes:
            chunks: list[bytes] = []
            remaining = size
            while remaining:
                left = None
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TurnTimeoutError("timed out waiting for the daemon")
                try:
                    # In the try: another thread may have closed the socket (the
                    # OpenAI front does when its HTTP client hangs up).
                    sock.settimeout(left)
                    chunk = sock.recv(min(remaining, 1 << 20))
                except TimeoutError as exc:
                    raise TurnTimeoutError("timed out waiting for the daemon") from exc
                except OSError as exc:
                    raise DaemonUnavailableError(f"lost the daemon connection: {exc}") from exc
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            return b"".join(chunks)

        return protocol.read_frame(read_exactly)


def check_socket_owner(path: Path) -> None:
    """Refuse to talk to a socket another user owns: it could be anyone's daemon."""
    try:
        owner = path.stat().st_uid
    except FileNotFoundError:
        raise DaemonUnavailableError(
            f"the daemon is not running (no socket at {path})",
            hint="Start it with: openclaw daemon start",
        ) from None
    if owner != os.getuid():
        raise PermissionDeniedError(
            f"the socket {path} belongs to uid {owner}, not to you (uid {os.getuid()})",
            hint="Set OPENCLAW_STATE_DIR or OPENCLAW_SOCKET to a location you own.",
        )
