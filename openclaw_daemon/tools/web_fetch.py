"""The web_fetch tool: GET an http(s) URL, with size, time and content-type limits.

HTML is reduced to its visible text (scripts, styles and tags dropped); other
text types come back as they are. Binary content is refused.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from openclaw_daemon.errors import ToolError

TIMEOUT_S = 15.0
MAX_BYTES = 2 << 20
MAX_REDIRECTS = 5
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


def fetch(args: dict[str, Any]) -> str:
    import httpx  # only when a turn fetches: not on the daemon's start-up path

    url = args.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ToolError(f"web_fetch takes http(s) URLs only, not {url!r}")
    try:
        with (
            httpx.Client(
                timeout=TIMEOUT_S, follow_redirects=True, max_redirects=MAX_REDIRECTS
            ) as client,
            client.stream("GET", url, headers={"User-Agent": "openclaw-edge"}) as response,
        ):
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind and not kind.startswith(TEXT_TYPES):
                raise ToolError(f"{url} is {kind}, not text; refused")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise ToolError(f"{url} is larger than {MAX_BYTES} bytes; refused")
            status = response.status_code
            text = body.decode(response.encoding or "utf-8", errors="replace")
    except httpx.HTTPError as exc:
        raise ToolError(f"fetching {url} failed: {exc}") from exc
    if "html" in kind:
        text = html_text(text)
    if status >= 400:
        raise ToolError(f"HTTP {status} from {url}\n{text[:2000]}")
    return text
