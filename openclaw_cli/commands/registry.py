"""The typer app: every ``openclaw`` command but the hot ``agent`` path.

Command bodies import what they need when they run. ``openclaw_cli.main.run``
handles errors for all commands and dispatches ``agent`` without importing
this module (see ``agent_args``). This module never imports ``main``: the
import graph runs one way, main -> registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from openclaw_cli.commands.config_cli import config_app
from openclaw_cli.commands.models_cli import CHAT_TEMPLATE_HELP, models_app
from openclaw_cli.commands.sessions_cli import sessions_app

# The variable a completion script sets when it asks ``openclaw`` for candidates.
COMPLETE_VAR = "_OPENCLAW_COMPLETE"

app = typer.Typer(
    name="openclaw",
    help="OpenClaw edge: a local agent CLI on a long-lived llama.cpp daemon.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
)
daemon_app = typer.Typer(help="Start, stop and inspect the inference daemon.", no_args_is_help=True)
cache_app = typer.Typer(help="Inspect and clear the KV prefix cache.", no_args_is_help=True)
trace_app = typer.Typer(
    help="Show recorded turns phase by phase, as a Gantt chart, JSON or SVG.",
    no_args_is_help=True,
)
app.add_typer(daemon_app, name="daemon", short_help="Start, stop and inspect the inference daemon.")
app.add_typer(
    sessions_app, name="sessions", short_help="List, show, compact, reset, delete, export sessions."
)
app.add_typer(cache_app, name="cache", short_help="Inspect and clear the KV prefix cache.")
app.add_typer(
    trace_app, name="trace", short_help="Recorded turns phase by phase: chart, JSON or SVG."
)
app.add_typer(
    models_app, name="models", short_help="List, inspect, register and unregister GGUF models."
)
app.add_typer(config_app, name="config", short_help="Read and edit openclaw.json by dotted path.")


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", is_eager=True, help="Print the version and exit."
    ),
) -> None:
    # ``openclaw --version`` alone is answered in main.run before typer loads; this
    # lists the option in --help and answers it beside other arguments.
    if version:
        from importlib.metadata import version as package_version

        typer.echo(f"openclaw-edge {package_version('openclaw-edge')}")
        raise typer.Exit()


class _AgentCommand(TyperCommand):
    """``agent``'s options are argparse's (``agent_args``), not typer's: shell
    completion offers those."""

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        from typer._click.shell_completion import CompletionItem

        from openclaw_cli.agent_args import build_parser

        if not incomplete.startswith("-"):
            return super().shell_complete(ctx, incomplete)
        options = {o for action in build_parser()._actions for o in action.option_strings}
        return [CompletionItem(o) for o in sorted(options) if o.startswith(incomplete)]


@app.command(
    cls=_AgentCommand,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
    short_help="Run one agent turn, streaming the reply.",
)
def agent(ctx: typer.Context) -> None:
    """Run one agent turn and stream the reply (see: openclaw agent --help)."""
    # Normally ``run()`` dispatches ``agent`` before typer is imported; this
    # entry keeps the command listed and working when typer is invoked directly.
    from openclaw_cli.commands.agent import run_agent_argv

    raise typer.Exit(run_agent_argv(list(ctx.args)))


_CACHE_RAM_HELP = "RAM budget for parked KV states, e.g. 1G (default 1G, OPENCLAW_CACHE_RAM)."
_CACHE_DISK_HELP = "Disk budget for saved KV states, e.g. 4G (default 4G, OPENCLAW_CACHE_DISK)."
_IDLE_HELP = (
    "Stop after this many minutes with no request, parking sessions to disk; 0 never "
    "(default 30, OPENCLAW_IDLE_TIMEOUT). The next turn starts it again, warm from disk."
)
_PARALLEL_HELP = (
    "Turns of different sessions that run at once, sharing model steps (default: "
    "OPENCLAW_PARALLEL, else 4 with a GPU, 1 on a CPU, where a batch of four costs ~3x one)."
)
_PRELOAD_HELP = (
    "Restore this session (id or key of agent main; last: the most recent) into the live "
    "context once loaded, so the first turn is a live-context hit."
)
_MODEL_HELP = "GGUF model: a path or a name from `openclaw models list`."
_GPU_HELP = (
    "Layers to offload to the GPU, -1 for all (default: all when llama.cpp was built "
    "with GPU support, else 0; OPENCLAW_N_GPU_LAYERS)."
)


@daemon_app.command("start")
def daemon_start(
    model: str | None = typer.Option(None, "--model", help=_MODEL_HELP),
    n_ctx: int | None = typer.Option(None, "--n-ctx", min=256, help="Context window in tokens."),
    foreground: bool = typer.Option(
        False, "--foreground", help="Run in this terminal instead of detached."
    ),
    cache_ram: str | None = typer.Option(None, "--cache-ram", help=_CACHE_RAM_HELP),
    cache_disk: str | None = typer.Option(None, "--cache-disk", help=_CACHE_DISK_HELP),
    chat_template: str | None = typer.Option(None, "--chat-template", help=CHAT_TEMPLATE_HELP),
    n_gpu_layers: int | None = typer.Option(None, "--n-gpu-layers", min=-1, help=_GPU_HELP),
    idle_timeout: float | None = typer.Option(
        None, "--idle-timeout", metavar="MINUTES", help=_IDLE_HELP
    ),
    preload: str | None = typer.Option(
        None, "--preload", metavar="SESSION|last", help=_PRELOAD_HELP
    ),
    parallel: int | None = typer.Option(None, "--parallel", min=1, help=_PARALLEL_HELP),
) -> None:
    """Start the daemon (no-op if it is already running)."""
    from openclaw_cli.commands import daemon as daemon_cmd

    daemon_cmd.start(
        idle_timeout=idle_timeout,
        preload=preload,
        model=model,
        n_ctx=n_ctx,
        foreground=foreground,
        cache_ram=cache_ram,
        cache_disk=cache_disk,
        chat_template=chat_template,
        n_gpu_layers=n_gpu_layers,
        parallel=parallel,
    )


@daemon_app.command("stop")
def daemon_stop() -> None:
    """Stop the daemon."""
    from openclaw_cli.commands import daemon as daemon_cmd

    daemon_cmd.stop()


@daemon_app.command("restart")
def daemon_restart(
    model: str | None = typer.Option(None, "--model", help=_MODEL_HELP),
    n_ctx: int | None = typer.Option(None, "--n-ctx", min=256, help="Context window in tokens."),
    cache_ram: str | None = typer.Option(None, "--cache-ram", help=_CACHE_RAM_HELP),
    cache_disk: str | None = typer.Option(None, "--cache-disk", help=_CACHE_DISK_HELP),
    chat_template: str | None = typer.Option(None, "--chat-template", help=CHAT_TEMPLATE_HELP),
    n_gpu_layers: int | None = typer.Option(None, "--n-gpu-layers", min=-1, help=_GPU_HELP),
    idle_timeout: float | None = typer.Option(
        None, "--idle-timeout", metavar="MINUTES", help=_IDLE_HELP
    ),
    preload: str | None = typer.Option(
        None, "--preload", metavar="SESSION|last", help=_PRELOAD_HELP
    ),
    parallel: int | None = typer.Option(None, "--parallel", min=1, help=_PARALLEL_HELP),
) -> None:
    """Stop the daemon if it runs, then start it (the KV cache on disk survives)."""
    from openclaw_cli.commands import daemon as daemon_cmd

    daemon_cmd.restart(
        model=model,
        n_ctx=n_ctx,
        cache_ram=cache_ram,
        cache_disk=cache_disk,
        chat_template=chat_template,
        n_gpu_layers=n_gpu_layers,
        idle_timeout=idle_timeout,
        preload=preload,
        parallel=parallel,
    )


@daemon_app.command("status")
def daemon_status(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show pid, model, uptime, memory, context size, sessions and socket."""
    from openclaw_cli.commands import daemon as daemon_cmd

    raise typer.Exit(daemon_cmd.status(json_out=json_out))


