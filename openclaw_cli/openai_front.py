"""``openclaw serve``: an OpenAI-compatible HTTP front on the daemon.

Each request becomes one ``chat`` request on the daemon's socket (started on
first use, as the CLI starts it), so other clients — the real OpenClaw as an
``openai-completions`` provider, the ``openai`` SDK, aider, LangChain — ride the
same prefix cache and tiers as ``openclaw agent``, with no session id: the
daemon finds a conversation by its messages (docs/openai-front.md).

Standard library HTTP (``http.server``, a thread per request; the daemon's
model worker serialises the model anyway). Loopback by default; bound
elsewhere it needs ``--api-key``, checked as a bearer token on every request.
Without a key, a request from a web page (an ``Origin`` elsewhere) or through a
rebound DNS name (a ``Host`` elsewhere) is refused. A client that hangs up, while
its reply streams or before, stops the generation (the daemon connection is
closed, and the daemon sees it).
"""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any, cast

from openclaw_cli import daemon_control
from openclaw_cli.openai_handler import FrontHandler, is_loopback
from openclaw_daemon.config import Paths
from openclaw_daemon.wire.errors import BadRequestError, OpenClawError

__all__ = ["FrontServer", "is_loopback", "serve"]

MAX_CONNECTIONS = 64  # at once; more are answered 503
_HANG_UP_POLL_S = 0.1


class FrontServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never holds up Ctrl-C

    def __init__(
        self,
        address: tuple[str, int],
        *,
        paths: Paths,
        daemon_command: list[str],
        api_key: str | None,
        log: Callable[[str], None],
    ) -> None:
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, FrontHandler)
        self.paths = paths
        self.daemon_command = daemon_command
        self.api_key = api_key
        self.log = log
        self.model_id = ""  # the daemon's model, once known
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection, up to ``MAX_CONNECTIONS``; past that a 503."""
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def daemon_request(
        self, request: dict[str, Any], http_client: socket.socket | None = None
    ) -> Iterator[dict[str, Any]]:
        """The daemon's frames for one request; the daemon starts if it is not running.
        If ``http_client`` hangs up meanwhile, the daemon connection is closed, which
        stops the generation (during the prefill too, when nothing is written)."""
        client, _ = daemon_control.connect_or_start(self.paths, command=self.daemon_command)
        done, gone = threading.Event(), threading.Event()
        if http_client is not None:
            threading.Thread(
                target=_watch_hang_up, args=(http_client, client, done, gone), daemon=True
            ).start()
        try:
            with client:
                for frame in client.request(cast(Any, request), timeout=None):
                    yield cast("dict[str, Any]", frame)
        except OpenClawError:
            if gone.is_set():  # we closed it: the client went away
                raise ClientGone("the client hung up") from None
            raise
        finally:
            done.set()

    def model(self) -> str:
        if not self.model_id:
            for frame in self.daemon_request({"type": "status"}):
                if frame["type"] == "done":
                    self.model_id = str(frame["result"].get("model", ""))
        return self.model_id


class ClientGone(ConnectionResetError):
    """The HTTP client hung up while the daemon worked for it."""


def _watch_hang_up(
    http_client: socket.socket, daemon: Any, done: threading.Event, gone: threading.Event
) -> None:
    """Close the daemon connection when the HTTP client's end reads as closed."""
    while not done.wait(_HANG_UP_POLL_S):
        try:
            readable, _, _ = select.select([http_client], [], [], 0)
            hung_up = bool(readable) and http_client.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):  # the socket is gone already
            hung_up = True
        if hung_up:
            gone.set()
            daemon.close()
            return


def serve(
    *,
    host: str,
    port: int,
    paths: Paths,
    daemon_command: list[str],
    api_key: str | None,
    ready: Callable[[FrontServer], None] | None = None,
) -> None:
    """Serve until interrupted."""
    if not is_loopback(host) and not api_key:
        raise BadRequestError(
            f"refusing to serve on {host} without an API key: anyone who can reach it "
            "could use the model",
            hint="Pass --api-key KEY (or set OPENCLAW_API_KEY), or bind 127.0.0.1.",
        )

    def log(line: str) -> None:
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        sys.stderr.flush()

    try:
        server = FrontServer(
            (host, port), paths=paths, daemon_command=daemon_command, api_key=api_key, log=log
        )
    except OSError as exc:
        raise BadRequestError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="Pick another --port, or stop what is using it.",
        ) from None
    with server:
        if ready is not None:
            ready(server)
        server.serve_forever(poll_interval=0.2)
