"""The whole daemon in-process on the fake model: the real handlers, scheduler and
transport on a Unix socket in the test's state dir, talked to with the wire client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from openclaw_daemon.model.fake import FakeEngine, Reply
from openclaw_daemon.serve.server import Daemon
from openclaw_daemon.wire.client import DaemonClient
from openclaw_daemon.wire.errors import BadRequestError, CancelledError, ProtocolError
from tests.unit.fake_daemon import daemon_on, result_of, send, wire_request

N_CTX = 16384


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(n_ctx=N_CTX)


@pytest.fixture
def daemon(engine: FakeEngine) -> Iterator[Daemon]:
    with daemon_on(engine) as running:
        yield running


def test_a_turn_streams_token_frames_then_done(engine: FakeEngine, daemon: Daemon) -> None:
    engine.enqueue("Hi from the fake.")
    frames = send(daemon, "turn", message="hello")
    kinds = [f["type"] for f in frames]
    assert kinds[-1] == "done" and kinds.count("done") == 1
    tokens = [f for f in frames if f["type"] == "token"]
    assert "".join(f["text"] for f in tokens) == "Hi from the fake."
    # Every token frame comes before the terminal frame, after the prefill's progress.
    assert kinds.index("progress") < kinds.index("token")
    result = result_of(frames)
    assert result["text"] == "Hi from the fake."
    assert result["model"] == "fake-model"
    assert result["usage"]["output"] == len("Hi from the fake.")
    status = result_of(send(daemon, "status"))
    assert status["turnsServed"] == 1 and status["nCtx"] == N_CTX


def test_a_second_turn_over_the_socket_reuses_the_first(engine: FakeEngine, daemon: Daemon) -> None:
    engine.enqueue("One.", "Two.")
    first = result_of(send(daemon, "turn", message="first"))
    second = result_of(send(daemon, "turn", message="second", session_id=first["sessionId"]))
    assert second["cache"]["tier"] == "L1"
    assert second["usage"]["cacheRead"] == first["usage"]["input"] + first["usage"]["output"]
    assert second["usage"]["input"] == engine.prefills[1].evaluated


def test_a_bad_request_gets_an_error_frame_and_the_daemon_keeps_serving(
    engine: FakeEngine, daemon: Daemon
) -> None:
    with pytest.raises(BadRequestError, match="bad request field .*must be an integer"):
        send(daemon, "turn", message="hi", max_tokens="many")
    with pytest.raises(ProtocolError, match="unknown message type 'launch'"):
        send(daemon, "launch")
    assert engine.prefills == []  # refused before the model was touched
    assert result_of(send(daemon, "ping")) == {"pong": True}


def test_cancel_stops_a_turn_mid_reply(engine: FakeEngine, daemon: Daemon) -> None:
    engine.enqueue(Reply("word " * 400, token_delay_s=0.005))
    seen: list[str] = []
    with DaemonClient(daemon.paths.socket) as client, pytest.raises(CancelledError):
        for frame in client.request(wire_request("turn", message="talk"), timeout=30):
            if frame["type"] == "token":
                seen.append(frame["text"])
                if len(seen) == 3:
                    client.cancel()
    # Stopped well before the 2,000-byte reply ended.
    assert 3 <= len(seen) < 1000
    assert engine.pending_replies == 0
    # The worker is free again: the next turn is served.
    engine.enqueue("After.")
    assert result_of(send(daemon, "turn", message="again"))["text"] == "After."


def test_a_cache_clear_makes_the_next_turn_cold(engine: FakeEngine, daemon: Daemon) -> None:
    engine.enqueue("One.", "Two.")
    first = result_of(send(daemon, "turn", message="first"))
    # Parking runs on the worker once idle; the clear queues behind it and drops it too.
    cleared = result_of(send(daemon, "cache", action="clear"))
    assert isinstance(cleared, dict)
    second = result_of(send(daemon, "turn", message="second", session_id=first["sessionId"]))
    assert engine.kv.resets >= 1
    assert second["cache"]["tier"] == "none"
    assert second["usage"]["cacheRead"] == 0
    assert engine.prefills[-1].reused == 0


def test_check_tape_finds_the_tape_spells_the_transcript(
    engine: FakeEngine, daemon: Daemon
) -> None:
    engine.enqueue("One.", "Two.")
    first = result_of(send(daemon, "turn", message="first"))
    result_of(send(daemon, "turn", message="second", session_id=first["sessionId"]))
    report = result_of(send(daemon, "tape", session_id=first["sessionId"]))
    assert report["tape"] == "memory"
    assert report["tapeMatchesTranscript"] is True
    assert report["tapeTokens"] == len(engine.live_tokens) + 2  # + the last reply's trailer
