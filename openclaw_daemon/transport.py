"""Daemon side of the Unix socket: bind safely, accept, frame, check peers.

Owns the listening socket. Each connection is served on its own thread by a
``ConnectionHandler``; a handler crash becomes an ``error`` frame and the
daemon keeps serving.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from openclaw_daemon import protocol
from openclaw_daemon.errors import DaemonUnavailableError, PermissionDeniedError, ProtocolError

log = logging.getLogger("openclawd.transport")


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` as a 0700 directory we own, or refuse an unsafe one (no chmod)."""
    from openclaw_daemon import state_dirs

    state_dirs.ensure_private_dir(path)


def socket_is_live(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def bind_listener(path: Path) -> socket.socket:
    """Bind the daemon socket (mode 0600), clearing a stale one left by a killed daemon."""
    from openclaw_daemon import state_dirs

    # The daemon checked the run dir by kind already; never chmod a shared one.
    state_dirs.ensure_socket_dir(path.parent)
    if path.exists() or path.is_symlink():
        if socket_is_live(path):
            raise DaemonUnavailableError(
                f"another daemon is already listening on {path}",
                hint="Stop it with: openclaw daemon stop",
            )
        log.info("removing stale socket %s", path)
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    listener.listen(64)
    return listener


def peer_uid(sock: socket.socket) -> int | None:
    """The connecting process's uid, where the platform tells us."""
    if hasattr(socket, "SO_PEERCRED"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[1])
    with contextlib.suppress(OSError, AttributeError):
        uid, _gid = os.getpeereid(sock.fileno())  # type: ignore[attr-defined]
        return int(uid)
    return None


class Connection:
    """One client connection: framed send/receive plus disconnect detection."""

    def __init__(self, sock: socket.socket, accepted_at: float = 0.0) -> None:
        self.sock = sock
        self.accepted_at = accepted_at  # perf_counter() when accept() returned
        self._send_lock = threading.Lock()
        self.closed = False

    def _read_exactly(self, size: int) -> bytes:
        chunks: list[bytes] = []
        remaining = size
        while remaining:
            chunk = self.sock.recv(min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def receive(self) -> protocol.Message | None:
        return protocol.read_frame(self._read_exactly)

    def receive_within(self, timeout: float) -> protocol.Message | None:
        """The client's next frame, or None on a hang-up, a bad frame or ``timeout``."""
        if self.closed:
            return None
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if not readable:
            return None
        # A frame that starts but never finishes must not hold this thread forever.
        self.sock.settimeout(timeout)
        try:
            return self.receive()
        except (ProtocolError, OSError):  # socket.timeout is an OSError
            self.closed = True
            return None
        finally:
            with contextlib.suppress(OSError):
                self.sock.settimeout(None)

    def send(self, message: protocol.Message) -> bool:
        """Send a frame; False if the client has gone away."""
        if self.closed:
            return False
        data = protocol.encode(message)
        with self._send_lock:
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                self.closed = True
                return False

    def poll_client(self) -> protocol.Message | None | bool:
        """Non-blocking check for a client frame.

        Returns a frame if one arrived, True if the client hung up, and None if
        nothing happened.
        """
        if self.closed:
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        if not readable:
            return None
        try:
            message = self.receive()
        except (ProtocolError, OSError):
            self.closed = True
            return True
        if message is None:
            self.closed = True
            return True
        return message

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()


ConnectionHandler = Callable[[Connection], None]


class UnixServer:
    """Accept loop: one thread per connection, until ``shutdown``."""

    def __init__(self, path: Path, handler: ConnectionHandler) -> None:
        self.path = path
        self.handler = handler
        self.listener = bind_listener(path)
        self._stopping = threading.Event()

    def serve_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                readable, _, _ = select.select([self.listener], [], [], 0.2)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if not readable:
                continue
            try:
                sock, _ = self.listener.accept()
            except OSError:
                continue
            accepted_at = time.perf_counter()
            threading.Thread(target=self._serve, args=(sock, accepted_at), daemon=True).start()

    def _serve(self, sock: socket.socket, accepted_at: float) -> None:
        connection = Connection(sock, accepted_at)
        try:
            uid = peer_uid(sock)
            if uid is not None and uid not in (os.getuid(), 0):
                connection.send(
                    protocol.error_frame(
                        PermissionDeniedError(f"uid {uid} may not use this daemon")
                    )
                )
                return
            self.handler(connection)
        except Exception:  # a bug in one request must not take the daemon down
            log.exception("connection handler crashed")
        finally:
            connection.close()

    def shutdown(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
