"""``openclaw`` entry point: the fast ``agent`` path and the one top-level error handler.

``openclaw agent`` runs in loops and scripts, so it is dispatched here before
typer is imported (see ``agent_args``); every other command goes through the
typer app in ``commands``. User errors print one clear line and exit non-zero;
tracebacks are for bugs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from openclaw_daemon.errors import OpenClawError


def run_agent_argv(argv: list[str]) -> int:
    from openclaw_cli.agent_args import parse_agent_args
    from openclaw_cli.agent_cmd import run_agent

    return run_agent(parse_agent_args(argv))


def report(exc: OpenClawError) -> int:
    sys.stderr.write(f"Error ({type(exc).__name__}): {exc.message}\n")
    if exc.hint:
        sys.stderr.write(f"  {exc.hint}\n")
    return exc.exit_code


def exit_now(code: int) -> None:
    """Exit without interpreter teardown (~20 ms): a finished turn has nothing to clean up."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run() -> None:
    argv = sys.argv[1:]
    try:
        if argv[:1] == ["agent"]:
            exit_now(run_agent_argv(argv[1:]))
        from openclaw_cli.commands import app

        app()
    except OpenClawError as exc:
        sys.exit(report(exc))
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
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
