"""Requests on one session share its lane, and a failed turn's record names the
session it ran on: the two untyped-key bugs of issue 14, through the real
handlers (and, for the record, the real turn pipeline on a stub engine).

Before the fix a turn of the main session locked ``main/`` and a ``sessions
compact`` of it ``main/<uuid>``, so the two could run at once; and a failed
main-session turn was recorded with sessionId "main" instead of the uuid.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from openclaw_daemon import config
from openclaw_daemon.model.chat_template import ChatTemplate
from openclaw_daemon.observability.tracing import TurnLog
from openclaw_daemon.serve.handlers import DaemonState, Handlers
from openclaw_daemon.serve.lanes import session_lane
from openclaw_daemon.serve.scheduler import Scheduler
from openclaw_daemon.turn.assemble import turn_services
from openclaw_daemon.wire.errors import ModelError
from openclaw_sessions.store import SessionStore


class FakeConnection:
    """What the handlers use of a connection: frames out, no client input."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> bool:
        self.sent.append(message)
        return True

    def poll_client(self) -> None:
        return None

    def receive_within(self, timeout: float) -> None:
        return None


class StubEngine:
    """Just enough of an engine to build the turn's parts and plan a prompt:
    ChatML, one token per byte, a small window."""

    add_bos = False

    def __init__(self, n_ctx: int = 256) -> None:
        self.template = ChatTemplate(None, bos_token="", eos_token="<|im_end|>")
        self.info = SimpleNamespace(
            name="stub", path="/stub.gguf", n_ctx=n_ctx, n_vocab=256, bos_id=-1
        )

    def tokenize(self, text: str, *, add_bos: bool, special: bool = False) -> list[int]:
        return list(text.encode("utf-8"))

    def detokenize(self, tokens: list[int], *, special: bool = False) -> bytes:
        return bytes(tokens)


def _state(paths: config.Paths, scheduler: Scheduler, **parts: Any) -> DaemonState:
    return DaemonState(
        paths=paths,
        model_name="stub",
        scheduler=scheduler,
        status=dict,
        request_shutdown=lambda: None,
        cache_stats=dict,
        cache_clear=dict,
        turn_log=TurnLog(paths.turns_file),
        memory=dict,
        gauges=list,
        prefill_ahead=False,
        **parts,
    )


@pytest.fixture
def paths() -> config.Paths:
    found = config.resolve_paths()  # the per-test state dir (tests/conftest.py)
    found.turns_file.parent.mkdir(parents=True, exist_ok=True)
    return found


def _main_session(paths: config.Paths) -> tuple[SessionStore, str]:
    store = SessionStore(paths.agent_sessions_dir("main"), "main")
    return store, store.resolve(None).session_id


def test_every_name_of_a_session_gives_its_one_lane(paths: config.Paths) -> None:
    store, uuid = _main_session(paths)
    main = session_lane(store, None)
    assert main == "agent:main:main"
    assert session_lane(store, uuid) == main  # compact by id, or a turn --session-id <uuid>
    assert session_lane(store, "agent:main:main") == main  # compact by key
    # A session not created yet: the key its first turn will create.
    assert session_lane(store, "work") == "agent:main:explicit:work"


class BlockingPipeline:
    """A turn that holds the model worker until released, then fails."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self, options: Any, ctx: Any) -> dict[str, Any]:
        self.started.set()
        assert self.release.wait(10)
        raise ModelError("stub turn ends")


class RecordingCompactor:
    def __init__(self) -> None:
        self.compacted: list[str] = []

    def compact(self, ref: Any, store: Any, **_: Any) -> dict[str, Any]:
        self.compacted.append(ref.key)
        return {"sessionId": ref.session_id}

    def take_due(self) -> list[Any]:
        return []


def _wait_until(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize(("other", "serialized"), [(None, True), ("work", False)])
def test_a_main_session_turn_and_its_compaction_take_one_lane(
    paths: config.Paths, other: str | None, serialized: bool
) -> None:
    store, uuid = _main_session(paths)
    if other is not None:
        store.resolve(other)  # a second session: its compaction has its own lane
    target = uuid if other is None else other
    scheduler = Scheduler()
    pipeline, compactor = BlockingPipeline(), RecordingCompactor()
    handlers = Handlers(
        _state(
            paths,
            scheduler,
            pipeline=pipeline,
            compactor=compactor,
            tapes=SimpleNamespace(park=lambda: None),
        )
    )
    turn = threading.Thread(
        target=handlers.dispatch, args=({"type": "turn", "message": "hi"}, FakeConnection())
    )
    compact_connection = FakeConnection()
    compact = threading.Thread(
        target=handlers.dispatch,
        args=({"type": "compact", "sessionId": target}, compact_connection),
    )
    try:
        turn.start()
        assert pipeline.started.wait(5)  # the turn runs on the worker, in its lane
        compact.start()
        if serialized:
            # The compaction waits for the turn's lane: it has not even been
            # queued for the worker.
            time.sleep(0.3)
            assert scheduler.queued == 0 and compactor.compacted == []
        else:
            assert _wait_until(lambda: scheduler.queued == 1)  # queued behind the turn
        pipeline.release.set()
        turn.join(10)
        compact.join(10)
        assert compactor.compacted == [store.find(target).key]
        assert compact_connection.sent[-1]["type"] == "done"
    finally:
        pipeline.release.set()
        scheduler.shutdown()


def test_a_failed_main_session_turn_is_recorded_with_the_session_uuid(
    paths: config.Paths,
) -> None:
    engine = StubEngine(n_ctx=256)
    cache = SimpleNamespace(
        observe_prefill=lambda tokens, seconds: None,
        checkpoint=lambda: None,
        checkpoint_all=lambda: None,
        store=SimpleNamespace(dir=Path("kv-stub")),
    )
    turns = turn_services(engine, paths, prefill_batch=64, cache=cache)  # type: ignore[arg-type]
    scheduler = Scheduler()
    state = _state(
        paths, scheduler, pipeline=turns.pipeline, compactor=turns.compactor, tapes=turns.tapes
    )
    connection = FakeConnection()
    try:
        # A first message longer than the whole window: the turn resolves (and
        # creates) the main session, then fails with a context overflow.
        Handlers(state).dispatch({"type": "turn", "message": "x" * 400}, connection)
    finally:
        scheduler.shutdown()
    error = connection.sent[-1]
    assert error["type"] == "error" and error["code"] == "context_overflow"
    [record] = state.turn_log.read(limit=None)
    uuid = SessionStore(paths.agent_sessions_dir("main"), "main").resolve(None).session_id
    assert record["turnId"] == error["turnId"] and record["status"] == "context_overflow"
    assert record["sessionId"] == uuid != "main"
    assert record["sessionKey"] == "agent:main:main" and record["agentId"] == "main"
