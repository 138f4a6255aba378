"""A fault-injecting OpenAI-compatible server, or proxy, on 127.0.0.1.

Alone it answers every POST with a small chat-completion SSE stream (or one JSON
object when the body does not ask to stream). Given ``upstream=URL`` it forwards
requests there instead, streaming the reply through. Either way,
``set_mode(mode, count)`` makes the next ``count`` requests fail as ``mode`` says
(then it goes back to normal), so a test can put 429s, stalls or a cut stream
between the daemon and a real server. It runs in a daemon thread and shuts down
after ``lifetime`` seconds even if a test forgets to stop it.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = (
    "ok",  # a normal reply (or forwarded, as a proxy)
    "json",  # a non-streamed JSON reply even when streaming was asked for
    "429",  # Too Many Requests with Retry-After
    "503",  # Service Unavailable with Retry-After (an HTTP-date when retry_after_date)
    "500",  # a plain server error
    "400",  # a plain request error (a server that refuses a field)
    "401",
    "404",
    "cut",  # headers and ``cut_after`` events, then the connection drops mid-body
    "stall_first_byte",  # nothing at all for ``stall`` seconds
    "stall_between",  # ``cut_after`` events, then a ``stall``-second pause, then the rest
    "ping_stall",  # ``cut_after`` events, then ``stall`` seconds of SSE keep-alive comments
    "garbage",  # a data line that is not JSON
    "overflow",  # llama-server's 400 context-size error
    "overflow_openai",  # vLLM / OpenAI's 400 context_length_exceeded
    "error_event",  # a 200 stream whose second event is an error object
)

LLAMA_OVERFLOW = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 5000,
        "n_ctx": 4096,
    }
}
OPENAI_OVERFLOW = {
    "error": {
        "message": "This model's maximum context length is 4096 tokens. However, you "
        "requested 5000 tokens.",
        "type": "invalid_request_error",
        "code": "context_length_exceeded",
    }
}


def chunk_events(words: tuple[str, ...] = ("Hello", ",", " world")) -> list[dict[str, Any]]:
    """The SSE events of a tiny chat completion, one per word, then a finish event."""
    events: list[dict[str, Any]] = [
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
        }
        for word in words
    ]
    events.append(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
    )
    return events


class FaultServer:
    def __init__(self, upstream: str | None = None, *, lifetime: float = 60.0) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.stall = 0.6
        self.cut_after = 2
        self.retry_after = "1"
        self.retry_after_date = False
        self.requests: list[tuple[str, str]] = []  # (method, path) as received
        self.bodies: list[bytes] = []  # each request's body, as received
        self.client_ports: list[int] = []  # one per request: equal ports mean keep-alive
        self.words: tuple[str, ...] = ("Hello", ",", " world")  # what a reply streams
        self.events: list[dict[str, Any]] | None = None  # streamed instead, when set
        self._mode = "ok"
        self._count: int | None = 0
        self._after = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        # A short poll so stop() (shutdown waits for one poll) is quick in tests.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def set_mode(self, mode: str, count: int | None = None, *, after: int = 0) -> None:
        """The next ``count`` requests (every one when None) fail as ``mode``, once
        ``after`` more requests have been answered normally."""
        assert mode in MODES, mode
        with self._lock:
            self._mode, self._count, self._after = mode, count, after

    def take_mode(self) -> str:
        with self._lock:
            if self._after > 0:
                self._after -= 1
                return "ok"
            if self._count is not None:
                if self._count <= 0:
                    return "ok"
                self._count -= 1
            return self._mode

    def wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up on a stall or a cut is what these tests are about.
        pass


def _handler_for(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_FaultHandler):
        fault = server

    return Handler


class _FaultHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, as real servers do
    fault: FaultServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        self._serve(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _serve(self, body: bytes) -> None:
        fault = self.fault
        fault.requests.append((self.command, self.path))
        fault.bodies.append(body)
        fault.client_ports.append(self.client_address[1])
        mode = fault.take_mode()
        try:
            self._reply(mode, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _reply(self, mode: str, body: bytes) -> None:
        fault = self.fault
        if mode == "stall_first_byte":
            fault.wait(fault.stall)
            mode = "ok"
        if mode in ("429", "503"):
            after = fault.retry_after
            if fault.retry_after_date:
                after = formatdate(time.time() + float(after), usegmt=True)
            self._json(int(mode), {"error": {"message": "busy"}}, {"Retry-After": after})
        elif mode in ("500", "400", "401", "404"):
            self._json(int(mode), {"error": {"message": f"injected {mode}"}})
        elif mode == "overflow":
            self._json(400, LLAMA_OVERFLOW)
        elif mode == "overflow_openai":
            self._json(400, OPENAI_OVERFLOW)
        elif fault.upstream and mode != "json":
            self._proxy(mode, body)
        elif mode == "json" or not _wants_stream(body):
            self._json(
                200,
                {
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}}],
                },
            )
        else:
            events = fault.events if fault.events is not None else chunk_events(fault.words)
            self._stream(mode, (_sse(e) for e in events))

    def _json(
        self, status: int, value: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, text in (headers or {}).items():
            self.send_header(name, text)
        self.end_headers()
        self.wfile.write(data)

    def _stream(
        self,
        mode: str,
        pieces: Iterator[bytes],
        status: int = 200,
        content_type: str = "text/event-stream",
    ) -> None:
        """Chunked body from ``pieces``, with the mode's fault at piece ``cut_after``."""
        fault = self.fault
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for sent, piece in enumerate(pieces):
            if sent == fault.cut_after and mode == "cut":
                self.close_connection = True
                return  # no terminating chunk: the client sees an incomplete chunked read
            if sent == fault.cut_after and mode == "stall_between":
                fault.wait(fault.stall)
            if sent == fault.cut_after and mode == "ping_stall":
                # What sse-starlette does while a generation hangs: comments, no data.
                until = time.monotonic() + fault.stall
                while time.monotonic() < until:
                    self._chunk(b": ping\n\n")
                    time.sleep(0.05)
            if sent == 1 and mode == "garbage":
                piece = b"data: {this is not json\n\n"
            if sent == 1 and mode == "error_event":
                piece = _sse(LLAMA_OVERFLOW)
            self._chunk(piece)
        if fault.upstream is None:
            self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def _proxy(self, mode: str, body: bytes) -> None:
        """Forward to the upstream and stream its reply back, faults applied on the way."""
        assert self.fault.upstream
        target = urllib.parse.urlsplit(self.fault.upstream)
        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=300)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
            conn.request(self.command, target.path + self.path, body=body or None, headers=headers)
            reply = conn.getresponse()
            pieces = iter(lambda: reply.read1(65536), b"")
            self._stream(mode, pieces, reply.status, reply.getheader("Content-Type") or "")
        finally:
            conn.close()


# Not forwarded: hop-by-hop, and Accept-Encoding since only Content-Type is copied back.
_HOP_HEADERS = {
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "accept-encoding",
}


def _wants_stream(body: bytes) -> bool:
    try:
        return bool(json.loads(body or b"{}").get("stream"))
    except (ValueError, AttributeError):
        return False


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"
