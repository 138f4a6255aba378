"""``openclaw`` entry point: the fast ``agent`` path and the one top-level error handler.

``openclaw agent`` runs in loops and scripts, so it is dispatched here before
typer is imported (see ``agent_args``); every other command goes through the
typer app in ``commands``. User errors print one clear line and exit non-zero;
tracebacks are for bugs. With ``--json`` every failure also prints exactly one
JSON document on stdout: a failed turn its OpenClaw envelope (``agent_cmd``),
anything else ``{"ok": false, "error": {"type", "message"}}`` (usage errors
from argparse or click included), so a script never reads an empty stdout.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

from openclaw_daemon.wire.errors import OpenClawError

_USAGE_PREFIX = "error: "


def wants_json(argv: list[str]) -> bool:
    """``--json`` among the options (not after ``--``, where it would be text)."""
    head = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in head


@contextlib.contextmanager
def _usage_errors_as_json(enabled: bool) -> Iterator[None]:
    """argparse prints a usage error to stderr and exits 2: with ``--json`` the
    same error also goes to stdout as one ``ok: false`` document."""
    if not enabled:
        yield
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except SystemExit as exc:
        sys.stderr.write(captured.getvalue())
        if exc.code not in (0, None):
            from openclaw_cli.views import render

            lines = [line for line in captured.getvalue().splitlines() if line.strip()]
            message = lines[-1] if lines else "bad arguments"
            message = message.split(_USAGE_PREFIX, 1)[-1] if _USAGE_PREFIX in message else message
            render.print_json_failure("usage", message, "See: openclaw agent --help")
        raise
    sys.stderr.write(captured.getvalue())


def run_agent_argv(argv: list[str]) -> int:
    from openclaw_cli.agent_args import parse_agent_args
    from openclaw_cli.commands.agent import run_agent

    with _usage_errors_as_json(wants_json(argv)):
        options = parse_agent_args(argv)
    return run_agent(options)


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


def _run_app(json_out: bool) -> None:
    """The typer app. With ``--json``, click's own errors (a bad flag or value)
    are caught here instead of in click, to add the JSON document."""
    from openclaw_cli.commands.registry import app

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
            exit_now(run_agent_argv(argv[1:]))
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
