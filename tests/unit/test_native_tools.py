"""Native OpenAI tool calling (``edge.nativeTools``): the calls put together from
streamed deltas, the request's tools and tool_choice, the history rebuilt from the
transcript as the live turn sent it, the config key, and a server that refuses tools.
Turns run on the fault-injecting server alone, streaming ``tool_calls`` events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from openclaw_daemon import config
from openclaw_daemon.model.tape import PromptPlan, TokenTape
from openclaw_daemon.observability.tracing import Trace
from openclaw_daemon.observability.turn_record import usage_buckets
from openclaw_daemon.tools.runner import ToolOutcome
from openclaw_daemon.tools.spec import TOOLS, ParsedReply, ToolCall
from openclaw_daemon.turn.agent_loop import Step
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.turn.model_calls import Generation
from openclaw_daemon.turn.persist import turn_entries
from openclaw_daemon.turn.session_tapes import SessionTapes
from openclaw_daemon.upstream import config_file, native_transcript
from openclaw_daemon.upstream.chat_stream import ChatEnd
from openclaw_daemon.upstream.native_tools import (
    CallAccumulator,
    NativeRequest,
    parsed_calls,
    tool_choice,
)
from openclaw_daemon.upstream.request_tokens import message_text
from openclaw_daemon.upstream.routing import Route
from openclaw_daemon.upstream.targets import UpstreamTargets
from openclaw_daemon.upstream.turns import UpstreamTurns
from openclaw_daemon.wire.errors import ConfigError, UpstreamError
from openclaw_daemon.wire.requests import TurnOptions
from openclaw_sessions.store import SessionStore
from tests.upstream_fault_server import FaultServer


def _delta(calls: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": finish}]}


def _fragment(index: int, arguments: str, **first: str) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if "name" in first:
        function["name"] = first["name"]
    item: dict[str, Any] = {"index": index, "function": function}
    if "id" in first:
        item.update(id=first["id"], type="function")
    return item


# --- the calls of a reply ---------------------------------------------------------


def test_openai_deltas_two_calls_interleaved_by_index() -> None:
    acc = CallAccumulator()
    acc.feed([_fragment(0, "", id="call_a", name="read")])
    acc.feed([_fragment(1, '{"query"', id="call_b", name="search")])
    acc.feed([_fragment(0, '{"path": "no')])
    acc.feed([_fragment(1, ': "x"}')])
    acc.feed([_fragment(0, 'tes.txt"}')])
    calls = acc.calls()
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_a", "read", '{"path": "notes.txt"}'),
        ("call_b", "search", '{"query": "x"}'),
    ]


def test_llama_cpp_python_repeats_the_id_and_name_in_every_fragment() -> None:
    acc = CallAccumulator()
    for piece in ('{"path"', ': "a.txt"', "}"):
        acc.feed([_fragment(0, piece, id="call__0_read_cmpl-1", name="read")])
    [call] = acc.calls()
    assert (call.id, call.name, call.arguments) == (
        "call__0_read_cmpl-1",
        "read",
        '{"path": "a.txt"}',
    )


def test_a_non_streamed_message_has_whole_calls_without_an_index() -> None:
    acc = CallAccumulator()
    acc.feed(
        [
            {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "exec", "arguments": {"a": 1}}},
        ]
    )
    assert [(c.id, c.name, c.arguments) for c in acc.calls()] == [
        ("c1", "read", "{}"),
        ("c2", "exec", '{"a": 1}'),
    ]


def test_fragments_without_index_or_id_continue_the_call_under_way() -> None:
    acc = CallAccumulator()
    acc.feed([{"id": "c1", "function": {"name": "read", "arguments": '{"pa'}}])
    acc.feed([{"function": {"arguments": 'th": "x"}'}}])
    [call] = acc.calls()
    assert call.arguments == '{"path": "x"}'


def test_calls_are_checked_strictly_and_keep_their_text() -> None:
    acc = CallAccumulator()
    acc.feed([_fragment(0, '{"path":  "a"}', id="s1", name="read")])
    acc.feed([_fragment(1, '{"path": ', name="read")])  # cut: not JSON, no id
    acc.feed([_fragment(2, '{"x": 1}', id="s3", name="nope")])
    acc.feed([_fragment(3, "[1]", id="s4", name="read")])
    good, cut, unknown, not_object = parsed_calls(acc.calls(), "call_p")
    assert (good.id, good.name, good.arguments, good.error) == ("s1", "read", {"path": "a"}, None)
    assert good.arguments_text == '{"path":  "a"}'  # as generated, spaces and all
    assert cut.id == "call_p_1" and cut.error and "not JSON" in cut.error
    assert unknown.error and "unknown tool" in unknown.error
    assert not_object.error == "tool arguments must be a JSON object"


@pytest.mark.parametrize(
    ("choice", "index", "expected"),
    [
        ("auto", 0, None),  # left out: the server's default with tools
        ("none", 0, "none"),
        ("none", 3, "none"),
        ("read", 0, {"type": "function", "function": {"name": "read"}}),
        ("read", 1, None),  # a named tool forces the first call only
        ("required", 0, "required"),
        ("required", 4, "required"),
        ("required", 5, None),  # the last call --max-steps 6 allows answers freely
    ],
)
def test_tool_choice_per_call(choice: str, index: int, expected: Any) -> None:
    assert tool_choice(choice, index, 6) == expected


# --- the request and the stream ---------------------------------------------------


class _Client:
    provider_id = "vllm"

    def __init__(self, events: list[dict[str, Any]], error: UpstreamError | None = None) -> None:
        self.events, self.error = events, error

    def stream_json(self, path: str, body: dict[str, Any], **_: Any) -> Iterator[dict[str, Any]]:
        if self.error is not None:
            raise self.error
        yield from self.events


def test_the_request_carries_tools_and_the_stream_collects_the_calls() -> None:
    request = NativeRequest(tool_choice("read", 0, 6))
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "x"}]}
    history = [{"role": "tool", "tool_call_id": "c1", "content": "r"}]
    request.add_to(body, history)
    assert body["messages"] == history  # whole: tool_call_id and all
    assert [t["function"]["name"] for t in body["tools"]] == [t.name for t in TOOLS]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "read"}}
    events = [
        {"choices": [{"index": 0, "delta": {"content": "Let me look."}}]},
        _delta([_fragment(0, '{"path": "a"}', id="c9", name="read")]),
        _delta([], "tool_calls"),
    ]
    items = list(request.stream("vllm/q", _Client(events), body))  # type: ignore[arg-type]
    assert items[0] == "Let me look." and isinstance(items[-1], ChatEnd)
    assert items[-1].finish_reason == "tool_calls"
    assert [(c.id, c.arguments) for c in request.calls()] == [("c9", '{"path": "a"}')]
    auto: dict[str, Any] = {}
    NativeRequest(tool_choice("auto", 0, 6)).add_to(auto, [])
    assert "tool_choice" not in auto


def test_a_non_streamed_reply_s_calls_are_read_from_its_message() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    events = [{"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}]
    request = NativeRequest(None)
    items = list(request.stream("p/m", _Client(events), {}))  # type: ignore[arg-type]
    assert len(items) == 1 and isinstance(items[0], ChatEnd)
    assert [c.id for c in request.calls()] == ["c1"]


def test_a_server_that_refuses_tools_is_named_with_the_way_back() -> None:
    error = UpstreamError("upstream 'vllm': HTTP 400: tools not supported", status=400)
    request = NativeRequest(None)
    with pytest.raises(UpstreamError) as raised:
        list(request.stream("vllm/q", _Client([], error), {}))  # type: ignore[arg-type]
    assert "provider 'vllm'" in raised.value.message and "HTTP 400" in raised.value.message
    assert "Remove 'vllm/q' from edge.nativeTools" in raised.value.hint
    other = UpstreamError("upstream 'vllm': HTTP 500", status=500)
    with pytest.raises(UpstreamError) as passed:
        list(request.stream("vllm/q", _Client([], other), {}))  # type: ignore[arg-type]
    assert passed.value is other


def test_native_messages_are_counted_with_their_calls() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "read", "arguments": '{"a": 1}'}}
    message = {"role": "assistant", "content": "", "tool_calls": [call]}
    assert message_text(message) == '<|im_start|>assistant\n\nread {"a": 1}<|im_end|>\n'


# --- the history ------------------------------------------------------------------


def _step(text: str, calls: list[Any], results: list[str]) -> Step:
    outcomes = [ToolOutcome(c, r, False, 0.0, 0.0) for c, r in zip(calls, results, strict=True)]
    return Step(
        PromptPlan([], "", [], 0, False),
        Generation(text, [], "stop", None),
        usage_buckets(10, 0, 5),
        ParsedReply(text, calls),
        TokenTape(),
        outcomes=outcomes,
        raw=text,
        shown=text,
    )


def test_the_transcript_re_renders_to_the_messages_the_live_turn_sent() -> None:
    acc = CallAccumulator()
    acc.feed([_fragment(0, '{ "path": "a.txt" }', id="srv_1", name="read")])
    acc.feed([_fragment(1, '{"query":"x"}', id="srv_2", name="search")])
    calls = parsed_calls(acc.calls(), "call_p")
    steps = [_step("", calls, ["A", "B"]), _step("Done.", [], [])]
    live = [
        {"role": "user", "content": "Go."},
        *native_transcript.step_messages(steps[0]),
        {"role": "assistant", "content": "Done."},
    ]
    entries = turn_entries(None, "Go.", steps, "r1", model="m", provider="p", api="x")
    rendered = native_transcript.messages(entries, "You help.")
    assert rendered == [{"role": "system", "content": "You help."}, *live]
    assert rendered[2]["tool_calls"][0]["function"]["arguments"] == '{ "path": "a.txt" }'
    assert rendered[3:5] == [
        {"role": "tool", "tool_call_id": "srv_1", "content": "A"},
        {"role": "tool", "tool_call_id": "srv_2", "content": "B"},
    ]


def test_a_hermes_turn_re_renders_as_native_calls() -> None:
    """A session whose earlier turn ran in our own format: its toolCall blocks (no
    argumentsText) become native calls with their arguments serialised."""
    calls = [ToolCall("call_h_0", "read", {"path": "ä.txt"})]
    step = _step("", calls, ["R"])
    step.raw = '<tool_call>\n{"name": "read", "arguments": {"path": "ä.txt"}}\n</tool_call>'
    entries = turn_entries(None, "Go.", [step], "r1", model="m", provider="p", api="x")
    assistant = native_transcript.messages(entries, "s")[2]
    assert assistant["content"] == ""
    assert assistant["tool_calls"][0]["function"]["arguments"] == '{"path": "ä.txt"}'


# --- the config key ---------------------------------------------------------------

PROVIDERS = {"vllm": {"baseUrl": "http://h/v1", "models": ["Qwen/Qwen3-8B", "small"]}}


def _load(tmp_path: Path, edge: Any) -> config_file.OpenClawConfig:
    path = tmp_path / "openclaw.json"
    path.write_text(json.dumps({"models": {"providers": PROVIDERS}, "edge": edge}))
    return config_file.load(path)


def test_native_tools_names_configured_models(tmp_path: Path) -> None:
    cfg = _load(tmp_path, {"nativeTools": ["vllm/Qwen/Qwen3-8B"]})
    assert cfg.native_tools == frozenset({"vllm/Qwen/Qwen3-8B"})
    assert _load(tmp_path, {}).native_tools == frozenset()


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("vllm/small", "must be a list of"),
        ([1], "must be a list of"),
        (["vllm/other"], r"nativeTools\[0\] is 'vllm/other', which is no model"),
        (["small"], "which is no model"),
    ],
)
def test_native_tools_errors_name_the_entry(tmp_path: Path, value: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as raised:
        _load(tmp_path, {"nativeTools": value})
    if "no model" in match:
        assert "vllm/Qwen/Qwen3-8B, vllm/small" in raised.value.hint


# --- a turn, on the fault server ------------------------------------------------


class _Tapes:
    """The embedded engine's tape registry, as far as upstream turns use it."""

    def forget(self, ref: Any) -> None:
        pass


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
    raw = {"models": {"providers": {"f": provider}}, "edge": {"nativeTools": ["f/m"]}}
    (state / "openclaw.json").write_text(json.dumps(raw))
    targets = UpstreamTargets()
    turns = UpstreamTurns(config.resolve_paths(), cast(SessionTapes, _Tapes()), targets)
    targets.tokenizer(targets.chain("f/m")[0])  # detected now: only chat requests follow
    return turns


def _run(turns: UpstreamTurns, **options: Any) -> Any:
    trace = Trace()
    ctx = TurnContext(trace, lambda frame: None, lambda: False, trace.origin, turn_id="t")
    turn = TurnOptions(message="Read notes.txt.", session_id="s1", model="f/m", **options)
    return turns.run(turn, ctx, Route("f/m", "--model"))


def _bodies(server: FaultServer) -> list[dict[str, Any]]:
    posts = zip(server.requests, server.bodies, strict=True)
    return [json.loads(b) for (m, p), b in posts if p.endswith("/chat/completions")]


def test_a_native_turn_runs_the_call_and_sends_its_result_as_a_tool_message(
    turns: UpstreamTurns, server: FaultServer
) -> None:
    server.events = [
        _delta([_fragment(0, '{"path": "notes.txt"}', id="srv_1", name="read")]),
        _delta([], "tool_calls"),
    ]
    result = _run(turns, max_steps=2, tool_choice="required")
    first, second = _bodies(server)
    assert first["tool_choice"] == "required" and "tool_choice" not in second  # the last step
    assert "<tool_call>" not in first["messages"][0]["content"]
    assert second["messages"][-1]["role"] == "tool"
    assert "4417" in second["messages"][-1]["content"]
    # The second reply called again at --max-steps: stored with a "not run" result.
    store = SessionStore(turns.paths.agent_sessions_dir("main"), "main")
    roles = [e["message"]["role"] for e in store.load_entries(store.find("s1"))
             if e.get("type") == "message"]  # fmt: skip
    assert roles == ["user", "assistant", "toolResult", "assistant", "toolResult"]
    assert result["stopReason"] == "max_steps"


