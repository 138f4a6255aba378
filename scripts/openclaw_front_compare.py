"""The real OpenClaw CLI on our OpenAI front (``openclaw serve``) beside the same CLI on
llama-server: the same session of turns on each, one run, per-turn cached share and
time to first token (issue 18's "must show"); then each engine is restarted and the
session continued once (llama-server starts cold; our daemon restores from disk).

    .venv/bin/python scripts/openclaw_front_compare.py [--turns 4] [--doc-tokens 1500]
        [--out bench-results/openclaw-front.json]

Both engines sit behind openclaw_peer's recording proxy, which reads llama-server's
``timings`` from each reply (our front sends the same keys), so the two columns are
measured the same way. Each engine gets a fresh OpenClaw home and a fresh server:
llama-server with its defaults at -c 32768 (OpenClaw's head is ~11k tokens), ours a
daemon at --n-ctx 32768 in its own state dir. Standard library only; the product
is run as a command, as a user runs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OPENCLAW = Path(sys.executable).with_name("openclaw")
RESTART_FOLLOW_UP = "One more word, please."


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class OurFront:
    """``openclaw serve`` on its own state dir (and so its own daemon)."""

    def __init__(self, state: Path, n_ctx: int) -> None:
        self.state = state
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        self.env["OPENCLAW_STATE_DIR"] = str(state)
        self.process = subprocess.Popen(
            [str(OPENCLAW), "serve", "--port", "0", "--n-ctx", str(n_ctx)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()
        self.lines: list[str] = []

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line)
                if "OpenAI-compatible API on" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(600):
            self.stop()
            raise SystemExit("openclaw serve did not start:\n" + "".join(self.lines))
        found = re.search(r"http://(\S+)/v1", "".join(self.lines))
        assert found
        self.url = f"http://{found.group(1)}"

    def restart_daemon(self) -> None:
        """Stop the daemon only: the front starts it again on the next request."""
        subprocess.run(
            [str(OPENCLAW), "daemon", "stop"], env=self.env, capture_output=True, timeout=60
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        subprocess.run(
            [str(OPENCLAW), "daemon", "stop"], env=self.env, capture_output=True, timeout=60
        )


def session(peer: Any, bench: Any, document: str, turns: int, name: str) -> list[dict[str, Any]]:
    rows = [peer.turn(bench.prime_message(document), name)]
    for n in range(turns - 1):
        rows.append(peer.turn(bench.FOLLOW_UPS[n % len(bench.FOLLOW_UPS)], name))
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    warm = rows[1:]

    def share(row: dict[str, Any]) -> float:
        total = row["prefillTokens"] + row["cachedTokens"]
        return row["cachedTokens"] / total if total else 0.0

    return {
        "turns": [
            {
                "input": r["input"],
                "cachedTokens": r["cachedTokens"],
                "prefillTokens": r["prefillTokens"],
                "cachedShare": round(share(r), 4),
                "ttftMs": r["ttftMs"],
                "wallMs": r["wallMs"],
                "modelMs": r["modelMs"],
                "outsideModelMs": r["outsideModelMs"],
                "exitCode": r["exitCode"],
            }
            for r in rows
        ],
        "warmMedian": {
            "cachedShare": round(statistics.median(share(r) for r in warm), 4) if warm else None,
            "prefillTokens": statistics.median(r["prefillTokens"] for r in warm) if warm else None,
            "ttftMs": statistics.median(r["ttftMs"] or 0 for r in warm) if warm else None,
            "wallMs": statistics.median(r["wallMs"] for r in warm) if warm else None,
        },
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="openclaw_front_compare.py")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--doc-tokens", type=int, default=1500)
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args(argv)
    peer_lib, bench = _load("openclaw_peer"), _load("bench")
    ls_lib = _load("llama_server_peer")
    binary = ls_lib.find_binary()
    if binary is None:
        raise SystemExit("no llama-server: run scripts/llama_server_peer.py install")
    gguf = peer_lib._default_gguf()
    document = bench.workspace_document(args.doc_tokens)
    work = Path(tempfile.mkdtemp(prefix="oc-front-compare-"))
    results: dict[str, Any] = {"turns": args.turns, "docTokens": args.doc_tokens}
    try:
        for engine in ("llama-server", "openclaw-serve"):
            print(f"-- {engine}", file=sys.stderr, flush=True)
            server: Any
            if engine == "llama-server":
                server = ls_lib.LlamaServer(binary, gguf, work / "llama-server.log", 32768)
                server.wait_healthy()
            else:
                server = OurFront(work / "state", 32768)
            peer = peer_lib.OpenClawPeer(work / f"home-{engine}")
            peer.start(server.url)
            name = f"oc-{engine}"
            try:
                rows = session(peer, bench, document, args.turns, name)
                # A restart of the engine, then one more turn of the same session.
                if engine == "llama-server":
                    server.stop()
                    server = ls_lib.LlamaServer(binary, gguf, work / "llama-server-2.log", 32768)
                    server.wait_healthy()
                    peer.retarget(server.url)
                else:
                    server.restart_daemon()
                after = peer.turn(RESTART_FOLLOW_UP, name)
            finally:
                peer.stop()
                server.stop()
            results[engine] = summary(rows)
            results[engine]["afterRestart"] = summary([after])["turns"][0]
            print(json.dumps(results[engine]["warmMedian"]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
