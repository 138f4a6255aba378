"""The fault and security suite, with figures, through the real CLI and daemon.

One run: kill -9 of the daemon at random moments in each phase (prefill,
decode, tool execution, persist, parking to disk, compaction) and of the CLI
mid-stream; concurrent clients over shared sessions; and, where this tree has
them, the wire fuzz, the other-uid check, the L3 corruption suite and the tool
guards. Writes docs/reliability.md and prints the same table. Every daemon
runs in its own temp state dir and is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults import clients, external, kills, report  # noqa: E402
from tests.faults.harness import Harness  # noqa: E402

FULL = {"kills": 24, "cli_kills": 4, "clients": 8, "turns": 5, "sessions": 4, "fuzz": 10_000}
QUICK = {"kills": 6, "cli_kills": 2, "clients": 4, "turns": 2, "sessions": 2, "fuzz": 1_000}


MEANING = """\
- **kill -9 of the daemon**: a raw client streams a turn (or a `compact` request) and the
  daemon is killed at a random moment inside the target phase, timed from the frames it
  streams (prefill progress, the Nth token, a tool's start frame, the `model.decode` or
  `cache.report` span just before `session.persist`) or from the disk writer's temp file
  appearing in the cache dir (parking to disk). "Where they landed" is what the stream
  said the daemon was doing at the moment of the kill. After each kill the daemon is
  restarted through `openclaw daemon start`; every transcript line must parse, every turn
  a client saw finish must be stored exactly once (a turn cut by the kill may be stored
  once or not at all), and the session's next turn through the real CLI must succeed.
- **kill -9 of the CLI**: `openclaw agent` is killed once it has printed part of the
  reply; the daemon must keep serving without a restart, with the same checks.
- **concurrency**: each client sends its turns one after another through the real CLI,
  two clients per session; a turn a client saw finish before another turn of the same
  session was sent must be stored before it.
- The other rows come from the suites of other branches (tests/wire_fuzz.py,
  tests/other_uid_check.py, tests/l3_corruption.py, tests/tool_guard_cases.py);
  a row that says "not available in this tree" was not measured here.
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (6 kills, 4x2 clients)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--kills", type=int, help="daemon kills (full: 24)")
    parser.add_argument("--cli-kills", type=int, help="CLI kills (full: 4)")
    parser.add_argument("--fuzz", type=int, help="malformed inputs for the wire fuzz")
    parser.add_argument(
        "--only",
        default="kills,clients,fuzz,uid,l3,tools",
        help="comma-separated parts: kills, clients, fuzz, uid, l3, tools",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="measure nothing: write the page from the --json files of runs of parts",
    )
    return parser.parse_args(argv)


def run_parts(args: argparse.Namespace, sizes: dict[str, int], results: dict[str, Any]) -> None:
    """Fills ``results`` part by part; the page is rewritten after each part,
    so an interrupted run still leaves the figures it measured."""
    parts = set(args.only.split(","))
    results["durations"] = {}

    def timed(name: str, func: Any) -> Any:
        started = time.monotonic()
        print(f"[faults] {name} ...", file=sys.stderr, flush=True)
        value = func()
        results["durations"][name] = round(time.monotonic() - started, 1)
        write(args, sizes, results, partial=True)
        return value

    if "kills" in parts:
        harness = Harness.fresh("oc-k-")
        try:

            def progress(done: list[kills.KillOutcome]) -> None:
                results["daemonKills"] = kills.summarise(done)
                write(args, sizes, results, partial=True)

            daemon = timed(
                "daemon kills",
                lambda: kills.run_daemon_kills(
                    harness, sizes["kills"], args.seed, progress=progress
                ),
            )
            results["daemonKills"] = kills.summarise(daemon)
            cli = timed(
                "cli kills", lambda: kills.run_cli_kills(harness, sizes["cli_kills"], args.seed)
            )
            results["cliKills"] = kills.summarise(cli)
            results["killLogTracebacks"] = _tracebacks(harness.log_path)
        finally:
            harness.cleanup()
    if "clients" in parts:
        harness = Harness.fresh("oc-c-")
        try:
            results["clients"] = timed(
                "clients",
                lambda: clients.run(harness, sizes["clients"], sizes["turns"], sizes["sessions"]),
            )
        finally:
            harness.cleanup()
    if "fuzz" in parts:
        results["fuzz"] = timed("wire fuzz", lambda: external.wire_fuzz(sizes["fuzz"], args.seed))
    if "uid" in parts:
        results["otherUid"] = timed("other uid", external.other_uid)
    if "l3" in parts:
        results["l3"] = timed("l3 corruption", lambda: external.l3_corruption(args.seed))
    if "tools" in parts:
        results["tools"] = timed("tool guards", external.tool_guards)


