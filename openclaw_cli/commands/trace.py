"""``openclaw trace last | show TURN | list``: stored turn traces, as charts or JSON.

Reads ``$STATE/traces/turns.jsonl`` directly, so it works with the daemon
stopped. Records are the ``turn_record`` format documented in docs/tracing.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from openclaw_cli.views import render
from openclaw_cli.views.trace_view import short_session
from openclaw_cli.views.turn_stats import matches_session
from openclaw_daemon import config
from openclaw_daemon.observability.tracing import TurnLog
from openclaw_daemon.observability.turn_record import prompt_tokens
from openclaw_daemon.wire import ids
from openclaw_daemon.wire.errors import BadRequestError, NotFoundError, OpenClawError

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "turnId": str,
    "at": (int, float),
    "wallMs": (int, float),
    "residualMs": (int, float),
}


def well_formed(record: dict[str, Any]) -> bool:
    """A record this version can draw: older or damaged ones are skipped."""
    if not all(isinstance(record.get(key), kind) for key, kind in _REQUIRED.items()):
        return False
    spans = record.get("spans")
    return isinstance(spans, list) and all(
        isinstance(s, dict)
        and isinstance(s.get("name"), str)
        and isinstance(s.get("startMs"), (int, float))
        and isinstance(s.get("durationMs"), (int, float))
        for s in spans
    )


def load(session: str | None = None) -> list[dict[str, Any]]:
    """Stored records, oldest first by when the turn ended."""
    session = ids.optional_session_ref(session, field="--session")
    records = TurnLog(config.resolve_paths().turns_file).read(limit=None)
    records = [r for r in records if well_formed(r)]
    if session:
        records = [r for r in records if matches_session(r, session)]
    # Stored when the CLI reported (or a few seconds later without a report),
    # so file order can differ slightly from turn order.
    return sorted(records, key=lambda r: r["at"])


def _none_yet(session: str | None) -> NotFoundError:
    where = f" for session {session}" if session else ""
    return NotFoundError(
        f"no turns recorded yet{where}",
        hint="Run one with: openclaw agent --local -m 'hello'",
    )


def find(turn: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """A turn by id or unique id prefix (``last`` for the newest)."""
    if turn == "last":
        if not records:
            raise _none_yet(None)
        return records[-1]
    prefix = ids.turn_id(turn)
    found = [r for r in records if str(r["turnId"]).startswith(prefix)]
    if not found:
        raise NotFoundError(
            f"no recorded turn {turn!r}", hint="List the recorded turns with: openclaw trace list"
        )
    matching = sorted({r["turnId"] for r in found})
    if len(matching) > 1:
        shown = ", ".join(matching[:5]) + (", ..." if len(matching) > 5 else "")
        raise BadRequestError(
            f"{turn!r} matches {len(matching)} turns: {shown}", hint="Give more of the turn id."
        )
    return found[-1]


def write_svg(record: dict[str, Any], svg: Path) -> None:
    """The chart as SVG to a file, or to stdout for ``-``."""
    from openclaw_cli.views import trace_svg

    text = trace_svg.render(record)
    if str(svg) == "-":
        sys.stdout.write(text)
        return
    try:
        svg.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OpenClawError(
            f"cannot write the SVG to {svg}: {exc.strerror or exc}",
            hint="Give a path in a directory you can write to, or - for stdout.",
        ) from exc
    render.notice(f"wrote {svg}")


def show(record: dict[str, Any], *, json_out: bool, svg: Path | None) -> None:
    if json_out and svg is not None and str(svg) == "-":
        raise BadRequestError(
            "--json and --svg - both write to stdout",
            hint="Write the SVG to a file (--svg FILE), or drop --json.",
        )
    if svg is not None:
        write_svg(record, svg)
        if str(svg) == "-":
            return
    if json_out:
        render.print_json(record)
    else:
        from openclaw_cli.views import trace_view

        trace_view.print_chart(record)


def last(*, session: str | None, json_out: bool, svg: Path | None) -> None:
    records = load(session)
    if not records:
        raise _none_yet(session)
    show(records[-1], json_out=json_out, svg=svg)


def show_turn(turn: str, *, json_out: bool, svg: Path | None) -> None:
    show(find(turn, load()), json_out=json_out, svg=svg)


def summary_row(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its spans: what ``trace list --json`` prints per turn."""
    return {key: value for key, value in record.items() if key != "spans"}


def list_turns(*, session: str | None, limit: int, json_out: bool) -> None:
    records = load(session)[-limit:]
    if json_out:
        render.print_json({"turns": [summary_row(r) for r in records]})
        return
    if not records:
        render.notice(str(_none_yet(session).message))
        return
    from rich.console import Console
    from rich.table import Table

    rows = [_list_row(r) for r in records]
    console = Console(highlight=False)
    shown = _columns_that_fit(rows, console.width)
    table = Table(box=None, pad_edge=False, collapse_padding=True, header_style="bold")
    for header, justify, _priority in _LIST_COLUMNS:
        if header in shown:
            table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(row[header] for header in shown))
    console.print(table)


# header, justification, priority (lower: dropped last on a narrow terminal)
_LIST_COLUMNS = (
    ("turn", "left", 0),
    ("time", "left", 6),
    ("session", "left", 3),
    ("wall ms", "right", 1),
    ("ttft ms", "right", 2),
    ("resid ms", "right", 5),
    ("status", "left", 4),
    ("prompt", "right", 8),
    ("cached", "right", 7),
    ("out", "right", 9),
)


def _list_row(r: dict[str, Any]) -> dict[str, str]:
    usage = r.get("usage") or {}
    ttft = r.get("ttftMs")
    status = r.get("status", "ok")
    return {
        "turn": str(r["turnId"]),
        "time": time.strftime("%H:%M:%S", time.localtime(r["at"])),
        "session": short_session(r),
        "wall ms": f"{r['wallMs']:,.0f}",
        "ttft ms": f"{ttft:,.0f}" if ttft is not None else "-",
        "resid ms": f"{r['residualMs']:,.0f}",
        # A finished turn shows its cache tier; a failed one, why it failed.
        "status": str((r.get("cache") or {}).get("tier", "-")) if status == "ok" else status,
        "prompt": f"{prompt_tokens(usage):,}",
        "cached": f"{usage.get('cacheRead', 0):,}",
        "out": f"{usage.get('output', 0):,}",
    }


def _columns_that_fit(rows: list[dict[str, str]], width: int) -> list[str]:
    """The most important columns whose widths fit, in display order."""
    need = {
        header: max([len(header), *(len(row[header]) for row in rows)]) + 1
        for header, _justify, _priority in _LIST_COLUMNS
    }
    chosen: set[str] = set()
    used = 0
    for header, _justify, _priority in sorted(_LIST_COLUMNS, key=lambda c: c[2]):
        if chosen and used + need[header] > width:
            break  # strictly by importance: no stray narrow column past a dropped one
        chosen.add(header)
        used += need[header]
    return [header for header, _justify, _priority in _LIST_COLUMNS if header in chosen]
