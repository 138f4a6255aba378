"""The typer app: every ``openclaw`` command but the hot ``agent`` path.

Command bodies import what they need when they run. ``openclaw_cli.main.run``
handles errors for all commands and dispatches ``agent`` without importing
this module (see ``agent_args``).
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="openclaw",
    help="OpenClaw edge: a local agent CLI on a long-lived llama.cpp daemon.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
daemon_app = typer.Typer(help="Start, stop and inspect the inference daemon.", no_args_is_help=True)
sessions_app = typer.Typer(help="List and show stored sessions.", no_args_is_help=True)
app.add_typer(daemon_app, name="daemon")
app.add_typer(sessions_app, name="sessions")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def agent(ctx: typer.Context) -> None:
    """Run one agent turn and stream the reply (see: openclaw agent --help)."""
    # Normally ``run()`` dispatches ``agent`` before typer is imported; this
    # entry keeps the command listed and working when typer is invoked directly.
    from openclaw_cli.main import run_agent_argv

    raise typer.Exit(run_agent_argv(list(ctx.args)))


@daemon_app.command("start")
def daemon_start(
    model: str | None = typer.Option(None, "--model", help="GGUF model path."),
    n_ctx: int | None = typer.Option(None, "--n-ctx", min=256, help="Context window in tokens."),
    foreground: bool = typer.Option(
        False, "--foreground", help="Run in this terminal instead of detached."
    ),
) -> None:
    """Start the daemon (no-op if it is already running)."""
    from openclaw_cli import daemon_cmd

    daemon_cmd.start(model=model, n_ctx=n_ctx, foreground=foreground)


@daemon_app.command("stop")
def daemon_stop() -> None:
    """Stop the daemon."""
    from openclaw_cli import daemon_cmd

    daemon_cmd.stop()


@daemon_app.command("restart")
def daemon_restart(
    model: str | None = typer.Option(None, "--model", help="GGUF model path."),
    n_ctx: int | None = typer.Option(None, "--n-ctx", min=256, help="Context window in tokens."),
) -> None:
    """Stop the daemon if it runs, then start it."""
    from openclaw_cli import daemon_cmd

    daemon_cmd.stop()
    daemon_cmd.start(model=model, n_ctx=n_ctx, foreground=False)


@daemon_app.command("status")
def daemon_status(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show pid, model, uptime, memory, context size, sessions and socket."""
    from openclaw_cli import daemon_cmd

    raise typer.Exit(daemon_cmd.status(json_out=json_out))


@sessions_app.command("list")
def sessions_list(
    agent_id: str = typer.Option("main", "--agent", help="Agent id."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the agent's sessions, newest first."""
    from openclaw_cli import sessions_cmd

    sessions_cmd.list_sessions(agent_id, json_out=json_out)


@sessions_app.command("show")
def sessions_show(
    session_id: str = typer.Argument(..., help="Session id or key."),
    agent_id: str = typer.Option("main", "--agent", help="Agent id."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one session's transcript."""
    from openclaw_cli import sessions_cmd

    sessions_cmd.show_session(session_id, agent_id, json_out=json_out)