def _tracebacks(log: Path) -> int:
    try:
        return log.read_text(errors="replace").count("Traceback (most recent call last)")
    except FileNotFoundError:
        return 0


def render(args: argparse.Namespace, sizes: dict[str, int], results: dict[str, Any]) -> str:
    rows = []
    rows += report.kill_rows("daemon kill -9", results.get("daemonKills") or {})
    rows += report.kill_rows("CLI kill -9", results.get("cliKills") or {})
    if "killLogTracebacks" in results:
        rows.append(
            ("kill runs: tracebacks in the daemon log", str(results["killLogTracebacks"]), "0")
        )
    rows += report.client_rows(results.get("clients") or {})
    rows += report.fuzz_rows(results.get("fuzz") or _not_run("wire_fuzz"))
    rows += report.uid_rows(results.get("otherUid") or _not_run("other_uid_check"))
    rows += report.l3_rows(results.get("l3") or _not_run("l3_corruption"))
    rows += report.tool_rows(results.get("tools") or _not_run("tool_guard_cases"))
    meta = results["meta"]
    found = report.details(results) or ["- none"]
    command = meta["command"] if "`" in meta["command"] else f"`{meta['command']}`"
    durations = ", ".join(f"{k} {v} s" for k, v in results["durations"].items())
    return "\n".join(
        [
            "# Reliability: the fault and security suite",
            "",
            "Generated by `scripts/faults` (harness in tests/faults/); do not edit by hand.",
            "",
            f"- command: {command}",
            f"- date: {meta['date']}; commit: {meta['commit']}",
            f"- machine: {meta['machine']}",
            f"- sizes: {json.dumps(sizes)}; seed {args.seed}",
            f"- durations: {durations}; total {meta['totalS']} s"
            + (" (run still going: partial page)" if meta["partial"] else ""),
            "",
            report.table(rows),
            "",
            "## What each figure means",
            "",
            MEANING,
            "",
            "## Defects found in this run",
            "",
            *found,
            "",
        ]
    )


def _not_run(module: str) -> dict[str, str]:
    here = (ROOT / "tests" / f"{module}.py").exists()
    why = "not run (left out with --only)" if here else external.NOT_AVAILABLE
    return {"unavailable": why, "module": f"tests/{module}.py"}


def machine() -> str:
    cpus = os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.node()}, {platform.machine()}, {cpus} CPUs, "
        f"Python {platform.python_version()}, load average at the end {load}"
    )


def commit() -> str:
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return proc.stdout.strip() or "unknown"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    for key in ("kills", "cli_kills", "fuzz"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    results: dict[str, Any] = {"meta": {"command": " ".join(["scripts/faults", *argv])}}
    results["meta"]["started"] = time.monotonic()
    if args.combine:
        combine(args.combine, results)
    else:
        run_parts(args, sizes, results)
    print(write(args, sizes, results, partial=False))
    return 0


def combine(paths: list[Path], results: dict[str, Any]) -> None:
    """Parts measured by separate runs (say, side by side to save time), on one page."""
    durations: dict[str, float] = {}
    commands = []
    for path in paths:
        part = json.loads(path.read_text())
        durations.update(part.get("durations", {}))
        commands.append(part["meta"]["command"])
        results.update({k: v for k, v in part.items() if k not in ("meta", "durations")})
    results["durations"] = durations
    results["meta"]["command"] = " and ".join(f"`{c}`" for c in commands) + " (run side by side)"
    # Side by side: the longest part is the wall time.
    results["meta"]["started"] = time.monotonic() - max(durations.values(), default=0.0)


def write(
    args: argparse.Namespace, sizes: dict[str, int], results: dict[str, Any], *, partial: bool
) -> str:
    meta = results["meta"]
    meta["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta["commit"] = commit()
    meta["machine"] = machine()
    meta["totalS"] = round(time.monotonic() - meta["started"], 1)
    meta["partial"] = partial
    page = render(args, sizes, results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return page


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
