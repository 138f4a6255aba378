"""A turn's trace as a Gantt chart in the terminal (rich).

One row per span, in start order: its name, start and duration in ms, tokens,
and a bar placed on the turn's wall-clock axis, coloured by scope (process,
request, prompt, model, tool) as in the reference figure. A span shorter than
one cell still gets a thin mark, so nothing that happened is invisible; the
first token is marked on the decode bar. ``trace_svg`` draws the same chart.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

SCOPE_STYLES = {
    "process": "magenta",
    "request": "yellow",
    "prompt": "cyan",
    "model": "green",
    "tool": "blue",
}
FIRST_TOKEN_MARK = "▼"
_THIN = "▏"
_FIXED_COLUMNS = 16 + 9 + 9 + 7 + 4  # name, start, duration, tokens, padding


def stderr_console() -> Console:
    return Console(file=sys.stderr, highlight=False)


def headline(record: dict[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("at", 0)))
    ttft = record.get("ttftMs")
    ttft_text = f"first token {ttft:,.1f} ms" if ttft is not None else "no token"
    return (
        f"turn {record['turnId']}  session {short_session(record)}  {stamp}\n"
        f"model {record.get('model', '')}\nwall {record['wallMs']:,.1f} ms  {ttft_text}  "
        f"residual {record['residualMs']:,.1f} ms  covered {record['coverage']:.1%}"
        + ("" if record["origin"] == "process start" else "  (daemon side only)")
    )


def short_session(record: dict[str, Any]) -> str:
    """The session as users name it: the key without ``agent:<id>:`` (``main``, ``work``)."""
    key = str(record.get("sessionKey") or "")
    prefix = f"agent:{record.get('agentId', 'main')}:"
    return key[len(prefix) :] if key.startswith(prefix) else str(record.get("sessionId"))


def cache_line(record: dict[str, Any]) -> str:
    cache = record.get("cache") or {}
    usage = record.get("usage") or {}
    tokens = (
        f"{usage.get('input', 0):,} prompt tokens ({usage.get('cacheRead', 0):,} cached, "
        f"{usage.get('cacheWrite', 0):,} prefilled), {usage.get('output', 0):,} generated"
    )
    summary = cache.get("summary")
    return f"cache: {summary}\ntokens: {tokens}" if summary else f"tokens: {tokens}"


def span_tokens(span: dict[str, Any]) -> str:
    tokens = span.get("tokens")
    return f"{tokens:,}" if isinstance(tokens, int) else ""


def bar(span: dict[str, Any], wall_ms: float, width: int) -> Text:
    """The span's bar on a ``width``-cell axis from 0 to ``wall_ms``."""
    style = SCOPE_STYLES.get(span.get("scope", ""), "white")
    scale = width / wall_ms if wall_ms > 0 else 0.0
    start = float(span["startMs"])
    end = start + float(span["durationMs"])
    first = min(width - 1, max(0, int(start * scale)))
    last = min(width, max(first + 1, round(end * scale)))
    cells = ["█"] * (last - first) if float(span["durationMs"]) * scale >= 0.5 else [_THIN]
    mark = span.get("firstTokenMs")
    if mark is not None:
        index = min(width - 1, max(0, int(float(mark) * scale))) - first
        if 0 <= index < len(cells):
            cells[index] = FIRST_TOKEN_MARK
        elif index >= len(cells):
            cells += [" "] * (index - len(cells)) + [FIRST_TOKEN_MARK]
    text = Text(" " * first)
    for cell in cells:
        text.append(cell, style="bold red" if cell == FIRST_TOKEN_MARK else style)
    return text


def axis(wall_ms: float, width: int) -> Text:
    """Tick labels from 0 to the wall time, as many as fit with a gap between them."""
    end_label = f"{wall_ms:,.0f} ms"
    line = [" "] * width
    free_until = width - len(end_label) - 1  # the end label is right-aligned
    at_least = 0
    for fraction in (0.0, 0.25, 0.5, 0.75):
        label = f"{wall_ms * fraction:,.0f}"
        at = int(fraction * width)
        if at < at_least or at + len(label) > free_until:
            continue
        line[at : at + len(label)] = label
        at_least = at + len(label) + 2
    line[width - len(end_label) :] = end_label
    return Text("".join(line), style="dim")


def chart(record: dict[str, Any], width: int) -> Table:
    bar_width = max(20, width - _FIXED_COLUMNS)
    wall = float(record["wallMs"])
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    table.add_column("phase", no_wrap=True)
    table.add_column("start ms", justify="right", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column(axis(wall, bar_width), no_wrap=True, min_width=bar_width)
    for span in record["spans"]:
        style = SCOPE_STYLES.get(span.get("scope", ""), "white")
        table.add_row(
            Text(span["name"], style=style),
            f"{span['startMs']:,.1f}",
            f"{span['durationMs']:,.1f}",
            span_tokens(span),
            bar(span, wall, bar_width),
        )
    return table


def legend() -> Text:
    text = Text("scopes: ")
    for scope, style in SCOPE_STYLES.items():
        text.append("█ ", style=style)
        text.append(f"{scope}  ")
    text.append(FIRST_TOKEN_MARK, style="bold red")
    text.append(" first token")
    return text


def print_chart(record: dict[str, Any], *, console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    console.print(headline(record), style="bold")
    console.print(chart(record, console.width))
    console.print(legend())
    console.print(cache_line(record))
