"""``openclaw metrics``: the daemon's counters and histograms as Prometheus text.

Prints to stdout (also ``--output -``), or with ``--output FILE`` writes atomically (a temporary
file, then a rename), which is what node_exporter's textfile collector needs.
With no daemon running it reports ``openclaw_daemon_up 0`` and says so on
stderr, so a scrape still sees a well-formed file.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from openclaw_cli import daemon_control
from openclaw_cli.views import render
from openclaw_daemon import config
from openclaw_daemon.observability import metrics
from openclaw_daemon.wire.errors import OpenClawError, VersionMismatchError


def fetch() -> str:
    paths = config.resolve_paths()
    try:
        client = daemon_control.try_connect(paths)
    except VersionMismatchError as exc:
        # Running but unable to answer this CLI: to a scraper, it is down.
        render.notice(f"{exc.message}; reporting openclaw_daemon_up 0 ({exc.hint})")
        return metrics.down()
    if client is None:
        render.notice("the daemon is not running; reporting openclaw_daemon_up 0")
        return metrics.down()
    with client:
        return str(client.call({"type": "metrics"})["text"])


def run(*, output: Path | None) -> None:
    text = fetch()
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        return
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as exc:
        raise OpenClawError(
            f"cannot write the metrics to {output}: {exc.strerror or exc}",
            hint="Give a path in a directory you can write to (the textfile collector's).",
        ) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
