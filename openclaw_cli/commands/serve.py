"""``openclaw serve``: the OpenAI-compatible front, in the foreground (as ``ollama serve``).

Starts the daemon first (or uses the running one), so the first request does
not pay the model load, then serves until Ctrl-C. The HTTP side is
``openclaw_cli.openai_front``; docs/openai-front.md.
"""

from __future__ import annotations

from openclaw_cli import daemon_control, openai_front
from openclaw_cli.commands import daemon as daemon_cmd
from openclaw_cli.views import render
from openclaw_daemon import config


def run(*, host: str, port: int, api_key: str | None, model: str | None, n_ctx: int | None) -> int:
    paths = config.resolve_paths()
    if not openai_front.is_loopback(host) and not api_key:
        openai_front.serve(  # raises the refusal before anything starts
            host=host, port=port, paths=paths, daemon_command=[], api_key=None
        )
    daemon_cmd.start(model=model, n_ctx=n_ctx, foreground=False)
    # If the daemon stops while we serve (idle exit, a crash), the next request
    # starts it again with the same settings.
    command = daemon_control.server_command(model=daemon_cmd.model_arg(model), n_ctx=n_ctx)
    shown = f"[{host}]" if ":" in host else host

    def ready(server: openai_front.FrontServer) -> None:
        bound = server.server_address[1]
        render.notice(
            f"OpenAI-compatible API on http://{shown}:{bound}/v1 (model {server.model()}"
            f"{', bearer token required' if api_key else ''}); Ctrl-C stops"
        )

    try:
        openai_front.serve(
            host=host, port=port, paths=paths, daemon_command=command, api_key=api_key, ready=ready
        )
    except KeyboardInterrupt:
        render.notice("stopped (the daemon keeps running: openclaw daemon stop)")
    return 0
