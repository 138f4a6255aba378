"""``openclaw models``: the typer commands (their bodies are in ``models``)."""

from __future__ import annotations

from pathlib import Path

import typer

CHAT_TEMPLATE_HELP = (
    "Chat template: a builtin (chatml, gemma, llama3, mistral) or a Jinja file, over the "
    "GGUF's own (OPENCLAW_CHAT_TEMPLATE)."
)
models_app = typer.Typer(
    help="List, inspect, register and unregister GGUF models.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by each command
)


@models_app.command("list")
def models_list(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Embedded, registered and upstream (openclaw.json) models, with reachability."""
    from openclaw_cli.commands import models as models_cmd

    models_cmd.list_models(json_out=json_out)


@models_app.command("show")
def models_show(
    model: str = typer.Argument(..., help="A model's name (see `models list`) or a GGUF path."),
    n_ctx: int | None = typer.Option(
        None, "--n-ctx", min=256, help="Context to predict memory at (default: OPENCLAW_N_CTX)."
    ),
    n_gpu_layers: int = typer.Option(
        0,
        "--n-gpu-layers",
        min=-1,
        help="Split the predicted memory as if N layers (-1 all) were on a GPU.",
    ),
    chat_template: str | None = typer.Option(None, "--chat-template", help=CHAT_TEMPLATE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Architecture, context, sliding window, template and tool-call format, KV bytes and
    memory, from the header."""
    from openclaw_cli.commands import models as models_cmd

    models_cmd.show(
        model,
        n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers,
        json_out=json_out,
        chat_template=chat_template,
    )


@models_app.command("add")
def models_add(
    path: Path = typer.Argument(..., help="The GGUF file to register."),
    name: str | None = typer.Option(None, "--name", help="Its name (default: its id)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Register a GGUF file under a name, for --model NAME."""
    from openclaw_cli.commands import models as models_cmd

    models_cmd.add(path, name=name, json_out=json_out)


@models_app.command("remove")
def models_remove(
    name: str = typer.Argument(..., help="A registered model's name."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Unregister a model (its file is left alone)."""
    from openclaw_cli.commands import models as models_cmd

    models_cmd.remove(name, json_out=json_out)
