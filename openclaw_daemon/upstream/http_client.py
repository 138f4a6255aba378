"""The HTTP layer to one upstream engine: a pooled httpx client, SSE streaming,
and every failure turned into an ``UpstreamError`` that names the provider and
the URL and says what to do.

One ``httpx.Client`` per provider, kept for the daemon's life, so consecutive
turns reuse the HTTP/1.1 keep-alive connection (no TCP/TLS setup per turn).
Three timeouts, because a stalled upstream looks different at each stage:
connect, the first byte of the response (the status line and headers: llama-server
sends them once the prompt is prefilled), and between chunks of the body. Servers
that send headers before prefilling (Starlette-based ones such as vLLM) put the
prefill under the between-chunks timeout, so that one should not be tight either.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from openclaw_daemon.upstream.error_bodies import (
    error_detail,
    is_overflow,
    is_request_overflow,
    parse_retry_after,
)
from openclaw_daemon.upstream.sse import SSEParser
from openclaw_daemon.wire.errors import UpstreamContextOverflowError, UpstreamError

_BASEURL_HINT = "Check models.providers.{p}.baseUrl in openclaw.json."


class UpstreamClient:
    """One provider's HTTP endpoint. Thread-safe as httpx.Client is; close() when done."""

    def __init__(
        self,
        provider_id: str,
        base_url: str,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout_seconds: float = 600.0,
        *,
        connect_timeout: float = 10.0,
        first_byte_timeout: float | None = None,
        chunk_timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.provider_id = provider_id
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.first_byte_timeout = first_byte_timeout or timeout_seconds
        self.chunk_timeout = chunk_timeout or timeout_seconds
        all_headers = {"Accept": "application/json, text/event-stream"}
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        all_headers.update(headers or {})
        self._client = httpx.Client(
            headers=all_headers,
            timeout=self._timeout(),
            limits=httpx.Limits(max_keepalive_connections=8, keepalive_expiry=60.0),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def url(self, path: str) -> str:
        """``path`` under the base URL, or ``path`` itself when it is absolute (the
        server's own endpoints such as llama-server's ``/tokenize`` live beside ``/v1``)."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    @property
    def server_root(self) -> str:
        """The base URL without its OpenAI ``/v1`` suffix."""
        return self.base_url.removesuffix("/v1")

    def stream_json(
        self,
        path: str,
        body: dict[str, Any],
        *,
        require_done: bool = True,
        opened: Callable[[httpx.Response], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """POST ``body`` and yield one dict per SSE event (a non-SSE JSON reply is
        yielded once). Raising mid-stream after an event was yielded is never retryable.
        ``require_done``: the OpenAI endpoints end with ``[DONE]``, so a stream that
        stops without it was cut (a close-delimited body shows no transport error);
        llama-server's raw ``/completion`` ends with ``stop: true`` instead."""
        url = self.url(path)
        yielded = in_body = False
        try:
            with contextlib.closing(self._send(url, body, stream=True)) as response:
                if opened is not None:
                    opened(response)  # e.g. to close it from another thread on cancel
                self._check_status(response, url)
                # Headers are in: from here on the read timeout is the between-chunks one.
                # httpcore reads this dict when the body is first iterated.
                timeouts = response.request.extensions.get("timeout")
                if isinstance(timeouts, dict):
                    timeouts["read"] = self.chunk_timeout
                in_body = True
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    whole = self._json_body(response.read(), url)
                    self._check_event(whole, url)
                    yield whole
                    return
                parser = SSEParser(self.provider_id, url)
                last_event = time.monotonic()
                for chunk in response.iter_bytes():
                    # After [DONE] the body is still read to its end (the final empty
                    # chunk), or httpx would drop the connection instead of pooling it.
                    events = list(parser.feed(chunk))
                    if events:
                        last_event = time.monotonic()
                    elif not parser.done and time.monotonic() - last_event > self.chunk_timeout:
                        # Keep-alive comments reset the socket's read timeout; a stream
                        # of nothing but comments is as stalled as a silent one.
                        raise self._fail(
                            f"the stream stalled: only keep-alives for {self.chunk_timeout:g}s",
                            url,
                            "The generation may be stuck; check the server's log.",
                            retryable=not yielded,
                        )
                    for event in events:
                        self._check_event(event, url)
                        yielded = True
                        yield event
                for event in parser.close():
                    self._check_event(event, url)
                    yielded = True
                    yield event
                if not yielded:
                    # llama-cpp-python's server answers a too-long streamed prompt with a
                    # 200 and an empty body; a silent empty reply must not pass as one.
                    raise self._fail(
                        "the stream ended with no event",
                        url,
                        "The prompt may exceed the server's context window (its log says); "
                        f"check models.providers.{self.provider_id}.models[].contextWindow.",
                    )
                if require_done and not parser.done:
                    # Never retryable: part of the reply was already yielded.
                    raise self._fail(
                        "the stream ended before [DONE]: the reply was cut mid-way",
                        url,
                        "The server may have crashed or restarted; check its log.",
                    )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url, streamed=yielded, in_body=in_body) from exc

    def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, body)

    def get_json(self, path: str) -> dict[str, Any]:
        return self._request("GET", path, None)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        url = self.url(path)
        try:
            response = self._send(url, body, method=method)
            self._check_status(response, url)
            return self._json_body(response.content, url)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url, streamed=False) from exc

    def _send(
        self, url: str, body: dict[str, Any] | None, *, method: str = "POST", stream: bool = False
    ) -> httpx.Response:
        """Send once more on a new connection if a pooled keep-alive one turns out
        closed: the server dropped it while idle (llama-server does after a few
        seconds) and never saw the request, so sending it again is safe."""
        request = self._client.build_request(method, url, json=body)
        try:
            return self._client.send(request, stream=stream)
        except httpx.RemoteProtocolError:
            return self._client.send(
                self._client.build_request(method, url, json=body), stream=stream
            )

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.first_byte_timeout,
            write=self.first_byte_timeout,
            pool=self.connect_timeout,
        )

    # --- failures -------------------------------------------------------------

    def _fail(
        self,
        what: str,
        url: str,
        hint: str,
        *,
        retryable: bool = False,
        retry_after: float = 0.0,
        status: int = 0,
    ) -> UpstreamError:
        return UpstreamError(
            f"upstream {self.provider_id!r}: {what} ({url})",
            hint=hint,
            retryable=retryable,
            retry_after=retry_after,
            status=status,
        )

    def _check_status(self, response: httpx.Response, url: str) -> None:
        status = response.status_code
        if status < 400:
            return
        text = response.read().decode("utf-8", errors="replace")
        detail = error_detail(text)
        # Only a request error is an overflow: a 5xx "failed to allocate KV cache for
        # context length N" is the server's problem, to retry or fall back from.
        if is_request_overflow(status, text):
            raise UpstreamContextOverflowError(
                f"upstream {self.provider_id!r}: the prompt exceeds the model's context "
                f"(HTTP {status}: {detail}) ({url})",
                hint="The session is compacted and the turn retried once; if it persists, "
                "raise the server's context size or lower contextWindow in openclaw.json.",
            )
        p = self.provider_id
        what = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
        if status in (401, 403):
            raise self._fail(
                what,
                url,
                f"Check models.providers.{p}.apiKey (and the variable it names).",
                status=status,
            )
        if status == 404:
            raise self._fail(
                what,
                url,
                f"Wrong path or model: check models.providers.{p}.baseUrl "
                "(usually ending in /v1) and the model id.",
                status=status,
            )
        if status in (429, 503):
            after = parse_retry_after(response.headers.get("retry-after"))
            busy = "rate limited" if status == 429 else "unavailable (overloaded or loading)"
            raise self._fail(
                f"{busy}, {what}",
                url,
                "Retried with backoff; if it persists, lower the load "
                "or add a fallback in agents.defaults.model.fallbacks.",
                retryable=True,
                retry_after=after,
                status=status,
            )
        if status >= 500:
            raise self._fail(
                f"server error, {what}",
                url,
                "Check the server's log.",
                retryable=True,
                status=status,
            )
        raise self._fail(
            what, url, "The server rejected the request; check the server's log.", status=status
        )

    def _check_event(self, event: dict[str, Any], url: str) -> None:
        """Servers report errors mid-stream as an event with an ``error`` member."""
        error = event.get("error")
        if error is None:
            return
        text = json.dumps(error) if not isinstance(error, str) else error
        if is_overflow(text):
            raise UpstreamContextOverflowError(
                f"upstream {self.provider_id!r}: the prompt exceeds the model's context "
                f"({error_detail(json.dumps(event))}) ({url})",
                hint="The session is compacted and the turn retried once.",
            )
        raise self._fail(
            f"error in the stream: {error_detail(json.dumps(event))}",
            url,
            "Check the server's log.",
        )

    def _json_body(self, content: bytes, url: str) -> dict[str, Any]:
        try:
            value = json.loads(content)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise self._fail(
                f"the reply is not a JSON object: {content[:120]!r}",
                url,
                _BASEURL_HINT.format(p=self.provider_id) + " It must be OpenAI-compatible.",
            )
        return value

    def _transport_error(
        self, exc: httpx.HTTPError, url: str, *, streamed: bool, in_body: bool = False
    ) -> UpstreamError:
        p = self.provider_id
        base_hint = _BASEURL_HINT.format(p=p)
        if isinstance(exc, httpx.PoolTimeout):
            # Not the network: every pooled connection is held, usually by a reply
            # stream nobody finished or closed.
            return self._fail(
                "no free connection in the daemon's pool",
                url,
                "Too many requests to this provider at once; each stream must be read to "
                "its end or closed.",
                retryable=True,
            )
        if isinstance(exc, httpx.ConnectTimeout):
            return self._fail(
                f"timed out connecting after {self.connect_timeout:g}s",
                url,
                f"Is the host reachable? {base_hint}",
                retryable=True,
            )
        if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
            if streamed:
                return self._fail(
                    f"the stream stalled: no data for {self.chunk_timeout:g}s between chunks",
                    url,
                    f"The server may be overloaded; raise models.providers.{p}."
                    "timeoutSeconds or check the server's log.",
                )
            if in_body:
                return self._fail(
                    f"no event within {self.chunk_timeout:g}s after the response headers",
                    url,
                    f"The server may be busy with a long prompt; raise models.providers.{p}."
                    "timeoutSeconds or check the server's log.",
                    retryable=True,
                )
            return self._fail(
                f"no reply within {self.first_byte_timeout:g}s",
                url,
                f"The server may be busy with a long prompt; raise models.providers.{p}."
                "timeoutSeconds or check the server's log.",
                retryable=True,
            )
        if isinstance(exc, httpx.ConnectError):
            cause = _root_cause(exc)
            if isinstance(cause, ConnectionRefusedError):
                return self._fail(
                    "connection refused",
                    url,
                    "Is the server running? Start it with, "
                    "for example, `llama-server -m MODEL.gguf --port PORT` or "
                    f"`vllm serve MODEL --port PORT`. {base_hint}",
                )
            if isinstance(cause, socket.gaierror):
                return self._fail(
                    f"cannot resolve the host name ({cause})",
                    url,
                    f"Check the host name in models.providers.{p}.baseUrl, and your DNS.",
                )
            if isinstance(cause, ssl.SSLError):
                return self._fail(
                    f"TLS error ({cause})",
                    url,
                    "Check the certificate, or use http:// "
                    f"if the server does not speak TLS. {base_hint}",
                )
            return self._fail(f"cannot connect ({exc})", url, base_hint, retryable=True)
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            return self._fail(
                f"the connection was cut mid-reply ({exc})",
                url,
                "The server may have crashed or restarted; check its log.",
                retryable=not streamed,
            )
        return self._fail(f"HTTP failure ({exc!r})", url, base_hint, retryable=not streamed)


def _root_cause(exc: BaseException) -> BaseException:
    """The OSError under httpx's and httpcore's wrappers."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            break
        exc = nxt
        if isinstance(exc, ssl.SSLError | socket.gaierror | ConnectionRefusedError):
            return exc
    return exc
