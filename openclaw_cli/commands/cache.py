"""``openclaw cache stats|clear``: ask the daemon, or read the cache dir when it is down."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from openclaw_cli import daemon_control
from openclaw_cli.views import render
from openclaw_daemon import config
from openclaw_daemon.wire.messages import TIERS

_SUFFIX = ".kvc"  # kv_files.SUFFIX, without importing the daemon's cache modules


def _on_disk(paths: config.Paths) -> tuple[int, int]:
    files, size = 0, 0
    for path in paths.cache_dir.glob(f"*/*{_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            size += path.stat().st_size
            files += 1
    return files, size


def stats(*, json_out: bool) -> None:
    paths = config.resolve_paths()
    client = daemon_control.try_connect(paths)
    if client is None:
        files, size = _on_disk(paths)
        info: dict[str, Any] = {
            "running": False,
            "dir": str(paths.cache_dir),
            "diskEntries": files,
            "diskBytes": size,
        }
        if json_out:
            render.print_json(info)
        else:
            render.notice(
                f"daemon is not running; {files} cached KV states on disk "
                f"({size / 2**20:.0f} MiB) in {paths.cache_dir}"
            )
        return
    with client:
        info = {"running": True, **client.call({"type": "cache", "action": "stats"})}
    if json_out:
        render.print_json(info)
        return
    mib = 2**20
    hits = {tier: info[f"hit{tier}"] for tier in TIERS if tier != "none"}
    turns = sum(hits.values()) + info["miss"]
    rows = [
        ("dir", info["dir"]),
        (
            "RAM (L2)",
            f"{info['ramEntries']} entries, {info['ramBytes'] / mib:.0f} of "
            f"{info['ramBudget'] / mib:.0f} MiB",
        ),
        (
            "disk (L3)",
            f"{info['diskEntries']} entries, {info['diskBytes'] / mib:.0f} of "
            f"{info['diskBudget'] / mib:.0f} MiB, {info['pendingWrites']} writes pending",
        ),
        (
            "turns",
            f"{turns}: "
            + ", ".join(f"{t} {n}" for t, n in hits.items())
            + f", miss {info['miss']}",
        ),
        ("evicted", f"{info['evictedRam']} from RAM, {info['evictedDisk']} from disk"),
        ("discarded", f"{info['discarded']} bad files"),
    ]
    for name, value in rows:
        sys.stdout.write(f"{name:<10} {value}\n")
    for problem in info["problems"]:
        sys.stdout.write(f"  discarded: {problem}\n")


def clear(*, json_out: bool) -> None:
    paths = config.resolve_paths()
    client = daemon_control.try_connect(paths)
    if client is None:
        files, size = _on_disk(paths)
        for path in paths.cache_dir.glob(f"*/*{_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        result: dict[str, Any] = {"cleared": files, "diskBytes": size, "ramBytes": 0}
    else:
        with client:
            result = client.call({"type": "cache", "action": "clear"}, timeout=120)
    if json_out:
        render.print_json(result)
    else:
        render.notice(
            f"cleared {result['cleared']} cached KV states "
            f"({(result['diskBytes'] + result['ramBytes']) / 2**20:.0f} MiB)"
        )
