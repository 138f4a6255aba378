"""``openclaw config``: the typer commands (their bodies are in ``config_cmd``)."""

from __future__ import annotations

import typer

config_app = typer.Typer(
    help="Read and edit openclaw.json (agent defaults, upstream providers) by dotted path.",
    no_args_is_help=True,
)


@config_app.command("get")
def config_get(
    path: str = typer.Argument(..., help="A dotted key, e.g. agents.defaults.params.maxTokens."),
    json_out: bool = typer.Option(False, "--json", help="Print the value as JSON."),
) -> None:
    """Print a value (exit 1 if it is not set)."""
    from openclaw_cli.commands import config_cmd

    raise typer.Exit(config_cmd.get(path, json_out=json_out))


@config_app.command("set")
def config_set(
    path: str = typer.Argument(..., help="A dotted key."),
    value: str = typer.Argument(..., help='JSON (128, true, ["write"]) or plain text.'),
) -> None:
    """Set a value; the file is checked before it is replaced (the old one kept as .bak)."""
    from openclaw_cli.commands import config_cmd

    config_cmd.set_value(path, value)


@config_app.command("unset")
def config_unset(path: str = typer.Argument(..., help="A dotted key.")) -> None:
    """Remove a value."""
    from openclaw_cli.commands import config_cmd

    config_cmd.unset(path)


@config_app.command("file")
def config_file_path() -> None:
    """Print the config file's path (OPENCLAW_CONFIG_PATH, else $STATE/openclaw.json)."""
    from openclaw_cli.commands import config_cmd

    config_cmd.file()
