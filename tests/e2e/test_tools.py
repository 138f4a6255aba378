"""The agent loop with tools, end to end: real CLI, real daemon, real embedded model.

Tool choice is forced (a grammar constrains the reply), so even the 135M model
makes well-formed calls; the assertions are on what the tools did and what
the transcript and trace record, and on the cache across model calls.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openclaw_daemon.observability.turn_record import prompt_tokens
from tests.conftest import Cli, transcript

pytestmark = pytest.mark.e2e


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


# Enough for a step's tool calls; bounds the small model's rambling answers.
MAX_TOKENS = ("--max-tokens", "128")


def agent(cli: Cli, workspace: Path, message: str, *args: str) -> dict[str, Any]:
    return cli.turn(message, *MAX_TOKENS, *args, cwd=workspace)


def calls(envelope: dict[str, Any], step: int = 0) -> list[dict[str, Any]]:
    return envelope["meta"]["steps"][step]["toolCalls"]


def test_read_a_file_and_answer_from_it(cli: Cli, workspace: Path) -> None:
    (workspace / "notes.txt").write_text("The secret code is 4721.\n")
    envelope = agent(
        cli, workspace, "What is the secret code in notes.txt?", "--tool-choice", "read"
    )
    [call] = calls(envelope)
    assert call["name"] == "read" and call["arguments"]["path"] == "notes.txt"
    assert call["result"] == "The secret code is 4721.\n" and not call["isError"]
    assert "4721" in envelope["payloads"][0]["text"]
    spans = [s["name"] for s in envelope["meta"]["trace"]["spans"]]
    assert "tool.read" in spans and spans.count("model.prefill") == 2
    assert {"prompt.grammar", "prompt.results"} <= set(spans)
    assert envelope["meta"]["trace"]["coverage"] >= 0.95  # a tool turn, too
    # The second model call only prefilled the tool result.
    second = envelope["meta"]["steps"][1]["usage"]
    assert second["cacheRead"] >= 0.9 * prompt_tokens(second)
    # OpenClaw's transcript shape: toolCall block, then a toolResult entry.
    entries = [
        e
        for e in transcript(envelope["meta"]["agentMeta"]["sessionFile"])
        if e["type"] == "message"
    ]
    roles = [e["message"]["role"] for e in entries]
    assert roles == ["user", "assistant", "toolResult", "assistant"]
    block = [b for b in entries[1]["message"]["content"] if b["type"] == "toolCall"][0]
    result = entries[2]["message"]
    assert result["toolCallId"] == block["id"] and result["toolName"] == "read"
    assert result["isError"] is False and "4721" in result["content"][0]["text"]
    assert [e["parentId"] for e in entries[1:]] == [e["id"] for e in entries[:-1]]


def test_a_call_cut_off_by_max_tokens_is_dropped_and_not_shown(cli: Cli, workspace: Path) -> None:
    (workspace / "notes.txt").write_text("The secret code is 4721.\n")
    proc = cli.run(
        "agent", "--local", "-m", "Read notes.txt.", "--tool-choice", "read",
        "--max-tokens", "6", "--json", cwd=workspace,
    )  # fmt: skip
    envelope = json.loads(proc.stdout)
    assert "cut off by --max-tokens 6" in proc.stderr
    assert envelope["meta"]["steps"][0]["toolCalls"] == []
    assert "<tool_call>" not in envelope["payloads"][0]["text"]


def test_write_only_when_allowed(cli: Cli, workspace: Path) -> None:
    message = "Write the word hello to hello.txt"
    # Forcing a write without permission is refused up front, before any model
    # work (a write the model picks by itself is refused at run time: see
    # tests/unit/test_tools.py).
    refused = cli.run(
        "agent",
        "--local",
        "-m",
        message,
        "--tool-choice",
        "write",
        *MAX_TOKENS,
        check=False,
        cwd=workspace,
    )
    assert refused.returncode == 2 and "add --allow write" in refused.stderr
    assert list(workspace.iterdir()) == []

    allowed = agent(cli, workspace, message, "--tool-choice", "write", "--allow", "write")
    [call] = calls(allowed)
    assert not call["isError"]
    written = workspace / call["arguments"]["path"]
    assert written.read_text() == call["arguments"]["content"]


def test_exec_is_killed_at_the_timeout_and_runs_with_the_callers_environment(
    cli: Cli, workspace: Path
) -> None:
    envelope = agent(
        cli,
        workspace,
        "Run this shell command: sleep 30",
        "--tool-choice",
        "exec",
        "--allow",
        "exec",
        "--exec-timeout",
        "1",
    )
    [call] = calls(envelope)
    assert call["arguments"]["command"] == "sleep 30"
    assert call["isError"] and "timed out after 1 s" in call["result"]
    assert call["durationMs"] < 5000  # killed at 1 s, not after the command's 30 s

    cli.extra_env["OPENCLAW_TEST_MARK"] = "from-the-caller"
    envelope = agent(
        cli,
        workspace,
        "Run this shell command: echo $OPENCLAW_TEST_MARK",
        "--tool-choice",
        "exec",
        "--allow",
        "exec",
        "--session-id",
        "env",
    )
    [call] = calls(envelope)
    assert call["result"].strip() == "from-the-caller"


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "page.html").write_text(
        "<html><head><script>var x = 1;</script></head><body><h1>Weather</h1>"
        "<p>The forecast says 17 degrees and sunny.</p></body></html>"
    )

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(site), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_web_fetch_from_a_local_server(cli: Cli, workspace: Path, web_server: str) -> None:
    url = f"{web_server}/page.html"
    envelope = agent(
        cli,
        workspace,
        f"Fetch {url} and tell me the forecast.",
        "--tool-choice",
        "web_fetch",
        "--allow",
        "web_fetch:private",  # the server is on 127.0.0.1, refused by default
    )
    [call] = calls(envelope)
    assert call["arguments"]["url"] == url and not call["isError"]
    assert "17 degrees and sunny" in call["result"]
    assert "var x" not in call["result"]  # scripts are not text


def test_two_calls_in_one_step_run_in_parallel(cli: Cli, workspace: Path) -> None:
    (workspace / "a.txt").write_text("alpha\n")
    (workspace / "b.txt").write_text("beta\n")
    envelope = agent(cli, workspace, "Read a.txt and b.txt.", "--tool-choice", "read")
    step = calls(envelope)
    assert sorted(c["arguments"]["path"] for c in step) == ["a.txt", "b.txt"]
    assert sorted(c["result"] for c in step) == ["alpha\n", "beta\n"]
    # One step, two calls, two spans; that they run side by side is timed in
    # tests/unit/test_tools.py with commands slow enough to tell.
    spans = [s for s in envelope["meta"]["trace"]["spans"] if s["name"] == "tool.read"]
    assert len(spans) == 2 and len(envelope["meta"]["steps"]) == 2


def test_multi_step_turn_hits_the_cache_on_every_call_after_the_first(
    cli: Cli, workspace: Path
) -> None:
    (workspace / "a.txt").write_text("alpha\n")
    envelope = agent(
        cli,
        workspace,
        "Find where alpha is mentioned.",
        "--tool-choice",
        "required",
        "--max-steps",
        "3",
    )
    steps = envelope["meta"]["steps"]
    assert len(steps) == 3 and all(s["toolCalls"] for s in steps[:2]) and not steps[2]["toolCalls"]
    # Each call reuses the whole prompt of the one before and what it generated
    # and kept: a trailing call cut off by --max-tokens is dropped from the tape
    # and the transcript alike (docs/recovery.md), so those tokens are not in
    # the next prompt at all; the rest, but at most the last generated token
    # (never evaluated), is reused. Only the tool results are prefilled. (The
    # >= 90% figure on a realistic context is scenario 7 in scripts/bench.)
    for before, after in zip(steps, steps[1:], strict=False):
        previous = prompt_tokens(before["usage"])
        assert after["usage"]["cacheRead"] >= previous, (before["usage"], after["usage"])
        appended = prompt_tokens(after["usage"]) - after["usage"]["cacheRead"]
        assert after["usage"]["input"] == appended
    total = envelope["meta"]["agentMeta"]["usage"]
    assert total["input"] == sum(s["usage"]["input"] for s in steps)


def test_max_steps_stops_the_loop_and_every_call_keeps_a_result(cli: Cli, workspace: Path) -> None:
    (workspace / "a.txt").write_text("alpha\n")
    proc = cli.run(
        "agent",
        "--local",
        "-m",
        "Read a.txt.",
        "--tool-choice",
        "read",
        "--max-steps",
        "1",
        "--json",
        *MAX_TOKENS,
        cwd=workspace,
    )
    envelope = json.loads(proc.stdout)
    assert "stopped after --max-steps 1" in proc.stderr
    assert envelope["meta"]["stopReason"] == "max_steps"
    [step] = envelope["meta"]["steps"]
    assert step["toolCalls"] and all("not run" in c["result"] for c in step["toolCalls"])
    entries = [
        e
        for e in transcript(envelope["meta"]["agentMeta"]["sessionFile"])
        if e["type"] == "message"
    ]
    call_ids = {
        b["id"]
        for e in entries
        for b in e["message"]["content"]
        if isinstance(b, dict) and b.get("type") == "toolCall"
    }
    result_ids = {
        e["message"]["toolCallId"] for e in entries if e["message"]["role"] == "toolResult"
    }
    assert call_ids and call_ids == result_ids
    # The session goes on normally after it.
    assert cli.turn("Thanks.", "--max-tokens", "4", cwd=workspace)["payloads"]
