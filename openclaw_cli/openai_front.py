"""``openclaw serve``: an OpenAI-compatible HTTP front on the daemon.

Each request becomes one ``chat`` request on the daemon's socket (started on
first use, as the CLI starts it), so other clients — the real OpenClaw as an
``openai-completions`` provider, the ``openai`` SDK, aider, LangChain — ride the
same prefix cache and tiers as ``openclaw agent``, with no session id: the
daemon finds a conversation by its messages (docs/openai-front.md).

Standard library HTTP (``http.server``, a thread per request; the daemon's
model worker serialises the model anyway). Loopback by default; bound
elsewhere it needs ``--api-key``, checked as a bearer token on every request.
A client that hangs up mid-stream stops the generation (the daemon sees its
socket close).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import sys
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from openclaw_cli import daemon_control
from openclaw_cli import openai_shapes as shapes
from openclaw_daemon.config import Paths
from openclaw_daemon.wire.errors import BadRequestError, NotFoundError, OpenClawError

MAX_BODY_BYTES = 16 * 1024 * 1024  # the daemon's frame limit
_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_COMPLETION_PATHS = ("/v1/completions", "/completions")
_MODELS_PATHS = ("/v1/models", "/models")
_HEALTH_PATHS = ("/health", "/v1/health")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
        super().__init__(address, _Handler)
        self.paths = paths
        self.daemon_command = daemon_command
        self.api_key = api_key
        self.log = log
        self.model_id = ""  # the daemon's model, once known

    def daemon_request(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The daemon's frames for one request; the daemon starts if it is not running."""
        client, _ = daemon_control.connect_or_start(self.paths, command=self.daemon_command)
        with client:
            for frame in client.request(cast(Any, request), timeout=None):
                yield cast("dict[str, Any]", frame)

    def model(self) -> str:
        if not self.model_id:
            for frame in self.daemon_request({"type": "status"}):
                if frame["type"] == "done":
                    self.model_id = str(frame["result"].get("model", ""))
        return self.model_id


