"""End to end: turns through an upstream engine, via the real CLI and daemon, on a real
OpenAI-compatible server we did not write (llama-cpp-python's, serving the embedded
model on 127.0.0.1), with a fault-injecting proxy between them where a test needs
one. The transcript, the trace and ``--json`` name the engine that answered; usage
is the server's own report; consecutive requests of a session are append-only;
fallbacks, retries and cut streams behave as docs/scale-out.md says."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OPENCLAW, Cli
from tests.upstream_fault_server import FaultServer
from tests.upstream_server import SERVED_ALIAS, free_port

pytestmark = pytest.mark.e2e

REF = f"local/{SERVED_ALIAS}"


def _config(cli: Cli, providers: dict[str, str], **defaults: Any) -> None:
    """openclaw.json with one model ``SERVED_ALIAS`` per provider (id -> baseUrl)."""
    raw: dict[str, Any] = {
        "models": {
            "providers": {
                pid: {
                    "baseUrl": url,
                    "api": "openai-completions",
                    "timeoutSeconds": 60,
                    "models": [{"id": SERVED_ALIAS, "contextWindow": 4096}],
                }
                for pid, url in providers.items()
            }
        }
    }
    if defaults:
        raw["agents"] = {"defaults": {"model": defaults}}
    (cli.state_dir / "openclaw.json").write_text(json.dumps(raw))


def _turn(cli: Cli, message: str, *args: str, check: bool = True) -> Any:
    proc = cli.run(
        "agent", "--local", "-m", message, "--json", "--max-tokens", "12", *args, check=check
    )
    return proc if not check else json.loads(proc.stdout)


def _transcript(cli: Cli, session_file: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(session_file).read_text().splitlines()]


def _span(reply: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in reply["meta"]["trace"]["spans"] if s["name"] == name)


def test_turns_on_an_upstream_are_append_only_and_name_it(cli: Cli, upstream_url: str) -> None:
    _config(cli, {"local": upstream_url})
    first = _turn(cli, "Say hi.", "--model", REF, "--session-id", "up1")
    meta = first["meta"]["agentMeta"]
    assert (meta["provider"], meta["model"]) == ("local", SERVED_ALIAS)
    assert first["payloads"][0]["text"].strip()
    prefill = _span(first, "model.prefill")
    assert prefill["engine"] == f"upstream:{REF}" and prefill["tier"] == "upstream:local"
    # llama-cpp-python's server reports no usage when streaming: the counts are our
    # own, from its /extras/tokenize (not an estimate), and cached tokens are unknown.
    tokenize = _span(first, "prompt.tokenize")
    assert tokenize["tokens"] > 20 and tokenize["estimate"] is False
    assert tokenize["tokenizer"] == "llama-cpp-python"

    second = _turn(cli, "And again.", "--model", REF, "--session-id", "up1")
    request = second["meta"]["trace"]["cache"]["request"]
    assert request["previousTokens"] > 0 and request["appendOnly"] is True
    assert request["sharedTokens"] == request["previousTokens"]
    assert "append-only" in second["meta"]["trace"]["cache"]["summary"]

    entries = _transcript(cli, second["meta"]["agentMeta"]["sessionFile"])
    replies = [e["message"] for e in entries if e.get("message", {}).get("role") == "assistant"]
    assert len(replies) == 2
    assert {(r["provider"], r["api"], r["model"]) for r in replies} == {
        ("local", "openai-completions", SERVED_ALIAS)
    }
    assert all(r["stopReason"] in ("stop", "length") for r in replies)
    # The embedded model was not loaded for any of it: the daemon serves both, and an
    # embedded turn on the same session continues the transcript the upstream wrote.
    third = _turn(cli, "Thanks.", "--session-id", "up1")
    assert third["meta"]["agentMeta"]["provider"] == "openclaw-edge"
    assert len(_transcript(cli, third["meta"]["agentMeta"]["sessionFile"])) == len(entries) + 2


def test_primary_and_fallback_in_order(cli: Cli, upstream_url: str) -> None:
    gone = f"http://127.0.0.1:{free_port()}/v1"
    _config(cli, {"gone": gone, "local": upstream_url}, primary=f"gone/{SERVED_ALIAS}",
            fallbacks=[REF])  # fmt: skip
    proc = cli.run("agent", "--local", "-m", "Hi.", "--json", "--max-tokens", "8")
    reply = json.loads(proc.stdout)
    assert reply["meta"]["agentMeta"]["provider"] == "local"
    assert reply["meta"]["engine"] == f"upstream:{REF}"
    assert reply["meta"]["fallbackFrom"][0].startswith(f"gone/{SERVED_ALIAS}: ")
    assert "connection refused" in reply["meta"]["fallbackFrom"][0]
    assert f"trying {REF}" in proc.stderr
    fallback = _span(reply, "upstream.fallback")
    assert fallback["engine"] == f"upstream:gone/{SERVED_ALIAS}"


def test_a_503_is_retried_and_a_cut_stream_is_kept_as_interrupted(
    cli: Cli, upstream_url: str
) -> None:
    with FaultServer(upstream=upstream_url, lifetime=240) as fault:
        _config(cli, {"local": fault.url})
        _turn(cli, "Say hi.", "--model", REF, "--session-id", "f1")  # tokenizer detected

        def chat_posts() -> int:
            return sum(m == "POST" and p.endswith("/chat/completions") for m, p in fault.requests)

        before = chat_posts()
        fault.retry_after = "0"
        fault.set_mode("503", 1)
        ok = _turn(cli, "Say hi.", "--model", REF, "--session-id", "f1")
        assert ok["payloads"][0]["text"].strip()
        assert chat_posts() == before + 2  # the 503, then the retry that answered

        fault.cut_after = 6  # some of the reply streams, then the connection drops
        fault.set_mode("cut", 1)
        proc = _turn(cli, "Count to twenty.", "--model", REF, "--session-id", "f1", check=False)
        assert proc.returncode != 0 and "cut" in proc.stderr and "local" in proc.stderr
    entries = _transcript(cli, ok["meta"]["agentMeta"]["sessionFile"])
    last = entries[-1]["message"]
    # What the user saw is kept, marked as an error: never a complete reply.
    assert last["role"] == "assistant" and last["stopReason"] == "error"
    assert "cut" in last["errorMessage"]
    assert [e["message"]["role"] for e in entries[-2:]] == ["user", "assistant"]


def test_overflow_compacts_on_the_upstream_and_retries_once(cli: Cli, upstream_url: str) -> None:
    with FaultServer(upstream=upstream_url, lifetime=240) as fault:
        _config(cli, {"local": fault.url})
        notes = " ".join(
            f"Note {i}: the meeting moved to room {i} on floor {i % 5}." for i in range(30)
        )
        for text in (f"My name is Ada. Keep these notes: {notes}", "I like tea."):
            _turn(cli, text, "--model", REF, "--session-id", "o1", "--max-tokens", "24")
        fault.set_mode("overflow", 1)
        reply = _turn(cli, "What do I like?", "--model", REF, "--session-id", "o1")
    assert reply["payloads"][0]["text"].strip()
    names = [s["name"] for s in reply["meta"]["trace"]["spans"]]
    assert "session.compact" in names and "compaction.summary" in names
    entries = _transcript(cli, reply["meta"]["agentMeta"]["sessionFile"])
    compaction = next(e for e in entries if e.get("type") == "compaction")
    assert compaction["summary"].strip() and compaction["tokensAfter"] < compaction["tokensBefore"]
    # The summary was a continuation of the cached conversation, not a cold prompt:
    # its request repeated the session's previous one (the proxy saw it).
    assert entries[-1]["message"]["stopReason"] in ("stop", "length")


def test_unknown_upstream_model_and_bad_config_are_clear(cli: Cli, upstream_url: str) -> None:
    _config(cli, {"local": upstream_url})
    proc = _turn(cli, "hi", "--model", "local/nope", check=False)
    assert proc.returncode == 2 and "has no model 'nope'" in proc.stderr
    assert not (cli.state_dir / "run" / "daemon.json").exists()  # nothing was started


def test_sessions_compact_runs_on_the_upstream_and_prefills_ahead(
    cli: Cli, upstream_url: str
) -> None:
    _config(cli, {"local": upstream_url})
    notes = " ".join(
        f"Note {i}: the meeting moved to room {i} on floor {i % 5}." for i in range(30)
    )
    for text in (f"My name is Ada. Keep these notes: {notes}", "I like tea.", "I live in Oslo."):
        _turn(cli, text, "--model", REF, "--session-id", "c1", "--max-tokens", "16")
    done = json.loads(cli.run("sessions", "compact", "c1", "--json").stdout)
    assert done["engine"] == f"upstream:{REF}"
    assert done["summary"].strip() and done["tokensAfter"] < done["tokensBefore"]
    assert done["prefillAheadTokens"] > 0 and done["prefillAheadMs"] > 0
    status = json.loads(cli.run("daemon", "status", "--json").stdout)
    assert status["upstream"]["compactions"] == 1 and status["upstream"]["prefilledAhead"] == 1
    assert status["upstream"]["turnsServed"] == 3
    # The follow-up's request extends the layout prefilled ahead: append-only.
    reply = _turn(cli, "What do I like?", "--model", REF, "--session-id", "c1")
    request = reply["meta"]["trace"]["cache"]["request"]
    assert request["appendOnly"] is True and request["previousTokens"] > 0
    entries = _transcript(cli, reply["meta"]["agentMeta"]["sessionFile"])
    assert [e["type"] for e in entries].count("compaction") == 1


def test_a_session_past_the_threshold_is_compacted_upstream_in_idle_time(
    cli: Cli, upstream_url: str
) -> None:
    """A turn that leaves the session past 75% of the model's contextWindow marks it
    due; once the session is quiet the daemon compacts it on that upstream and
    prefills the new layout ahead, so the next turn extends what the server holds."""
    _config(cli, {"local": upstream_url})
    notes = " ".join(
        f"Note {i}: the meeting moved to room {i} on floor {i % 5}." for i in range(30)
    )
    for text in (f"My name is Ada. Keep these notes: {notes}", "I like tea."):
        _turn(cli, text, "--model", REF, "--session-id", "b1", "--max-tokens", "16")
    index = json.loads(
        (cli.state_dir / "agents" / "main" / "sessions" / "sessions.json").read_text()
    )
    size = next(v for v in index.values() if v.get("sessionId") == "b1")["sessionTokens"]
    # A window the next turn still fits in, and leaves the session past 75% of.
    path = cli.state_dir / "openclaw.json"
    raw = json.loads(path.read_text())
    raw["models"]["providers"]["local"]["models"][0]["contextWindow"] = int(size * 1.25)
    path.write_text(json.dumps(raw))
    _turn(cli, "I live in Oslo.", "--model", REF, "--session-id", "b1", "--max-tokens", "8")
    deadline = time.monotonic() + 120
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = json.loads(cli.run("daemon", "status", "--json").stdout)["upstream"]
        if status["background"]:
            break
        time.sleep(0.5)
    assert status["background"] == 1 and status["compactions"] == 1, status
    assert status["prefilledAhead"] == 1, status
    reply = _turn(cli, "Where do I live?", "--model", REF, "--session-id", "b1")
    assert reply["meta"]["trace"]["cache"]["request"]["appendOnly"] is True
    entries = _transcript(cli, reply["meta"]["agentMeta"]["sessionFile"])
    compaction = next(e for e in entries if e.get("type") == "compaction")
    assert compaction["tokensAfter"] < compaction["tokensBefore"]


def test_routing_rules_choose_the_engine_and_say_why(cli: Cli, upstream_url: str) -> None:
    _config(cli, {"local": upstream_url})
    path = cli.state_dir / "openclaw.json"
    raw = json.loads(path.read_text())
    raw["edge"] = {"routing": [{"when": {"toolChoice": "none"}, "model": REF}]}
    path.write_text(json.dumps(raw))
    routed = _turn(cli, "Hi.", "--tool-choice", "none", "--session-id", "r1")
    assert routed["meta"]["route"] == {
        "engine": f"upstream:{REF}",
        "rule": "edge.routing[0]: toolChoice none",
    }
    assert routed["meta"]["agentMeta"]["provider"] == "local"
    plain = _turn(cli, "Hi.", "--session-id", "r2")
    assert plain["meta"]["route"] == {"engine": "embedded", "rule": "default"}
    assert plain["meta"]["agentMeta"]["provider"] == "openclaw-edge"
    stats = json.loads(cli.run("stats", "--json").stdout)
    assert stats["engines"] == {f"upstream:{REF}": 1, "embedded": 1}
    assert stats["routes"]["edge.routing[0]: toolChoice none"] == 1
    assert "upstream:local" in stats["cache"]["lookups"]
    assert f"upstream:{REF} 1" in cli.run("stats").stdout
    # A broken rule never stops a turn: one naming its engine runs there, one that
    # does not runs on the embedded model, and its route says the config was unusable.
    raw["edge"] = {"routing": [{"when": {"sizeOver": 1}, "model": REF}]}
    path.write_text(json.dumps(raw))
    assert _turn(cli, "Hi.", "--model", REF, "--session-id", "r1")["meta"]["route"] == {
        "engine": f"upstream:{REF}",
        "rule": "--model",
    }
    fallback = _turn(cli, "Hi.", "--session-id", "r2")["meta"]["route"]
    assert fallback["engine"] == "embedded" and "unusable" in fallback["rule"]


def test_a_forced_tool_call_runs_through_the_upstream(
    cli: Cli, upstream_url: str, tmp_path: Path
) -> None:
    """--tool-choice read: the grammar goes to the server (llama.cpp's take one), the
    tool runs here, its result goes back upstream, and the transcript has it all."""
    _config(cli, {"local": upstream_url})
    (tmp_path / "notes.txt").write_text("The launch code is 4417.\n")
    proc = cli.run(
        "agent", "--local", "-m", "Read notes.txt and tell me the code.", "--json",
        "--model", REF, "--tool-choice", "read", "--max-tokens", "48", "--session-id", "t1",
        cwd=tmp_path,
    )  # fmt: skip
    reply = json.loads(proc.stdout)
    calls = reply["meta"]["steps"][0]["toolCalls"]
    assert [c["name"] for c in calls] == ["read"] and calls[0]["arguments"]["path"] == "notes.txt"
    assert "4417" in calls[0]["result"] and not calls[0]["isError"]
    assert len(reply["meta"]["steps"]) == 2  # the call, then the answer on its result
    names = [s["name"] for s in reply["meta"]["trace"]["spans"]]
    assert "prompt.grammar" in names and "tool.read" in names
    entries = _transcript(cli, reply["meta"]["agentMeta"]["sessionFile"])
    roles = [e["message"]["role"] for e in entries if e.get("type") == "message"]
    assert roles == ["user", "assistant", "toolResult", "assistant"]
    assert entries[-3]["message"]["stopReason"] == "toolUse"
    # The index keeps the session's size (the last call's prompt and reply) beside the
    # turn's summed usage: routing's promptTokensAbove/Below reads the size.
    index = json.loads((Path(reply["meta"]["agentMeta"]["sessionFile"]).parent /
                        "sessions.json").read_text())  # fmt: skip
    row = next(v for v in index.values() if v.get("sessionId") == "t1")
    steps = reply["meta"]["steps"]
    assert row["sessionTokens"] == steps[-1]["usage"]["total"]
    assert row["totalTokens"] == sum(s["usage"]["total"] for s in steps) > row["sessionTokens"]


def test_concurrent_upstream_turns_of_two_sessions_both_complete(
    cli: Cli, upstream_url: str
) -> None:
    """Upstream turns run on their own threads, in parallel: each keeps its own reply,
    session and request check (no state shared between turns)."""
    _config(cli, {"local": upstream_url})
    args = ["agent", "--local", "--json", "--max-tokens", "8", "--model", REF]
    cli.run("daemon", "start", timeout=300)
    procs = [
        subprocess.Popen(
            [str(OPENCLAW), *args, "-m", f"Say the word {word}.", "--session-id", f"p{i}"],
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i, word in enumerate(("apple", "river"))
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    replies = [json.loads(out) for out, _ in outs]
    assert [r["meta"]["agentMeta"]["sessionId"] for r in replies] == ["p0", "p1"]
    for reply in replies:
        entries = _transcript(cli, reply["meta"]["agentMeta"]["sessionFile"])
        texts = [e["message"] for e in entries if e.get("type") == "message"]
        assert [m["role"] for m in texts] == ["user", "assistant"]
        assert texts[1]["stopReason"] in ("stop", "length")


def test_thinking_goes_to_a_reasoning_upstream_model_only(cli: Cli) -> None:
    """--thinking is sent as reasoning_effort to a model marked "reasoning" in
    openclaw.json, and to no other, which gets a notice instead."""
    with FaultServer(lifetime=120) as server:
        models = [
            {"id": "thinker", "contextWindow": 4096, "reasoning": True},
            {"id": "plain", "contextWindow": 4096},
        ]
        raw = {
            "models": {
                "providers": {
                    "srv": {"baseUrl": server.url + "/v1", "api": "openai-completions",
                            "timeoutSeconds": 30, "models": models}
                }
            }
        }  # fmt: skip
        (cli.state_dir / "openclaw.json").write_text(json.dumps(raw))

        def sent(model: str) -> tuple[dict[str, Any], str]:
            before = len(server.bodies)
            proc = cli.run(
                "agent", "--local", "-m", "hi", "--model", f"srv/{model}", "--thinking", "xhigh",
                "--session-id", f"think-{model}", "--max-tokens", "8",
            )  # fmt: skip
            chats = [json.loads(b) for b in server.bodies[before:] if b"messages" in b]
            assert chats, server.requests
            return chats[-1], proc.stderr

        body, stderr = sent("thinker")
        assert body["reasoning_effort"] == "high" and "ignored" not in stderr
        body, stderr = sent("plain")
        assert "reasoning_effort" not in body
        assert '--thinking xhigh: ignored, srv/plain is not marked "reasoning"' in stderr
