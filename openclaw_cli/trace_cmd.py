"""``openclaw trace last | show TURN | list``: stored turn traces, as charts or JSON.

Reads ``$STATE/traces/turns.jsonl`` directly, so it works with the daemon
stopped. Records are the ``turn_record`` format documented in docs/tracing.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from openclaw_cli import render
from openclaw_cli.trace_view import short_session
from openclaw_cli.turn_stats import matches_session
from openclaw_daemon import config
from openclaw_daemon.errors import BadRequestError, NotFoundError
from openclaw_daemon.tracing import TurnLog


def load(session: str | None = None) -> list[dict[str, Any]]:
    records = TurnLog(config.resolve_paths().turns_file).read(limit=None)
    records = [r for r in records if isinstance(r.get("spans"), list) and "turnId" in r]
    if session:
        records = [r for r in records if matches_session(r, session)]
    return records


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
    found = [r for r in records if str(r["turnId"]).startswith(turn)]
    if not found:
        raise NotFoundError(
            f"no recorded turn {turn!r}", hint="List the recorded turns with: openclaw trace list"
        )
    if len({r["turnId"] for r in found}) > 1:
        raise BadRequestError(
            f"{turn!r} matches {len(found)} turns", hint="Give more of the turn id."
        )
    return found[-1]


def show(record: dict[str, Any], *, json_out: bool, svg: Path | None) -> None:
    if svg is not None:
        from openclaw_cli import trace_svg

        svg.write_text(trace_svg.render(record), encoding="utf-8")
        render.notice(f"wrote {svg}")
    if json_out:
        render.print_json(record)
    elif svg is None or sys.stdout.isatty():
        from openclaw_cli import trace_view

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

    table = Table(box=None, pad_edge=False, collapse_padding=True, header_style="bold")
    table.add_column("turn", no_wrap=True)
    table.add_column("time", no_wrap=True)
    table.add_column("session", no_wrap=True, max_width=14, overflow="ellipsis")
    for column in ("wall ms", "ttft ms", "resid ms"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("tier", no_wrap=True)
    for column in ("prompt", "cached", "out"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in records:
        usage = r.get("usage") or {}
        ttft = r.get("ttftMs")
        table.add_row(
            str(r["turnId"]),
            time.strftime("%H:%M:%S", time.localtime(r.get("at", 0))),
            short_session(r),
            f"{r['wallMs']:,.0f}",
            f"{ttft:,.0f}" if ttft is not None else "-",
            f"{r['residualMs']:,.0f}",
            str((r.get("cache") or {}).get("tier", "-")),
            f"{usage.get('input', 0):,}",
            f"{usage.get('cacheRead', 0):,}",
            f"{usage.get('output', 0):,}",
        )
    Console(highlight=False).print(table)
