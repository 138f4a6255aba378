"""``openclaw stats``: percentiles, rates, cache hits and suggestions from stored turns.

Reads the turn log directly (no daemon needed). The figures come from
``turn_stats.summarize``; ``--json`` prints exactly that dict.
"""

from __future__ import annotations

import time
from typing import Any

from openclaw_cli.commands import trace as trace_cmd
from openclaw_cli.views import render, turn_stats
from openclaw_daemon.wire import ids


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def run(
    *, session: str | None, since: str | None, json_out: bool, agent: str | None = None
) -> None:
    session = ids.optional_session_ref(session, field="--session")
    agent = None if agent is None else ids.agent_id(agent, field="--agent")
    since_s = turn_stats.parse_duration(since) if since is not None else None
    records = trace_cmd.load()
    if agent is not None:  # records before agentId was stored were all the default agent's
        records = [r for r in records if r.get("agentId", ids.DEFAULT_AGENT_ID) == agent]
    records = turn_stats.select(records, session=session, since_s=since_s)
    summary = turn_stats.summarize(records)
    summary["filter"] = {"session": session, "since": since, "agent": agent}
    if json_out:
        render.print_json(summary)
        return
    if not records:
        where = f" for session {session}" if session else ""
        where += f" for agent {agent}" if agent else ""
        window = f" in the last {since_s:g} s" if since_s is not None else ""
        render.notice(f"no turns recorded{where}{window}")
        return
    _print(summary)


def _print(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    start = time.strftime("%Y-%m-%d %H:%M", time.localtime(summary["from"]))
    end = time.strftime("%Y-%m-%d %H:%M", time.localtime(summary["to"]))
    failed = ", ".join(f"{count} {status}" for status, count in summary["failed"].items())
    console.print(
        f"[bold]{_count(summary['turns'], 'turn')}[/bold] in "
        f"{_count(summary['sessions'], 'session')}, {start} to {end}"
        + (f" ({failed})" if failed else ""),
        soft_wrap=True,
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ms", "turns", "p50", "p90", "p99"):
        table.add_column(column, justify="right" if column != "ms" else "left")
    for label, key in (
        ("time to first visible token", "ttftMs"),
        ("turn (wall)", "turnMs"),
        ("framework residual", "residualMs"),
    ):
        row = summary[key]
        table.add_row(label, str(row["count"]), _ms(row["p50"]), _ms(row["p90"]), _ms(row["p99"]))
    console.print(table)
    cache = summary["cache"]
    lookups = ", ".join(f"{tier} {count}" for tier, count in cache["lookups"].items() if count)
    token_rate = cache["tokenHitRate"]
    if cache["hitRate"] is not None:
        console.print(
            f"cache: {cache['hitRate']:.0%} of finished turns hit ({lookups})"
            + (f"; {token_rate:.1%} of prompt tokens read from cache" if token_rate else ""),
            soft_wrap=True,
        )
    engines = ", ".join(f"{name} {count}" for name, count in summary["engines"].items())
    if engines:
        rules = ", ".join(f"{rule} {count}" for rule, count in summary["routes"].items())
        console.print(f"engines: {engines} (routing: {rules})", soft_wrap=True)
    console.print(
        f"model: prefill {summary['prefillTokPerS'] or '-'} tok/s, "
        f"decode {summary['decodeTokPerS'] or '-'} tok/s"
    )
    peak = summary["peakRssBytes"]
    if peak:
        console.print(f"daemon peak RSS: {peak / 2**20:,.0f} MiB")
    phases = Table(box=None, pad_edge=False, header_style="bold", title_justify="left")
    for column in ("phase", "count", "p50 ms", "p90 ms", "p99 ms", "total s"):
        phases.add_column(column, justify="left" if column == "phase" else "right")
    for name, row in sorted(summary["phases"].items(), key=lambda item: -item[1]["totalMs"]):
        phases.add_row(
            name,
            str(row["count"]),
            _ms(row["p50"]),
            _ms(row["p90"]),
            _ms(row["p99"]),
            f"{row['totalMs'] / 1000:,.2f}",
        )
    console.print(phases)
    for tip in summary["suggestions"]:
        # One line each, however narrow the terminal: easy to grep.
        console.print(f"[bold]suggestion:[/bold] {escape(tip)}", soft_wrap=True)
