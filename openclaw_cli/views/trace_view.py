"""A turn's trace as a Gantt chart in the terminal (rich).

One row per span, in start order: its name, start and duration in ms, tokens,
and a bar placed on the turn's wall-clock axis, coloured by scope (process,
request, prompt, model, tool) as in the reference figure. A span shorter than
one cell still gets a thin mark, so nothing that happened is invisible; the
first token is marked on the decode bar. ``trace_svg`` draws the same chart.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from openclaw_daemon.observability.turn_record import prompt_tokens

SCOPE_STYLES = {
    "process": "magenta",
    "request": "yellow",
    "prompt": "cyan",
    "model": "green",
    "tool": "blue",
}
# Distinct glyphs for when there is no colour (a pipe, NO_COLOR).
SCOPE_GLYPHS = {
    "process": "▓",
    "request": "▒",
    "prompt": "░",
    "model": "█",
    "tool": "▚",
}
FIRST_TOKEN_MARK = "▼"
_THIN = "▏"


def stderr_console() -> Console:
    return Console(file=sys.stderr, highlight=False)


def headline(record: Mapping[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("at", 0)))
    ttft = record.get("ttftMs")
    # The first token the user saw (for a tool turn, of the answer after the tools).
    # Kept short: the line must fit 80 columns with a minute-long wall time.
    ttft_text = f"first token {ttft:,.1f} ms" if ttft is not None else "no visible token"
    status = record.get("status", "ok")
    lines = [
        f"turn {record['turnId']}  session {short_session(record)}  {stamp}",
        f"model {record.get('model', '')}",
        f"wall {record['wallMs']:,.1f} ms  {ttft_text}  residual {record['residualMs']:,.1f} ms"
        f"  covered {record.get('coverage', 0.0):.1%}"
        + ("" if record.get("origin") == "process start" else "  (daemon side only)"),
    ]
    if status != "ok":
        lines.append(f"ended: {status}: {record.get('error', '')}")
    return "\n".join(lines)


def short_session(record: Mapping[str, Any]) -> str:
    """The session as users name it (``main``, or what ``--session-id`` gave)."""
    key = str(record.get("sessionKey") or "")
    agent = f"agent:{record.get('agentId', 'main')}:"
    for prefix in (f"{agent}explicit:", agent):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return str(record.get("sessionId"))


def cache_line(record: Mapping[str, Any]) -> str:
    cache = record.get("cache") or {}
    usage = record.get("usage") or {}
    tokens = (
        f"{prompt_tokens(usage):,} prompt tokens ({usage.get('cacheRead', 0):,} cached, "
        f"{usage.get('input', 0):,} prefilled), {usage.get('output', 0):,} generated"
    )
    summary = cache.get("summary")
    lines = [f"cache: {summary}"] if summary else []
    lines.append(f"tokens: {tokens}")
    for span in record.get("spans", []):
        if span.get("name") == "lane.wait" and span.get("behind"):
            lines.append(
                f"lane.wait: {span.get('durationMs', 0):,.1f} ms behind "
                + ", ".join(str(label) for label in span["behind"])
            )
        if span.get("name") == "model.decode" and span.get("sharedSteps"):
            lines.append(
                f"model.decode: {span['sharedSteps']:,} of {span.get('steps', 0):,} steps "
                f"shared with other turns (up to {span.get('mostSequences', 2)} sequences a step)"
            )
    return "\n".join(lines)


def span_tokens(span: dict[str, Any]) -> str:
    tokens = span.get("tokens")
    return f"{tokens:,}" if isinstance(tokens, int) else ""


def bar(span: dict[str, Any], wall_ms: float, width: int, *, plain: bool = False) -> Text:
    """The span's bar on a ``width``-cell axis from 0 to ``wall_ms``."""
    scope = span.get("scope", "")
    style = SCOPE_STYLES.get(scope, "white")
    block = SCOPE_GLYPHS.get(scope, "█") if plain else "█"
    scale = width / wall_ms if wall_ms > 0 else 0.0
    start = float(span["startMs"])
    end = start + float(span["durationMs"])
    first = min(width - 1, max(0, int(start * scale)))
    last = min(width, max(first + 1, round(end * scale)))
    cells = [block] * (last - first) if float(span["durationMs"]) * scale >= 0.5 else [_THIN]
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


def nice_step(span_ms: float, ticks: int = 5) -> float:
    """A round tick spacing (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks."""
    if span_ms <= 0:
        return 1.0
    raw = span_ms / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)


def axis(wall_ms: float, width: int) -> Text:
    """Round tick labels from 0, as many as fit, and the wall time at the end."""
    end_label = f"{wall_ms:,.0f} ms"
    line = [" "] * max(width, len(end_label))
    free_until = len(line) - len(end_label) - 1  # the end label is right-aligned
    step = nice_step(wall_ms, ticks=max(1, width // 12))
    at_least = 0
    tick = 0.0
    while tick < wall_ms:
        label = f"{tick:,.0f}"
        at = int(tick / wall_ms * width) if wall_ms > 0 else 0
        if at >= at_least and at + len(label) <= free_until:
            line[at : at + len(label)] = label
            at_least = at + len(label) + 2
        tick += step
    line[len(line) - len(end_label) :] = end_label
    return Text("".join(line), style="dim")


def chart(record: Mapping[str, Any], width: int, *, plain: bool = False) -> Table:
    wall = float(record["wallMs"])
    rows = [
        (
            span,
            f"{span['startMs']:,.1f}",
            f"{span['durationMs']:,.1f}",
            span_tokens(span),
        )
        for span in record["spans"]
    ]
    # The text columns keep their full width; the bar gets what is left.
    fixed = sum(
        max(len(header), *(len(str(row[i] if i else row[0]["name"])) for row in rows)) + 1
        for i, header in ((0, "phase"), (1, "start ms"), (2, "ms"), (3, "tokens"))
    )
    bar_width = max(10, width - fixed - 1)
    table = Table(box=None, pad_edge=False, show_edge=False, collapse_padding=True)
    table.add_column("phase", no_wrap=True)
    table.add_column("start ms", justify="right", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column(axis(wall, bar_width), no_wrap=True, min_width=bar_width)
    for span, start, duration, tokens in rows:
        style = SCOPE_STYLES.get(span.get("scope", ""), "white")
        table.add_row(
            Text(span["name"], style=style),
            start,
            duration,
            tokens,
            bar(span, wall, bar_width, plain=plain),
        )
    return table


def legend(*, plain: bool = False) -> Text:
    text = Text("scopes: ")
    for scope, style in SCOPE_STYLES.items():
        text.append(f"{SCOPE_GLYPHS[scope] if plain else '█'} ", style=style)
        text.append(f"{scope}  ")
    text.append(FIRST_TOKEN_MARK, style="bold red")
    text.append(" first token")
    return text


def print_chart(record: Mapping[str, Any], *, console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    # Without colour the scopes differ by glyph instead.
    plain = console.color_system is None
    # Record text (model names, cache snippets) is printed as is, never as markup.
    console.print(Text(headline(record), style="bold"))
    console.print(chart(record, console.width, plain=plain))
    console.print(legend(plain=plain))
    console.print(Text(cache_line(record)))
