"""``scripts/bench --peers``: ours and the systems a user would pick instead, on the
scenarios of ../shared/SCENARIOS.md, in one run on one machine.

Systems: ours (the CLI and daemon on the embedded model); llama-server with its
defaults (``--cache-ram`` on) and with ``--cache-ram 0``; llama-cpp-python's
server; the real OpenClaw CLI (npm ``openclaw``) driving llama-server. Each peer
is installed into ``.bench/peers`` on first use (llama-server is a ~10 minute
build). Then the speed suite (bench_speed.py: decode and cold prefill beside
llama-server, prompt lookup on a quote) and the framework residual of both CLIs.

Writes ``bench-results/bench-peers.json`` after every system (a run cut short
keeps what it measured) and, with ``--docs``, the side-by-side section of
docs/benchmarks.md and one SVG chart per scenario (docs/peers-sN.svg).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench
import bench_speed
import llama_server_peer
import openclaw_peer
import peer_scenarios
from peers_report import markdown_section, write_docs

ROOT = bench.ROOT
SYSTEMS = ("ours", "llama-server", "llama-server-nocache", "llama-cpp-python", "openclaw")
OPENCLAW_CTX = 32768  # OpenClaw's own system prompt is ~11k tokens


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def run_ours(document: str, target: int, runs: int) -> dict[str, Any]:
    """Every scenario through our CLI, on a fresh state dir and daemon."""
    state = Path(tempfile.mkdtemp(prefix="oc-peers-", dir="/tmp"))
    runner = bench.Runner(state)
    out: dict[str, Any] = {}
    try:
        runner.cli("daemon", "start", timeout=600)
        s12 = bench.scenario_1_and_2(runner, document)
        out["scenario1"], out["scenario2"] = s12["scenario1"], s12["scenario2"]
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("scenario3", lambda: bench.scenario_3(runner)),
            ("scenario4", lambda: bench.scenario_4(runner)),
            ("scenario5", lambda: bench.scenario_5(runner, document)),
            ("scenario6", lambda: bench.scenario_6(runner, document)),
            ("scenario7", lambda: bench.scenario_7(runner, document)),
            ("scenario8", lambda: bench.scenario_8(runner, "ahead")),
            ("scenario9", lambda: bench.scenario_9(runner, target)),
            ("peakRssBytes", runner.rss),
            ("scenario10", lambda: bench.scenario_10(runner)),
            ("scenario11", lambda: bench.scenario_11(runner, runs)),
        ]
        for name, step in steps:
            try:
                out[name] = step()
            except Exception as exc:  # one scenario failing keeps the others
                out[name] = {"failed": f"{type(exc).__name__}: {exc}"}
                log(f"ours: {name} FAILED: {out[name]['failed']}")
    finally:
        subprocess.run([str(bench.OPENCLAW), "daemon", "stop"], env=runner.env, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
    return out


def run_speed(rounds: int) -> dict[str, Any]:
    """The speed suite: our daemon beside llama-server with its defaults and with
    flash attention off (as ours: a warm turn computed as the same turn cold), and
    beside llama-server built from our own llama.cpp (built on first use; skipped,
    with the reason, where it cannot be built)."""
    state = Path(tempfile.mkdtemp(prefix="oc-speed-", dir="/tmp"))
    runner = bench.Runner(state)
    gguf = peer_scenarios.default_gguf()
    servers = [
        peer_scenarios.LlamaServerPeer(None, gguf),
        peer_scenarios.LlamaServerPeer(None, gguf, flash_attn="off"),
    ]
    try:
        try:
            same = llama_server_peer.install_same_engine()
            servers.append(peer_scenarios.LlamaServerPeer(None, gguf, binary=same))
        except (OSError, subprocess.CalledProcessError, llama_server_peer.PeerError) as exc:
            log(f"  no llama-server of our own llama.cpp (skipped): {exc}")
        runner.cli("daemon", "start", timeout=600)
        peers = [peer_scenarios.ChatPeer(server) for server in servers]
        return bench_speed.speed_suite(
            runner, peers[0], peers[1], rounds, log, same_engine=peers[2] if peers[2:] else None
        )
    finally:
        for server in servers:
            server.stop()
        subprocess.run([str(bench.OPENCLAW), "daemon", "stop"], env=runner.env, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


def peer_factory(kind: str) -> Callable[[], Any]:
    gguf = peer_scenarios.default_gguf()
    if kind == "llama-server":
        return lambda: peer_scenarios.LlamaServerPeer(None, gguf)
    if kind == "llama-server-nocache":
        return lambda: peer_scenarios.LlamaServerPeer(0, gguf)
    return lambda: peer_scenarios.LcpServerPeer(gguf)


def run_openclaw(document: str, logs: Path) -> dict[str, Any]:
    binary = llama_server_peer.find_binary() or llama_server_peer.install()
    gguf = peer_scenarios.default_gguf()
    count = [0]

    def server() -> Any:
        count[0] += 1
        started = llama_server_peer.LlamaServer(
            binary,
            gguf,
            logs / f"llama-server-openclaw-{count[0]}.log",
            OPENCLAW_CTX,
            extra=["-t", str(os.cpu_count() or 2)],
        )
        started.wait_healthy()
        return started

    peer = openclaw_peer.OpenClawPeer()
    return dict(openclaw_peer.run_scenarios(peer, server, document))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench --peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--peers", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="~1500-token base document instead of ~6000 (the speed suite "
        "always runs at ~5k tokens)",
    )
    parser.add_argument(
        "--only",
        choices=(*SYSTEMS, "speed"),
        action="append",
        help="run only these (repeatable; default: all)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="speed suite rounds (default: 3)")
    parser.add_argument("--runs", type=int, default=10, help="scenario 11 turns (default: 10)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument(
        "--docs",
        action="store_true",
        help="rewrite docs/benchmarks.md's side-by-side section and charts",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="no run: regenerate the report (and --docs) from a saved run",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    target_file = args.out / "bench-peers.json"
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        results = measure(args, target_file)
    section = markdown_section(results)
    (args.out / "bench-peers.md").write_text(section)
    print(section)
    if args.docs:
        write_docs(results, section, ROOT / "docs")
    return 0


def measure(args: argparse.Namespace, target_file: Path) -> dict[str, Any]:
    wanted = set(args.only or (*SYSTEMS, "speed"))
    target = 1500 if args.quick else 6000
    document = bench.workspace_document(target)
    logs = args.out / "peer-logs"
    logs.mkdir(parents=True, exist_ok=True)
    # --only adds to (or replaces in) a saved run of the same document size.
    if args.only and target_file.exists():
        saved = json.loads(target_file.read_text())
        if saved.get("documentTokens") == target:
            saved.setdefault("runs", []).append(time.strftime("%Y-%m-%d %H:%M:%S"))
            return measure_into(saved, wanted, args, document, target, logs, target_file)
    results: dict[str, Any] = {
        "startedAt": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "documentTokens": target,
        "systems": {},
    }
    return measure_into(results, wanted, args, document, target, logs, target_file)


def measure_into(
    results: dict[str, Any],
    wanted: set[str],
    args: argparse.Namespace,
    document: str,
    target: int,
    logs: Path,
    target_file: Path,
) -> dict[str, Any]:
    log("installing what is missing (llama-server, llama-cpp-python's server, Node + OpenClaw)")
    llama_server_peer.find_binary() or llama_server_peer.install()
    if wanted & {"llama-cpp-python"}:
        peer_scenarios.install()
    if "openclaw" in wanted:
        openclaw_peer.install()
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("speed", lambda: run_speed(args.rounds)),
        ("ours", lambda: run_ours(document, target, args.runs)),
        *[
            (
                kind,
                lambda kind=kind: peer_scenarios.run_scenarios(
                    peer_factory(kind), document, args.quick
                ),
            )
            for kind in ("llama-server", "llama-server-nocache", "llama-cpp-python")
        ],
        ("openclaw", lambda: run_openclaw(document, logs)),
    ]
    for name, step in steps:
        if name not in wanted:
            continue
        log(f"{name}: running")
        started = time.monotonic()
        try:
            value = step()
        except Exception as exc:  # one system failing must not lose the others' figures
            value = {"failed": f"{type(exc).__name__}: {exc}"}
            log(f"{name}: FAILED {value['failed']}")
        key = "speed" if name == "speed" else None
        if key:
            results["speed"] = value
        else:
            results["systems"][name] = value
        results.setdefault("durationsS", {})[name] = round(time.monotonic() - started)
        target_file.write_text(json.dumps(results, indent=2))
        log(f"{name}: done in {results['durationsS'][name]} s")
    results["loadAverage"] = os.getloadavg()
    target_file.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main(sys.argv[1:]))
