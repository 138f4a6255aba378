"""The ``openclaw`` command: typer wiring and the one top-level error handler.

Command bodies import what they need when they run, so ``openclaw --help``
and a warm ``openclaw agent`` turn stay fast.
"""

from __future__ import annotations

import sys

import typer

from openclaw_daemon.errors import OpenClawError

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

VERBOSE_CHOICES = ("on", "off")


@app.command()
def agent(
    message: str = typer.Option(..., "--message", "-m", help="The user message for this turn."),
    local: bool = typer.Option(
        True,
        "--local/--no-local",
        help="Run on the local daemon (the only mode; for OpenClaw compatibility).",
    ),
    session_id: str | None = typer.Option(
        None,
        "--session-id",
        help="Continue or create this session (default: the agent's main session).",
    ),
    agent_id: str = typer.Option("main", "--agent", help="Agent id."),
    json_out: bool = typer.Option(
        False, "--json", help="Print OpenClaw's JSON envelope instead of text."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Give up after this many seconds."
    ),
    max_tokens: int = typer.Option(512, "--max-tokens", min=1, help="Most tokens to generate."),
    temperature: float = typer.Option(
        0.0, "--temperature", min=0.0, help="Sampling temperature; 0 is greedy."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed."),
    stop: list[str] | None = typer.Option(None, "--stop", help="Stop at this string (repeatable)."),
    model: str | None = typer.Option(
        None, "--model", help="GGUF model path (default: OPENCLAW_MODEL or the embedded model)."
    ),
    verbose: str = typer.Option(
        "off", "--verbose", help="on: print usage and the phase trace to stderr."
    ),
) -> None:
    """Run one agent turn and stream the reply."""
    from openclaw_cli.agent_cmd import AgentOptions, run_agent

    if verbose not in VERBOSE_CHOICES:
        raise typer.BadParameter("use on or off", param_hint="--verbose")
    if timeout is not None and timeout <= 0:
        raise typer.BadParameter("must be positive", param_hint="--timeout")
    options = AgentOptions(
        message=message,
        session_id=session_id,
        agent_id=agent_id,
        json=json_out,
        timeout=timeout,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        stop=list(stop or []),
        model=model,
        verbose=verbose == "on",
    )
    raise typer.Exit(run_agent(options))


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


def run() -> None:
    """Console entry point: user errors print one clear line and exit non-zero."""
    try:
        app()
    except OpenClawError as exc:
        sys.stderr.write(f"Error ({type(exc).__name__}): {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"  {exc.hint}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)


if __name__ == "__main__":
    run()
