"""A turn's trace as a standalone SVG Gantt chart (``openclaw trace --svg FILE``).

The same chart as the terminal's: one labelled row per span on the turn's
wall-clock axis, bars coloured by scope, the first token marked, the cache
outcome and token counts underneath. Standard library only; every phase name
is a text element, so the file is searchable and testable.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape as _escape_text

from openclaw_cli.views.trace_view import cache_line, headline, nice_step, span_tokens

SCOPE_COLOURS = {
    "process": "#9b59b6",
    "request": "#e0a526",
    "prompt": "#2a9fd6",
    "model": "#3aa655",
    "tool": "#3461c1",
}
_WIDTH = 1000
_LABEL_W = 300
_RIGHT_PAD = 30
_ROW_H = 22
_TOP = 78
_FONT = "font-family='ui-monospace,Menlo,Consolas,monospace' font-size='12'"


def escape(text: str) -> str:
    """Safe in text and in single- or double-quoted attributes."""
    return _escape_text(text, {"'": "&apos;", '"': "&quot;"})


def _text(x: float, y: float, body: str, extra: str = "") -> str:
    return f"<text x='{x:.1f}' y='{y:.1f}' {_FONT} {extra}>{escape(body)}</text>"


def render(record: dict[str, Any]) -> str:
    spans = record["spans"]
    wall = max(float(record["wallMs"]), 1e-3)
    scale = (_WIDTH - _LABEL_W - _RIGHT_PAD) / wall  # px per ms
    notes = cache_line(record).splitlines()
    rows_end = _TOP + len(spans) * _ROW_H
    height = rows_end + 52 + 16 * len(notes)
    out = _header(record, height)
    out += _axis(wall, scale, rows_end)
    for row, span in enumerate(spans):
        out += _span_row(_TOP + row * _ROW_H, span, scale)
    out += _legend_and_notes(rows_end + 24, notes)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _header(record: dict[str, Any], height: int) -> list[str]:
    """The SVG's opening, its title, a white page and the headline lines."""
    out = [
        "<?xml version='1.0' encoding='UTF-8'?>",
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_WIDTH}' height='{height}' "
        f"viewBox='0 0 {_WIDTH} {height}'>",
        f"<title>{escape('OpenClaw turn ' + str(record['turnId']))}</title>",
        f"<rect width='{_WIDTH}' height='{height}' fill='white'/>",
    ]
    for index, line in enumerate(headline(record).splitlines()):
        weight = "font-weight='bold'" if index == 0 else ""
        out.append(_text(12, 20 + 16 * index, line, f"xml:space='preserve' {weight}"))
    return out


def _axis(wall: float, scale: float, rows_end: int) -> list[str]:
    """The millisecond ticks above the rows, each with a grid line down to the last row."""
    out = []
    axis_y = _TOP - 10
    step = nice_step(wall)
    tick = 0.0
    while tick <= wall + 1e-9:
        x = _LABEL_W + tick * scale
        out.append(
            f"<line x1='{x:.1f}' y1='{axis_y}' x2='{x:.1f}' y2='{rows_end}' stroke='#e4e4e4'/>"
        )
        out.append(_text(x, axis_y - 4, f"{tick:,.0f}", "text-anchor='middle' fill='#666'"))
        tick += step
    out.append(_text(_WIDTH - _RIGHT_PAD, axis_y - 18, "ms", "text-anchor='end' fill='#666'"))
    return out


def _span_row(y: int, span: dict[str, Any], scale: float) -> list[str]:
    """One span: its name, duration and tokens on the left, its bar, the first-token mark."""
    colour = SCOPE_COLOURS.get(span.get("scope", ""), "#888")
    tokens = span_tokens(span)
    out = [
        f"<g class='span' data-name='{escape(span['name'])}'>",
        _text(12, y + 15, span["name"], f"fill='{colour}'"),
        _text(_LABEL_W - 80, y + 15, f"{span['durationMs']:,.1f} ms", "text-anchor='end'"),
    ]
    if tokens:
        out.append(_text(_LABEL_W - 12, y + 15, f"{tokens} tok", "text-anchor='end' fill='#666'"))
    x = _LABEL_W + float(span["startMs"]) * scale
    w = max(1.5, float(span["durationMs"]) * scale)
    out.append(
        f"<rect x='{x:.2f}' y='{y + 4}' width='{w:.2f}' height='{_ROW_H - 8}' "
        f"fill='{colour}'><title>{escape(span['name'])}: start {span['startMs']:,.1f} ms, "
        f"{span['durationMs']:,.1f} ms</title></rect>"
    )
    mark = span.get("firstTokenMs")
    if mark is not None:
        mx = _LABEL_W + float(mark) * scale
        out.append(
            f"<path d='M{mx - 5:.1f},{y + 1} L{mx + 5:.1f},{y + 1} L{mx:.1f},{y + 9} Z' "
            "fill='#d62728'><title>first token</title></path>"
        )
    out.append("</g>")
    return out


def _legend_and_notes(y: int, notes: list[str]) -> list[str]:
    """The scope colours and the first-token mark explained, then the cache notes."""
    out = []
    x = 12.0
    for scope, colour in SCOPE_COLOURS.items():
        out.append(f"<rect x='{x:.1f}' y='{y - 10}' width='12' height='12' fill='{colour}'/>")
        out.append(_text(x + 16, y, f"{scope}-scoped"))
        x += 130
    out.append(f"<path d='M{x:.1f},{y - 10} L{x + 10:.1f},{y - 10} L{x + 5:.1f},{y} Z' "
               "fill='#d62728'/>")  # fmt: skip
    out.append(_text(x + 16, y, "first token"))
    for index, line in enumerate(notes):
        out.append(_text(12, y + 24 + 16 * index, line, "xml:space='preserve'"))
    return out
