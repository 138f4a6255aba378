"""The web_fetch tool: GET an http(s) URL, with size, time and content-type limits.

HTML is reduced to its visible text (scripts, styles and tags dropped); other
text types come back as they are. Binary content is refused.

Address policy (as OpenClaw's): loopback, link-local, private (RFC 1918, ULA,
shared 100.64/10), multicast, unspecified and other non-public addresses are
refused unless the turn has ``--allow web_fetch:private``. Each hop (the URL
and every redirect) is resolved once, every address it resolves to is
checked, and the connection goes to the checked address with the name kept
in the Host header and TLS SNI, so a DNS answer that changes between check
and connect (rebinding) cannot move the request. Redirects are followed by
hand for that reason, and proxies from the environment are ignored.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from openclaw_daemon.tools.spec import PRIVATE_FETCH
from openclaw_daemon.wire.errors import ToolError

if TYPE_CHECKING:
    import httpx

TIMEOUT_S = 15.0
MAX_BYTES = 2 << 20
MAX_REDIRECTS = 5
MAX_URL_CHARS = 8192
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml")


class _TextExtractor(HTMLParser):
    _SKIP = {"script", "style", "noscript", "template", "svg", "head"}
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "section"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


Resolver = Callable[[str, int], list[str]]  # (host, port) -> addresses, as text


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives ``host`` (A and AAAA)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ToolError(f"cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def blocked(address: str) -> str | None:
    """Why ``address`` is refused by default (loopback, private, ...), or None."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for test, why in (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip in _SHARED, "private (shared address space)"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not a public address"),
    ):
        if test:
            return why
    return None


_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, not "private" to Python


def _pin(url: str, resolver: Resolver, allow_private: bool) -> tuple[httpx.URL, str, str]:
    """(URL to connect to, Host header, host name) for one hop, its address checked."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ToolError(f"web_fetch cannot parse the URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ToolError(f"web_fetch takes http(s) URLs with a host only, not {url!r}")
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded: what DNS, Host and SNI take
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:  # an address literal needs no lookup
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = resolver(host, port)
    if not addresses:
        raise ToolError(f"cannot resolve {host}")
    if not allow_private:
        for address in addresses:
            why = blocked(address)
            if why:
                raise ToolError(
                    f"{host} resolves to {address} ({why}); web_fetch refuses loopback, "
                    "private, link-local and multicast addresses unless the user reruns "
                    f"with --allow {PRIVATE_FETCH}"
                )
    # Connect to the address just checked, never to a second lookup's answer
    # (DNS rebinding); the Host header and TLS SNI keep the name.
    pinned = parsed.copy_with(host=addresses[0], username=None, password=None)
    netloc = host if ":" not in host else f"[{host}]"
    header = netloc if parsed.port is None else f"{netloc}:{parsed.port}"
    return pinned, header, host


def fetch(
    args: dict[str, Any],
    *,
    allow_private: bool = False,
    resolver: Resolver | None = None,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """GET ``args["url"]``; every hop's resolved address is checked, then connected to."""
    import httpx  # only when a turn fetches: not on the daemon's start-up path

    url = args.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ToolError(f"web_fetch takes http(s) URLs only, not {url!r}")
    if len(url) > MAX_URL_CHARS or any(ord(c) < 0x20 or c == "\x7f" for c in url):
        raise ToolError("web_fetch takes printable URLs of at most 8192 characters only")
    resolve = resolver or system_resolver
    try:
        # No proxies from the environment: a proxy would connect on its own
        # lookup, past the address check.
        with httpx.Client(
            timeout=TIMEOUT_S, follow_redirects=False, trust_env=False, transport=transport
        ) as client:
            current = url
            for _hop in range(MAX_REDIRECTS + 1):
                pinned, host_header, host = _pin(current, resolve, allow_private)
                request = client.build_request(
                    "GET",
                    pinned,
                    headers={"User-Agent": "openclaw-edge", "Host": host_header},
                    extensions={"sni_hostname": host},
                )
                response = client.send(request, stream=True)
                try:
                    if response.is_redirect and "location" in response.headers:
                        current = str(httpx.URL(current).join(response.headers["location"]))
                        continue
                    return _body(current, response)
                finally:
                    response.close()
    except httpx.HTTPError as exc:
        raise ToolError(f"fetching {url} failed: {exc}") from exc
    raise ToolError(f"{url} redirected more than {MAX_REDIRECTS} times; refused")


def _body(url: str, response: httpx.Response) -> str:
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and not kind.startswith(TEXT_TYPES):
        raise ToolError(f"{url} is {kind}, not text; refused")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_BYTES:
            raise ToolError(f"{url} is larger than {MAX_BYTES} bytes; refused")
    text = body.decode(response.encoding or "utf-8", errors="replace")
    if "html" in kind:
        text = html_text(text)
    if response.status_code >= 400:
        raise ToolError(f"HTTP {response.status_code} from {url}\n{text[:2000]}")
    return text