def test_a_400_names_the_provider_and_edge_native_tools(
    turns: UpstreamTurns, server: FaultServer
) -> None:
    server.set_mode("400", 5)
    with pytest.raises(UpstreamError) as raised:
        _run(turns)
    assert "provider 'f'" in raised.value.message
    assert "edge.nativeTools" in raised.value.hint


def test_compacting_a_native_session_sends_it_natively_with_its_tools(
    turns: UpstreamTurns, server: FaultServer
) -> None:
    """The summary is a continuation of the messages the turns sent (native ones, the
    same tools), and the prefill ahead leaves the layout the next turn sends."""
    server.events = [
        _delta([_fragment(0, '{"path": "notes.txt"}', id="srv_1", name="read")]),
        _delta([], "tool_calls"),
    ]
    _run(turns, max_steps=2, tool_choice="read")
    server.events = None  # text replies from here on
    for _ in range(3):
        _run(turns)
    turn_bodies = _bodies(server)
    store = SessionStore(turns.paths.agent_sessions_dir("main"), "main")
    ref = store.find("s1")
    trace = Trace()
    ctx = TurnContext(trace, lambda frame: None, lambda: False, trace.origin, turn_id="c")
    target = turns.targets.chain("f/m")[0]
    report = turns.compact_session(target, ref, store, ctx, None)
    assert report["tokensAfter"] < report["tokensBefore"]
    summary, ahead = _bodies(server)[len(turn_bodies) :]
    for body in (summary, ahead):
        assert body["tools"] == turn_bodies[0]["tools"] and body["tool_choice"] == "none"
        assert body["messages"][0] == turn_bodies[0]["messages"][0]  # the turns' head
    # The summarised part of the session goes as the turns sent it: a continuation.
    older = summary["messages"][:-1]
    assert older == turn_bodies[-1]["messages"][: len(older)]
    assert any(m["role"] == "tool" for m in older)
    _run(turns)
    nxt = _bodies(server)[-1]
    assert nxt["messages"][: len(ahead["messages"])] == ahead["messages"]


def test_the_request_count_holds_the_tools_before_the_messages() -> None:
    messages = [{"role": "user", "content": "x"}]
    counted = NativeRequest(None).counted(messages)
    assert counted[1:] == messages and counted[0]["role"] == "tools"
    assert json.loads(counted[0]["content"]) == [t.definition() for t in TOOLS]
