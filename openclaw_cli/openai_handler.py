"""The HTTP side of ``openclaw serve``: one request's route, authorisation, body and
reply (OpenAI's JSON or a server-sent event stream); the server and its daemon
connections are ``openai_front``'s."""

from __future__ import annotations

import hmac
import ipaddress
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Protocol

from openclaw_cli import openai_shapes as shapes
from openclaw_daemon.wire.errors import BadRequestError, NotFoundError, OpenClawError

if TYPE_CHECKING:
    import socket

MAX_BODY_BYTES = 16 * 1024 * 1024  # the daemon's frame limit
IDLE_TIMEOUT_S = 300.0  # a connection that sends nothing this long is closed
_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_COMPLETION_PATHS = ("/v1/completions", "/completions")
_MODELS_PATHS = ("/v1/models", "/models")
_HEALTH_PATHS = ("/health", "/v1/health")


class Front(Protocol):
    """What a request needs of the server (``openai_front.FrontServer``)."""

    api_key: str | None
    log: Callable[[str], None]

    def model(self) -> str: ...

    def daemon_request(
        self, request: dict[str, Any], http_client: socket.socket | None = None
    ) -> Iterator[dict[str, Any]]: ...


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class FrontHandler(BaseHTTPRequestHandler):
    server: Front  # type: ignore[assignment]  # the base declares a plain socketserver
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S  # a client that stalls mid-request loses its thread
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
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, exc: OpenClawError, started: float) -> None:
        status, body = shapes.error_body(exc)
        # The body may not have been read (a 404, a 401): never parse it as the
        # next request on this connection.
        self.close_connection = True
        self._send_json(status, body)
        self._log(status, started, f" {exc.code}: {exc.message[:120]}")

    def _authorised(self) -> bool:
        key = self.server.api_key
        if not key:
            return True
        header = self.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        return hmac.compare_digest(given.encode(), key.encode())

    def _cross_site(self) -> str:
        """Without an API key, only loopback clients may use the model: a web page's
        request (an ``Origin`` elsewhere) or a rebound DNS name (a ``Host`` elsewhere)
        is refused."""
        if self.server.api_key:
            return ""
        host = _host_name(self.headers.get("Host") or "")
        if host and not is_loopback(host):
            return f"Host {host!r} is not a loopback name; use --api-key to serve other names"
        origin = self.headers.get("Origin")
        if origin and origin != "null":
            origin_host = urllib.parse.urlsplit(origin).hostname or ""
            if not is_loopback(origin_host):
                return f"requests from {origin!r} are not allowed without --api-key"
        return ""

    def _body(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise BadRequestError("Content-Length is not a number") from None
        if length < 0:
            raise BadRequestError("Content-Length is negative")
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
            self.close_connection = True
            self._log(401, started)
            return
        refused = self._cross_site()
        if refused:
            self.close_connection = True
            self._send_json(
                403,
                {"error": {"message": refused, "type": "invalid_request_error", "param": None,
                           "code": "forbidden"}},
            )  # fmt: skip
            self._log(403, started, f" {refused}")
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
        elif path in _CHAT_PATHS or path in _COMPLETION_PATHS:
            raise MethodNotAllowed(f"{path} takes POST, not GET")
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
        for frame in self.server.daemon_request(request, self.connection):
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
        frames = self.server.daemon_request(request, self.connection)
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


class MethodNotAllowed(BadRequestError):
    code = "method_not_allowed"  # answered 405 (openai_shapes)


class _AlreadySent(Exception):
    """An error the stream has already reported to the client."""

    def __init__(self, error: OpenClawError) -> None:
        super().__init__(error.message)
        self.error = error


def _host_name(header: str) -> str:
    """A Host header's name: ``127.0.0.1:80`` -> ``127.0.0.1``, ``[::1]:80`` -> ``::1``."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest
