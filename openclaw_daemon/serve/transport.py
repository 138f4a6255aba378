"""Daemon side of the Unix socket: bind safely, accept, frame, check peers.

Owns the listening socket. Each connection is served on its own thread by a
``ConnectionHandler``; a handler crash becomes an ``error`` frame and the
daemon keeps serving. At most ``max_connections`` are served at once (a
bounded number of threads); one more is answered with a ``busy`` error frame
and closed at once. A new connection has ``hello_timeout`` seconds to send its
hello, then ``REQUEST_TIMEOUT_S`` (or longer) to send its request.
Readiness is polled with ``selectors``, never with ``select()``, which
cannot take a descriptor above 1023. What it sends is typed
(``wire.messages.DaemonFrame``); what it receives is a decoded map that the
handlers parse (``wire.requests``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from openclaw_daemon.wire import frames as protocol
from openclaw_daemon.wire.errors import (
    DaemonBusyError,
    DaemonUnavailableError,
    PermissionDeniedError,
    ProtocolError,
)
from openclaw_daemon.wire.messages import DaemonFrame

log = logging.getLogger("openclawd.transport")
LISTEN_BACKLOG = 1024
# After its hello, a client may still be importing what it needs on a loaded
# machine before it sends the request: more slack than for the hello, still bounded.
REQUEST_TIMEOUT_S = 30.0


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
    # Deep enough for a burst: a Unix socket's connect() fails at once with
    # EAGAIN (it does not wait) when this queue is full.
    listener.listen(LISTEN_BACKLOG)
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

    def __init__(
        self, sock: socket.socket, accepted_at: float = 0.0, *, hello_timeout: float = 5.0
    ) -> None:
        self.sock = sock
        self.accepted_at = accepted_at  # perf_counter() when accept() returned
        self.hello_timeout = hello_timeout
        self._send_lock = threading.Lock()
        self._selector: selectors.BaseSelector | None = None
        self.closed = False

    def _read_exactly(self, size: int, deadline: float | None = None) -> bytes:
        chunks: list[bytes] = []
        remaining = size
        while remaining:
            if deadline is not None:
                # A total deadline, not one per recv: a peer trickling a byte
                # at a time must not hold this thread past it.
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.sock.settimeout(left)
            chunk = self.sock.recv(min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def receive(self) -> protocol.Message | None:
        return protocol.read_frame(self._read_exactly)

    def receive_opening(self, what: str) -> protocol.Message | None:
        """The hello (within ``hello_timeout``) or the request (``REQUEST_TIMEOUT_S``)."""
        allowed = self.hello_timeout
        if what != "hello":
            allowed = max(allowed, REQUEST_TIMEOUT_S)
        deadline = time.monotonic() + allowed
        try:
            return protocol.read_frame(lambda size: self._read_exactly(size, deadline))
        except TimeoutError:
            raise ProtocolError(f"no complete {what} frame within {allowed:g} s; closing") from None
        except OSError as exc:  # reset by the peer: nobody left to answer
            self.closed = True
            raise ProtocolError(f"connection lost while reading the {what}: {exc}") from None
        finally:
            with contextlib.suppress(OSError):
                self.sock.settimeout(None)

    def _readable(self, timeout: float) -> bool:
        if self._selector is None:
            self._selector = selectors.DefaultSelector()
            self._selector.register(self.sock, selectors.EVENT_READ)
        return bool(self._selector.select(timeout))

    def receive_within(self, timeout: float) -> protocol.Message | None:
        """The client's next frame, or None on a hang-up, a bad frame or ``timeout``."""
        if self.closed:
            return None
        try:
            if not self._readable(timeout):
                return None
        except (OSError, ValueError):
            self.closed = True
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

    def send(self, message: DaemonFrame) -> bool:
        """Send a frame (only the daemon's typed frames); False if the client has gone away."""
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
        try:
            if not self._readable(0):
                return None
        except (OSError, ValueError):
            self.closed = True
            return True
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
        if self._selector is not None:
            with contextlib.suppress(OSError, ValueError, KeyError):
                self._selector.close()
        with contextlib.suppress(OSError):
            self.sock.close()


ConnectionHandler = Callable[[Connection], None]


class UnixServer:
    """Accept loop: one thread per connection, at most ``max_connections``, until ``shutdown``."""

    def __init__(
        self,
        path: Path,
        handler: ConnectionHandler,
        *,
        max_connections: int = 64,
        hello_timeout: float = 5.0,
    ) -> None:
        self.path = path
        self.handler = handler
        self.max_connections = max_connections
        self.hello_timeout = hello_timeout
        self.listener = bind_listener(path)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.active = 0  # connections being served now
        self.refused_busy = 0  # connections answered "busy" since start
        self._last_activity = time.monotonic()  # a connection opened or ended

    def serve_forever(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ)
            while not self._stopping.is_set():
                try:
                    ready = selector.select(0.2)
                except InterruptedError:
                    continue
                if ready:
                    self._accept()

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                # Out of descriptors: back off instead of spinning on a ready listener.
                log.warning("cannot accept a connection: %s", exc.strerror)
                time.sleep(0.05)
            return
        accepted_at = time.perf_counter()
        with self._lock:
            busy = self.active >= self.max_connections
            self._last_activity = time.monotonic()
            if busy:
                self.refused_busy += 1
            else:
                self.active += 1
        if busy:
            self._refuse_busy(sock)
            return
        try:
            threading.Thread(target=self._serve, args=(sock, accepted_at), daemon=True).start()
        except RuntimeError:  # cannot start a thread: answer busy rather than drop it
            with self._lock:
                self.active -= 1
            self._refuse_busy(sock)

    def _refuse_busy(self, sock: socket.socket) -> None:
        """Answer an over-cap connection on the accept thread (no new thread), then close."""
        error = DaemonBusyError(
            f"the daemon is serving {self.max_connections} connections already; try again",
            hint="Retry in a moment, or raise OPENCLAW_MAX_CONNECTIONS.",
        )
        try:
            # Non-blocking: a small frame fits the socket buffer; a peer that
            # does not read must not stall the accept loop.
            sock.setblocking(False)
            sock.send(protocol.encode(protocol.error_frame(error)))
            # Read what the peer sent already (its hello): closing a Unix
            # socket with unread data resets the peer, which may then never
            # see the busy frame.
            with contextlib.suppress(OSError):
                while sock.recv(1 << 16):
                    pass
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def _serve(self, sock: socket.socket, accepted_at: float) -> None:
        connection = Connection(sock, accepted_at, hello_timeout=self.hello_timeout)
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
            with self._lock:
                self.active -= 1
                self._last_activity = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last connection ended; 0 while one is open."""
        with self._lock:
            return 0.0 if self.active else time.monotonic() - self._last_activity

    def shutdown(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
