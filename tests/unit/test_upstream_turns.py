"""Upstream turns (``upstream.turns``) on the fault-injecting server alone: the error
paths a real model cannot be made to take on demand. A tool call that runs and then
an overflow or a server error on the next call; ``--tool-choice none`` with a reply
that spells a call. What the transcript holds afterwards is the point."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from openclaw_daemon import config
from openclaw_daemon.observability.tracing import Trace
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.turn.session_tapes import SessionTapes
from openclaw_daemon.upstream.routing import Route
from openclaw_daemon.upstream.targets import UpstreamTargets
from openclaw_daemon.upstream.turns import UpstreamTurns
from openclaw_daemon.wire.errors import (
    ContextOverflowError,
    UpstreamContextOverflowError,
    UpstreamError,
)
from openclaw_daemon.wire.requests import TurnOptions
from openclaw_sessions.store import SessionStore
from tests.upstream_fault_server import FaultServer

READ_CALL = '<tool_call>\n{"name": "read", "arguments": {"path": "notes.txt"}}\n</tool_call>'


class _Tapes:
    """The embedded engine's tape registry, as far as upstream turns use it."""

    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def forget(self, ref: Any) -> None:
        self.forgotten.append(ref.key)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(lifetime=60) as fault:
        yield fault


@pytest.fixture
def turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: FaultServer) -> UpstreamTurns:
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("OPENCLAW_STATE_DIR", str(state))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("The code is 4417.\n")
    provider = {"baseUrl": server.url, "timeoutSeconds": 10, "models": [{"id": "m"}]}
    (state / "openclaw.json").write_text(json.dumps({"models": {"providers": {"f": provider}}}))
    targets = UpstreamTargets()
    turns = UpstreamTurns(config.resolve_paths(), cast(SessionTapes, _Tapes()), targets)
    targets.tokenizer(targets.chain("f/m")[0])  # detected now: only chat requests follow
    return turns


def run(turns: UpstreamTurns, **options: Any) -> tuple[Any, list[dict[str, Any]]]:
    frames: list[dict[str, Any]] = []
    trace = Trace()
    ctx = TurnContext(trace, frames.append, lambda: False, trace.origin, turn_id="t")
    turn = TurnOptions(message="Read notes.txt.", session_id="s1", model="f/m", **options)
    return turns.run(turn, ctx, Route("f/m", "--model")), frames


def transcript(turns: UpstreamTurns) -> list[dict[str, Any]]:
    store = SessionStore(turns.paths.agent_sessions_dir("main"), "main")
    entries = store.load_entries(store.find("s1"))
    return [e["message"] for e in entries if e.get("type") == "message"]


def chat_posts(server: FaultServer) -> int:
    return sum(m == "POST" and p.endswith("/chat/completions") for m, p in server.requests)


def test_tool_choice_none_runs_no_tool_even_if_the_reply_spells_one(
    turns: UpstreamTurns, server: FaultServer
) -> None:
    server.words = (READ_CALL,)
    result, frames = run(turns, tool_choice="none")
    assert len(result["steps"]) == 1 and result["steps"][0]["toolCalls"] == []
    assert "<tool_call>" in result["text"]  # shown as the text it is
    assert not any(f["type"] == "tool" for f in frames)
    assert [m["role"] for m in transcript(turns)] == ["user", "assistant"]


def test_an_overflow_after_a_tool_ran_is_not_replayed(
    turns: UpstreamTurns, server: FaultServer
) -> None:
    server.words = (READ_CALL,)
    before = chat_posts(server)
    server.set_mode("overflow", 1, after=1)  # the call runs read; the next one overflows
    with pytest.raises(ContextOverflowError) as raised:
        run(turns, max_steps=3)
    # Plainly an overflow: not one that anything above would compact and retry.
    assert not isinstance(raised.value, UpstreamContextOverflowError)
    assert chat_posts(server) == before + 2  # no summary request, no replay
    messages = transcript(turns)
    assert [m["role"] for m in messages] == ["user", "assistant", "toolResult", "assistant"]
    assert "4417" in messages[2]["content"][0]["text"]  # read ran, once
    assert messages[3]["stopReason"] == "error" and "context" in messages[3]["errorMessage"]


def test_a_server_error_at_a_later_step_is_stored_as_interrupted(
    turns: UpstreamTurns, server: FaultServer
) -> None:
    server.words = (READ_CALL,)
    before = chat_posts(server)
    server.set_mode("500", 1, after=1)
    with pytest.raises(UpstreamError, match="500"):
        run(turns, max_steps=3)
    assert chat_posts(server) == before + 2  # a tool ran: the second call is not retried
    messages = transcript(turns)
    assert [m["role"] for m in messages] == ["user", "assistant", "toolResult", "assistant"]
    assert messages[1]["stopReason"] == "toolUse"
    assert messages[3]["stopReason"] == "error" and "500" in messages[3]["errorMessage"]


def test_an_overflow_before_anything_ran_compacts_once_then_fails_plainly(
    turns: UpstreamTurns, server: FaultServer
) -> None:
    """A one-turn session cannot be compacted: the overflow is reported, not looped."""
    server.set_mode("overflow", 5)
    before = chat_posts(server)
    with pytest.raises(ContextOverflowError, match="too short to compact"):
        run(turns)
    assert chat_posts(server) == before + 1
    assert transcript(turns) == []  # nothing shown, nothing run: nothing stored


def test_routing_reads_the_sessions_size_not_its_summed_usage(turns: UpstreamTurns) -> None:
    """promptTokensAbove/Below compare the session's last size (``sessionTokens``: the
    last call's prompt and reply), not the turn's usage summed over its tool calls;
    an index entry from before that field is judged by its total."""
    path = Path(turns.targets.config().path)
    raw = json.loads(path.read_text())
    raw["edge"] = {"routing": [{"when": {"promptTokensAbove": 3000}, "model": "f/m"}]}
    path.write_text(json.dumps(raw))
    store = SessionStore(turns.paths.agent_sessions_dir("main"), "main")
    ref = store.resolve("s1")
    options = TurnOptions(message="Hi.", session_id="s1")
    store.touch(ref, totalTokens=9000, sessionTokens=1200)
    assert turns.route(options) == Route(None, "default")
    store.touch(ref, totalTokens=900, sessionTokens=3500)
    assert turns.route(options) == Route("f/m", "edge.routing[0]: promptTokensAbove 3000")
    old = store.load_index()
    del old[ref.key]["sessionTokens"]
    store.index_file.write_text(json.dumps(old))
    assert turns.route(options).model is None  # judged by totalTokens 900
