"""``openclaw metrics``: the daemon's counters and histograms as Prometheus text.

Prints to stdout, or with ``--output FILE`` writes atomically (a temporary
file, then a rename), which is what node_exporter's textfile collector needs.
With no daemon running it reports ``openclaw_daemon_up 0`` and says so on
stderr, so a scrape still sees a well-formed file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from openclaw_cli import daemon_control, render
from openclaw_daemon import config, metrics


def fetch() -> str:
    paths = config.resolve_paths()
    client = daemon_control.try_connect(paths)
    if client is None:
        render.notice("the daemon is not running; reporting openclaw_daemon_up 0")
        return metrics.down()
    with client:
        return str(client.call({"type": "metrics"})["text"])


def run(*, output: Path | None) -> None:
    text = fetch()
    if output is None:
        sys.stdout.write(text)
        return
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, output)