class _Handler(BaseHTTPRequestHandler):
    server: FrontServer
    protocol_version = "HTTP/1.1"
    server_version = "openclaw-serve"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # one line per request, in _log, instead of http.server's

    def _log(self, status: int, started: float, extra: str = "") -> None:
        ms = (time.perf_counter() - started) * 1000.0
        self.server.log(f"{self.command} {self.path} {status} {ms:.0f} ms{extra}")

    # -- the plumbing -----------------------------------------------------------------
    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, exc: OpenClawError, started: float) -> None:
        status, body = shapes.error_body(exc)
        self._send_json(status, body)
        self._log(status, started, f" {exc.code}: {exc.message[:120]}")

    def _authorised(self) -> bool:
        key = self.server.api_key
        if not key:
            return True
        header = self.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        return hmac.compare_digest(given.encode(), key.encode())

    def _body(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise BadRequestError("Content-Length is not a number") from None
        if length > MAX_BODY_BYTES:
            raise BadRequestError(f"the body is over {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError as exc:
            raise BadRequestError(f"the body is not JSON: {exc}") from None

    def _route(self, handle: Callable[[float], None]) -> None:
        started = time.perf_counter()
        if not self._authorised():
            self._send_json(
                401,
                {
                    "error": {
                        "message": "missing or wrong API key (send Authorization: Bearer KEY)",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
            )
            self._log(401, started)
            return
        try:
            handle(started)
        except OpenClawError as exc:
            self._fail(exc, started)
        except (BrokenPipeError, ConnectionResetError):
            self._log(499, started, " client went away")
            self.close_connection = True

    # -- routes ---------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0].rstrip("/")
        self._route(lambda started: self._get(path, started))

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0].rstrip("/")
        self._route(lambda started: self._post(path, started))

    def _get(self, path: str, started: float) -> None:
        if path in _HEALTH_PATHS:
            self._send_json(200, {"status": "ok"})
        elif path in _MODELS_PATHS:
            self._send_json(200, {"object": "list", "data": [self._model_card()]})
        elif path.startswith(tuple(p + "/" for p in _MODELS_PATHS)):
            name = path.rsplit("/", 1)[1]
            if name != self.server.model():
                raise NotFoundError(f"no model {name!r}; this server has {self.server.model()!r}")
            self._send_json(200, self._model_card())
        else:
            raise NotFoundError(f"no route GET {path}")
        self._log(200, started)

    def _model_card(self) -> dict[str, Any]:
        return {"id": self.server.model(), "object": "model", "created": 0, "owned_by": "openclaw"}

    def _post(self, path: str, started: float) -> None:
        if path in _CHAT_PATHS:
            completion = False
        elif path in _COMPLETION_PATHS:
            completion = True
        else:
            raise NotFoundError(f"no route POST {path}")
        body = self._body()
        request = shapes.chat_request(body, completion=completion)
        model = str(body.get("model") or self.server.model())
        ident = shapes.new_id("cmpl" if completion else "chatcmpl")
        if body.get("stream"):
            options = body.get("stream_options")
            with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            result = self._stream(request, ident, model, completion, with_usage)
        else:
            result = self._result(request)
            shape = shapes.text_completion if completion else shapes.chat_completion
            self._send_json(200, shape(result, ident=ident, model=model))
        usage = result["usage"]
        self._log(
            200,
            started,
            f" prompt {usage['promptTokens']} (cached {usage['cachedTokens']},"
            f" {result.get('cacheTier')}) completion {usage['completionTokens']}"
            f" ttft {result.get('ttftMs') or 0:.0f} ms",
        )

    def _result(self, request: dict[str, Any]) -> dict[str, Any]:
        for frame in self.server.daemon_request(request):
            if frame["type"] == "done":
                return dict(frame["result"])
        raise OpenClawError("the daemon ended the request without a result")

    def _stream(
        self,
        request: dict[str, Any],
        ident: str,
        model: str,
        completion: bool,
        with_usage: bool,
    ) -> dict[str, Any]:
        """Server-sent events: a chunk per token frame, then the calls, the finish
        reason, the usage if asked for, and ``[DONE]``. An error after the stream
        began is an ``error`` event (the status line is gone by then)."""
        frames = self.server.daemon_request(request)
        first = next(frames)  # a bad request fails here, as a plain JSON error
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def send(body: dict[str, Any]) -> None:
            self.wfile.write(b"data: " + json.dumps(body).encode() + b"\n\n")
            self.wfile.flush()

        def piece(text: str) -> None:
            if completion:
                send(shapes.chunk(ident=ident, model=model, completion=True, text=text))
            else:
                delta = {"content": text}
                send(shapes.chunk(ident=ident, model=model, completion=False, delta=delta))

        if not completion:
            role = {"role": "assistant", "content": ""}
            send(shapes.chunk(ident=ident, model=model, completion=False, delta=role))
        result: dict[str, Any] | None = None
        try:
            for frame in _chain(first, frames):
                if frame["type"] == "token":
                    piece(frame["text"])
                elif frame["type"] == "done":
                    result = dict(frame["result"])
        except OpenClawError as exc:
            send(shapes.error_body(exc)[1])
            self.wfile.write(b"data: [DONE]\n\n")
            raise _AlreadySent(exc) from exc
        assert result is not None
        if result.get("hiddenText"):
            piece(result["hiddenText"])
        calls = shapes.stream_tool_calls(result)
        if calls:
            delta = {"tool_calls": calls}
            send(shapes.chunk(ident=ident, model=model, completion=False, delta=delta))
        last = shapes.chunk(
            ident=ident, model=model, completion=completion, finish=result["finishReason"]
        )
        send({**last, "timings": shapes.timings(result)})  # as llama-server's last chunk
        if with_usage:
            send(shapes.usage_chunk(result, ident=ident, model=model, completion=completion))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        return result

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _AlreadySent as sent:  # the stream carried the error; log it only
            self.server.log(f"{self.command} {self.path} stream failed: {sent.error.message}")
            self.close_connection = True


class _AlreadySent(Exception):
    """An error the stream has already reported to the client."""

    def __init__(self, error: OpenClawError) -> None:
        super().__init__(error.message)
        self.error = error


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest


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
