"""The daemon's command line (``python -m openclaw_daemon.serve.server``).

Options left unset fall back to the environment (``config``); the CLI builds
this command line in ``openclaw_cli.daemon_control.server_command``.
"""

from __future__ import annotations

import argparse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="openclawd", description="OpenClaw edge daemon")
    parser.add_argument("--model", help="GGUF model path (default: OPENCLAW_MODEL or embedded)")
    parser.add_argument("--n-ctx", type=int, default=None, help="context window in tokens")
    parser.add_argument("--cache-ram", default=None, help="RAM cache budget, e.g. 1G")
    parser.add_argument("--cache-disk", default=None, help="disk cache budget, e.g. 4G")
    parser.add_argument(
        "--chat-template", default=None, help="builtin template NAME or Jinja FILE, over the GGUF's"
    )
    parser.add_argument("--n-gpu-layers", type=int, default=None, help="layers to offload, -1 all")
    parser.add_argument(
        "--parallel",
        type=int,
        default=None,
        metavar="N",
        help="turns of different sessions run at once, sharing model steps "
        "(default: OPENCLAW_PARALLEL, else 4 with a GPU, 1 on a CPU)",
    )
    parser.add_argument(
        "--preload",
        default=None,
        metavar="SESSION",
        help="restore this session (an id or key of agent main, or 'last') into the "
        "live context once loaded",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="MINUTES",
        help="stop after this long with no request; 0 never (default: OPENCLAW_IDLE_TIMEOUT or 30)",
    )
    return parser.parse_args(argv)
