"""``openclaw`` entry point: the fast ``agent`` path and the one top-level error handler.

``openclaw agent`` runs in loops and scripts, so it is dispatched here before
typer is imported (``commands.agent.run_agent_argv``); every other command goes
through the typer app in ``commands.registry``, imported only then. Nothing
else of the CLI imports this module (the registry reaches the agent command
through ``commands.agent``), so the import graph has no cycle through it.
User errors print one clear line and exit non-zero; tracebacks are for bugs.
With ``--json`` every failure also prints exactly one JSON document on stdout:
a failed turn its OpenClaw envelope (``agent_cmd``), anything else ``{"ok":
false, "error": {"type", "message"}}`` (usage errors from argparse or click
included), so a script never reads an empty stdout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

from openclaw_cli import wants_json
from openclaw_daemon.wire.errors import OpenClawError


def report(exc: OpenClawError, *, json_out: bool = False) -> int:
    sys.stderr.write(f"Error ({type(exc).__name__}): {exc.message}\n")
    if exc.hint:
        sys.stderr.write(f"  {exc.hint}\n")
    if json_out:
        from openclaw_cli.views import render

        render.print_json_failure(exc.code, exc.message, exc.hint)
    return exc.exit_code


def exit_now(code: int) -> None:
    """Exit without interpreter teardown (~20 ms): a finished turn has nothing to clean up."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openclaw-edge")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _run_app(json_out: bool) -> None:
    """The typer app. With ``--json``, click's own errors (a bad flag or value)
    are caught here instead of in click, to add the JSON document."""
    from openclaw_cli.commands.registry import COMPLETE_VAR, app

    if COMPLETE_VAR in os.environ:  # a shell asking for completions
        from typer._completion_classes import completion_init

        completion_init()

    if not json_out:
        app()
        return
    import typer
    from typer import _click

    from openclaw_cli.views import render

    try:
        code: Any = app(standalone_mode=False)
    except _click.exceptions.ClickException as exc:
        exc.show()
        kind = "usage" if isinstance(exc, _click.exceptions.UsageError) else "error"
        render.print_json_failure(kind, exc.format_message())
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("Aborted!\n")
        render.print_json_failure("aborted", "aborted")
        sys.exit(1)
    code = code if isinstance(code, int) else 0
    if code:
        # A command that failed without raising (``daemon status`` on a stopped
        # daemon prints its own document first; this only fills a gap).
        render.print_json_failure("error", f"the command failed (exit code {code})")
    sys.exit(code)


def run() -> None:
    argv = sys.argv[1:]
    json_out = wants_json(argv)
    try:
        if argv[:1] == ["agent"]:
            from openclaw_cli.commands.agent import run_agent_argv

            exit_now(run_agent_argv(argv[1:]))
        if argv in (["--version"], ["-V"]):
            sys.stdout.write(f"openclaw-edge {_version()}\n")
            exit_now(0)
        _run_app(json_out)
    except OpenClawError as exc:
        sys.exit(report(exc, json_out=json_out))
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        if json_out:
            from openclaw_cli.views import render

            render.print_json_failure("interrupted", "interrupted by SIGINT")
        sys.exit(130)
    except BrokenPipeError:
        # The reader of stdout went away (``| head``): exit as a process killed by
        # SIGPIPE would, with no traceback, and without flushing into the closed pipe.
        with contextlib.suppress(OSError):
            sys.stderr.flush()
        os._exit(128 + signal.SIGPIPE)
    except OSError as exc:  # after BrokenPipeError, which is one too
        # An unusable state dir (a file, read-only, full) is the user's to fix:
        # one line naming it. Any other OSError is a bug and keeps its traceback.
        from openclaw_daemon.state_dirs import as_state_dir_error

        error = as_state_dir_error(exc)
        if error is None:
            raise
        sys.exit(report(error))


if __name__ == "__main__":
    run()
