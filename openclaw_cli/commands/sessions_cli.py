"""``openclaw sessions``: the typer commands (their bodies are in ``sessions``).

Bare ``openclaw sessions`` lists, as OpenClaw's does, with the same options as
``sessions list``.
"""

from __future__ import annotations

from typing import Annotated

import typer

sessions_app = typer.Typer(
    help="List, show, compact, reset, delete and export stored sessions "
    "(bare `openclaw sessions` lists them).",
    invoke_without_command=True,
)

_AGENT_HELP = "Agent id."
_LIMIT_HELP = "Most sessions to show, newest first (default: 100; all: every one)."
_ACTIVE_HELP = "Only sessions updated within the past MINUTES."
_ALL_AGENTS_HELP = "Sessions of every agent in the state dir."


def _limit(raw: str) -> int | None:
    if raw.strip().lower() == "all":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise typer.BadParameter(
            f"must be a number or all, not {raw!r}", param_hint="--limit"
        ) from None
    if value < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--limit")
    return value


def _list(agent_id: str, json_out: bool, limit: str, active: int | None, all_agents: bool) -> None:
    from openclaw_cli.commands import sessions as sessions_cmd

    sessions_cmd.list_sessions(
        agent_id,
        json_out=json_out,
        limit=_limit(limit),
        active_minutes=active,
        all_agents=all_agents,
    )


# The listing's options, once: bare `openclaw sessions` and `sessions list` take them.
AgentOpt = Annotated[str, typer.Option("--agent", help=_AGENT_HELP)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
LimitOpt = Annotated[str, typer.Option("--limit", metavar="N|all", help=_LIMIT_HELP)]
ActiveOpt = Annotated[
    int | None, typer.Option("--active", min=1, metavar="MINUTES", help=_ACTIVE_HELP)
]
AllAgentsOpt = Annotated[bool, typer.Option("--all-agents", help=_ALL_AGENTS_HELP)]


@sessions_app.callback()
def sessions_default(
    ctx: typer.Context,
    agent_id: AgentOpt = "main",
    json_out: JsonOpt = False,
    limit: LimitOpt = "100",
    active: ActiveOpt = None,
    all_agents: AllAgentsOpt = False,
) -> None:
    if ctx.invoked_subcommand is None:
        _list(agent_id, json_out, limit, active, all_agents)


@sessions_app.command("list")
def sessions_list(
    agent_id: AgentOpt = "main",
    json_out: JsonOpt = False,
    limit: LimitOpt = "100",
    active: ActiveOpt = None,
    all_agents: AllAgentsOpt = False,
) -> None:
    """List the agent's sessions, newest first."""
    _list(agent_id, json_out, limit, active, all_agents)


@sessions_app.command("show")
def sessions_show(
    session_id: str = typer.Argument(..., help="Session id or key."),
    agent_id: str = typer.Option("main", "--agent", help="Agent id."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one session's transcript."""
    from openclaw_cli.commands import sessions as sessions_cmd

    sessions_cmd.show_session(session_id, agent_id, json_out=json_out)


@sessions_app.command("compact")
def sessions_compact(
    session_id: str = typer.Argument(..., help="Session id or key."),
    instructions: str | None = typer.Option(
        None, "--instructions", help="Extra guidance for the summary."
    ),
    agent_id: str = typer.Option("main", "--agent", help="Agent id."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Summarise a session's older turns now; the next turn stays a cache hit."""
    from openclaw_cli.commands import sessions as sessions_cmd

    sessions_cmd.compact_session(session_id, agent_id, instructions, json_out=json_out)


@sessions_app.command("check-tape")
def sessions_check_tape(
    session_id: str | None = typer.Argument(None, help="Session id or key (default: all)."),
    agent_id: str = typer.Option("main", "--agent", help="Agent id."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check that a session's token tape spells exactly its transcript (exit 1 if not)."""
    from openclaw_cli.commands import sessions as sessions_cmd

    raise typer.Exit(sessions_cmd.check_tape(session_id, agent_id, json_out=json_out))


@sessions_app.command("delete")
def sessions_delete(
    session_id: str = typer.Argument(..., help="Session id or key."),
    agent_id: str = typer.Option("main", "--agent", help=_AGENT_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Unlist a session; its transcript is kept aside as <id>.jsonl.deleted.<time>.

    Its KV states stay in the content-addressed cache until evicted (or `openclaw
    cache clear`)."""
    from openclaw_cli.commands import sessions as sessions_cmd

    sessions_cmd.delete_session(session_id, agent_id, json_out=json_out)


@sessions_app.command("reset")
def sessions_reset(
    session_id: str = typer.Argument(..., help="Session id or key."),
    agent_id: str = typer.Option("main", "--agent", help=_AGENT_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Start a new, empty session under the same key (as OpenClaw's /reset); the old
    transcript is kept."""
    from openclaw_cli.commands import sessions as sessions_cmd

    sessions_cmd.reset_session(session_id, agent_id, json_out=json_out)


@sessions_app.command("export")
def sessions_export(
    session_id: str = typer.Argument(..., help="Session id or key."),
    fmt: str = typer.Option(
        "jsonl", "--format", metavar="jsonl|md", help="jsonl (the transcript as stored) or md."
    ),
    output: str | None = typer.Option(
        None, "-o", "--output", metavar="PATH", help="Write here instead of stdout."
    ),
    agent_id: str = typer.Option("main", "--agent", help=_AGENT_HELP),
) -> None:
    """Print or write a session's transcript, as OpenClaw's JSONL or as Markdown."""
    from openclaw_cli.commands import sessions as sessions_cmd

    if fmt not in ("jsonl", "md"):
        raise typer.BadParameter("must be jsonl or md", param_hint="--format")
    sessions_cmd.export_session(session_id, agent_id, fmt, output)
