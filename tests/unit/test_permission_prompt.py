"""A turn sent with ``askPermission`` asks before a write it was not allowed: a
``permission`` frame, then the client's ``permit`` decides (the terminal chat's
prompt; tests/e2e/test_chat_tmux.py drives the real one). On the fake model,
through the in-process daemon's socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openclaw_daemon.model.fake import FakeEngine
from openclaw_daemon.wire.client import DaemonClient
from openclaw_daemon.wire.errors import CancelledError
from tests.unit.fake_daemon import daemon_on, wire_request

WRITE = (
    '<tool_call>\n{"name": "write", "arguments": {"path": "a.txt", "content": "hi"}}\n</tool_call>'
)


def _turn(socket: Path, cwd: Path, answer: dict[str, Any] | None, **fields: Any) -> list[Any]:
    frames = []
    request = wire_request("turn", message="save hi", cwd=str(cwd), **fields)
    with DaemonClient(socket) as client:
        for frame in client.request(request, timeout=30):  # type: ignore[arg-type]
            frames.append(frame)
            if frame["type"] == "permission" and answer is not None:
                client.permit(frame["id"], **answer)
    return frames


@pytest.mark.parametrize(("allow", "written"), [(False, False), (True, True)])
def test_the_answer_decides(tmp_path: Path, allow: bool, written: bool) -> None:
    engine = FakeEngine([WRITE, "Done."])
    with daemon_on(engine) as daemon:
        frames = _turn(daemon.paths.socket, tmp_path, {"allow": allow}, ask_permission=True)
    [asked] = [f for f in frames if f["type"] == "permission"]
    assert asked["name"] == "write" and asked["permission"] == "write"
    assert asked["arguments"] == {"path": "a.txt", "content": "hi"}
    ended = [f for f in frames if f["type"] == "tool" and f["phase"] == "end"]
    assert ended[0]["isError"] is not written
    assert (tmp_path / "a.txt").exists() is written
    if not written:
        assert "did not allow" in ended[0]["preview"]


def test_always_allows_the_rest_of_the_turn(tmp_path: Path) -> None:
    second = WRITE.replace("a.txt", "b.txt")
    engine = FakeEngine([WRITE, second, "Done."])
    with daemon_on(engine) as daemon:
        frames = _turn(
            daemon.paths.socket, tmp_path, {"allow": True, "always": True}, ask_permission=True
        )
    assert len([f for f in frames if f["type"] == "permission"]) == 1
    assert (tmp_path / "a.txt").exists() and (tmp_path / "b.txt").exists()


def test_without_ask_permission_nothing_is_asked_and_the_write_is_refused(tmp_path: Path) -> None:
    engine = FakeEngine([WRITE, "Done."])
    with daemon_on(engine) as daemon:
        frames = _turn(daemon.paths.socket, tmp_path, None)
    assert not [f for f in frames if f["type"] == "permission"]
    ended = [f for f in frames if f["type"] == "tool" and f["phase"] == "end"]
    assert ended[0]["isError"] and "--allow write" in ended[0]["preview"]
    assert not (tmp_path / "a.txt").exists()


def test_a_cancel_while_asking_is_a_no(tmp_path: Path) -> None:
    engine = FakeEngine([WRITE, "Done."])
    with daemon_on(engine) as daemon:
        request = wire_request("turn", message="save", cwd=str(tmp_path), ask_permission=True)
        with DaemonClient(daemon.paths.socket) as client, pytest.raises(CancelledError):
            for frame in client.request(request, timeout=30):  # type: ignore[arg-type]
                if frame["type"] == "permission":
                    client.cancel()
    assert not (tmp_path / "a.txt").exists()
