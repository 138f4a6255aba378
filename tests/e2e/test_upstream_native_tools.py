"""End to end: native OpenAI tool calling (``edge.nativeTools``), via the real CLI and
daemon, on a real server we did not write: llama-cpp-python's, started with
``--chat_format chatml-function-calling`` (its own tool template), behind our
recording proxy so the test reads each request the daemon sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openclaw_daemon.tools.spec import TOOLS
from tests.conftest import Cli
from tests.upstream_fault_server import FaultServer
from tests.upstream_server import SERVED_ALIAS

pytestmark = pytest.mark.e2e

REF = f"local/{SERVED_ALIAS}"


def _config(cli: Cli, url: str) -> None:
    raw = {
        "models": {
            "providers": {
                "local": {
                    "baseUrl": url,
                    "api": "openai-completions",
                    "timeoutSeconds": 60,
                    "models": [{"id": SERVED_ALIAS, "contextWindow": 4096}],
                }
            }
        },
        "edge": {"nativeTools": [REF]},
    }
    (cli.state_dir / "openclaw.json").write_text(json.dumps(raw))


def _chat_bodies(proxy: FaultServer) -> list[dict[str, Any]]:
    return [
        json.loads(body)
        for (method, path), body in zip(proxy.requests, proxy.bodies, strict=True)
        if method == "POST" and path.endswith("/chat/completions")
    ]


def _entries(session_file: str) -> list[dict[str, Any]]:
    lines = Path(session_file).read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("type") == "message"]


def test_a_forced_native_call_runs_and_its_result_goes_back_as_a_tool_message(
    cli: Cli, native_tools_upstream_url: str, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("The launch code is 4417.\n")
    # Paths forwarded as they are, so the server's /extras/tokenize is found too.
    root = native_tools_upstream_url.removesuffix("/v1")
    with FaultServer(upstream=root, lifetime=300) as proxy:
        _config(cli, f"{proxy.url}/v1")
        proc = cli.run(
            "agent", "--local", "-m", "Read the file notes.txt.", "--json", "--model", REF,
            "--tool-choice", "read", "--max-tokens", "48", "--session-id", "n1",
            "--temperature", "0", cwd=tmp_path, timeout=300,
        )  # fmt: skip
        reply = json.loads(proc.stdout)
        first, second = _chat_bodies(proxy)

        # The call was forced natively: our tools as OpenAI tools, the named function
        # as tool_choice, and no tools section of ours in the system message.
        assert [t["function"]["name"] for t in first["tools"]] == [t.name for t in TOOLS]
        assert first["tool_choice"] == {"type": "function", "function": {"name": "read"}}
        assert "grammar" not in first
        system = first["messages"][0]
        assert system["role"] == "system" and "<tool_call>" not in system["content"]
        assert first["messages"][1:] == [{"role": "user", "content": "Read the file notes.txt."}]

        # The server's call ran here, and its result is in the transcript.
        step = reply["meta"]["steps"][0]
        [call] = step["toolCalls"]
        assert call["name"] == "read" and isinstance(call["arguments"].get("path"), str)
        assert len(reply["meta"]["steps"]) == 2  # the call, then the answer on its result
        assert "tool.read" in [s["name"] for s in reply["meta"]["trace"]["spans"]]
        entries = _entries(reply["meta"]["agentMeta"]["sessionFile"])
        assert [e["message"]["role"] for e in entries] == [
            "user", "assistant", "toolResult", "assistant",
        ]  # fmt: skip
        asked, answered = entries[1]["message"], entries[2]["message"]
        [block] = [b for b in asked["content"] if b["type"] == "toolCall"]
        # llama-cpp-python's own call id, kept, and the arguments as it generated them.
        assert block["id"].startswith("call_") and block["id"] == answered["toolCallId"]
        assert json.loads(block["argumentsText"]) == block["arguments"] == call["arguments"]
        result = answered["content"][0]["text"]
        if call["arguments"]["path"] == "notes.txt":
            assert "4417" in result and not answered["isError"]

        # The second request carried the history natively: the assistant's tool_calls,
        # then the result as a tool message answering its id; append-only.
        assert second["messages"][: len(first["messages"])] == first["messages"]
        assistant, tool = second["messages"][len(first["messages"]) :]
        assert assistant == {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": "read", "arguments": block["argumentsText"]},
                }
            ],
        }
        assert tool == {"role": "tool", "tool_call_id": block["id"], "content": result}
        assert "tool_choice" not in second  # a named tool forces the first call only
        assert reply["meta"]["trace"]["cache"]["request"]["appendOnly"] is True

        # The next turn rebuilds that history from the stored transcript, byte for
        # byte: its request starts with the whole last request of the turn before.
        again = cli.turn(
            "Thanks.", "--model", REF, "--max-tokens", "8", "--session-id", "n1",
            "--temperature", "0", cwd=tmp_path, timeout=300,
        )  # fmt: skip
        third = _chat_bodies(proxy)[2]
        assert third["messages"][: len(second["messages"])] == second["messages"]
        last_reply = entries[3]["message"]["content"]
        last_text = last_reply[0]["text"] if last_reply else ""
        assert third["messages"][len(second["messages"])] == {
            "role": "assistant",
            "content": last_text,
        }
        assert third["messages"][-1] == {"role": "user", "content": "Thanks."}
        cache = again["meta"]["trace"]["cache"]["request"]
        assert cache["appendOnly"] is True and cache["previousTokens"] > 0