@cache_app.command("stats")
def cache_stats(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Entries, bytes and budgets per tier; hits by tier; discarded files."""
    from openclaw_cli.commands import cache as cache_cmd

    cache_cmd.stats(json_out=json_out)


@cache_app.command("clear")
def cache_clear(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Drop every parked KV state, in RAM and on disk."""
    from openclaw_cli.commands import cache as cache_cmd

    cache_cmd.clear(json_out=json_out)


@app.command("doctor", short_help="Explain recent turns' cache outcomes; check health.")
def doctor(
    session_id: str | None = typer.Option(None, "--session-id", help="Only this session."),
    last: int = typer.Option(5, "--last", min=1, help="How many recent turns to explain."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Explain recent turns' cache outcomes in words, and check the daemon's health."""
    from openclaw_cli.commands import doctor as doctor_cmd

    raise typer.Exit(doctor_cmd.run(session_id=session_id, last=last, json_out=json_out))


_SVG_HELP = "Write the chart as an SVG file as well; - writes only the SVG, to stdout."


@trace_app.command("last")
def trace_last(
    session: str | None = typer.Option(None, "--session", help="The last turn of this session."),
    json_out: bool = typer.Option(False, "--json", help="Print the stored record as JSON."),
    svg: Path | None = typer.Option(None, "--svg", help=_SVG_HELP, dir_okay=False),
) -> None:
    """The most recent turn's phases, as a Gantt chart."""
    from openclaw_cli.commands import trace as trace_cmd

    trace_cmd.last(session=session, json_out=json_out, svg=svg)


@trace_app.command("show")
def trace_show(
    turn: str = typer.Argument(..., help="Turn id (or a unique prefix) from `trace list`."),
    json_out: bool = typer.Option(False, "--json", help="Print the stored record as JSON."),
    svg: Path | None = typer.Option(None, "--svg", help=_SVG_HELP, dir_okay=False),
) -> None:
    """One recorded turn's phases, as a Gantt chart."""
    from openclaw_cli.commands import trace as trace_cmd

    trace_cmd.show_turn(turn, json_out=json_out, svg=svg)


@trace_app.command("list")
def trace_list(
    session: str | None = typer.Option(None, "--session", help="Only this session."),
    limit: int = typer.Option(20, "--limit", min=1, help="How many recent turns."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Recorded turns, oldest first: wall time, first token, residual, cache."""
    from openclaw_cli.commands import trace as trace_cmd

    trace_cmd.list_turns(session=session, limit=limit, json_out=json_out)


@app.command("stats", short_help="Percentiles of first-token and turn time, cache hits.")
def stats(
    session: str | None = typer.Option(None, "--session", help="Only this session."),
    since: str | None = typer.Option(
        None, "--since", help="Only turns this recent, e.g. 30m, 2h, 7d."
    ),
    agent: str | None = typer.Option(None, "--agent", help="Only this agent's turns."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Percentiles of first-token and turn time, token rates, cache hits, suggestions."""
    from openclaw_cli.commands import stats as stats_cmd

    stats_cmd.run(session=session, since=since, json_out=json_out, agent=agent)


def _chat(session_id: str | None, max_tokens: int, tool_choice: str) -> None:
    from openclaw_cli import chat

    raise typer.Exit(chat.run(session_id, max_tokens, tool_choice))


_CHAT_SESSION_HELP = "Continue this session (default: a new one)."


@app.command("tui", short_help="Chat in the terminal, streaming replies.")
def tui_command(
    session_id: str | None = typer.Option(None, "--session-id", help=_CHAT_SESSION_HELP),
    max_tokens: int = typer.Option(512, "--max-tokens", min=1, help="Most tokens per reply."),
    tool_choice: str = typer.Option(
        "auto", "--tool-choice", help="auto, none, required or a tool's name, for every reply."
    ),
) -> None:
    """A terminal chat on the daemon: /help lists its commands; Ctrl-C cancels a reply;
    a write, edit or exec call asks first."""
    _chat(session_id, max_tokens, tool_choice)


app.command("chat", short_help="The same as tui.")(tui_command)  # one command, two names


@app.command("serve", short_help="Serve an OpenAI-compatible API (/v1) on the daemon.")
def serve_command(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind; off loopback needs --api-key."
    ),
    port: int = typer.Option(11435, "--port", min=0, max=65535, help="TCP port (0: any free)."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="OPENCLAW_API_KEY", help="Require this bearer token."
    ),
    model: str | None = typer.Option(None, "--model", help=_MODEL_HELP),
    n_ctx: int | None = typer.Option(None, "--n-ctx", min=256, help="Context window in tokens."),
) -> None:
    """/v1/chat/completions (streaming, tools, cached-token usage), /v1/completions,
    /v1/models and /health for OpenAI clients, on the daemon's prefix cache
    (docs/openai-front.md). Starts the daemon if needed (--model and --n-ctx as for
    `daemon start`; default the embedded model and OPENCLAW_N_CTX); Ctrl-C stops
    serving and leaves the daemon running."""
    from openclaw_cli.commands import serve

    raise typer.Exit(serve.run(host=host, port=port, api_key=api_key, model=model, n_ctx=n_ctx))


@app.command("logs", short_help="Show (or --follow) the daemon log.")
def logs(
    lines: int = typer.Option(50, "-n", "--lines", min=0, help="How many last lines to show."),
    follow: bool = typer.Option(
        False, "-f", "--follow", help="Keep printing new lines (Ctrl-C stops)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON: the file and its last lines."),
) -> None:
    """Show the daemon log ($OPENCLAW_STATE_DIR/logs/daemon.log)."""
    from openclaw_cli.commands import logs as logs_cmd

    raise typer.Exit(logs_cmd.show(lines=lines, follow=follow, json_out=json_out))


@app.command("completion", short_help="Print a bash, zsh or fish completion script.")
def completion(
    shell: str = typer.Argument(..., metavar="bash|zsh|fish", help="The shell to complete in."),
) -> None:
    """Print a shell completion script: eval "$(openclaw completion bash)" in ~/.bashrc."""
    from typer._completion_shared import get_completion_script

    if shell not in ("bash", "zsh", "fish"):
        raise typer.BadParameter("must be bash, zsh or fish", param_hint="SHELL")
    script = get_completion_script(prog_name="openclaw", complete_var=COMPLETE_VAR, shell=shell)
    typer.echo(script)


@app.command("metrics", short_help="Counters and histograms, as Prometheus text.")
def metrics(
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Write to FILE atomically (for a textfile collector); - for stdout.",
        dir_okay=False,
    ),
) -> None:
    """The daemon's counters and histograms in Prometheus text format."""
    from openclaw_cli.commands import metrics as metrics_cmd

    metrics_cmd.run(output=output)
