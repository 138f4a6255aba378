"""Session store: OpenClaw layout, id rules, and crash-safe appends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openclaw_daemon.wire.errors import BadRequestError, SessionError
from openclaw_sessions.store import SessionStore


def make_store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / "agents" / "main" / "sessions", "main")


def test_main_session_is_stable_and_explicit_ids_get_their_own_key(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    main = store.resolve(None)
    assert main.key == "agent:main:main"
    assert store.resolve(None).session_id == main.session_id
    explicit = store.resolve("work-1")
    assert explicit.key == "agent:main:explicit:work-1"
    assert explicit.file.name == "work-1.jsonl"
    # Passing the main session's id by hand finds the main key, not a new one.
    assert store.resolve(main.session_id).key == "agent:main:main"
    index = json.loads(store.index_file.read_text())
    assert set(index) == {"agent:main:main", "agent:main:explicit:work-1"}
    header = json.loads(explicit.file.read_text().splitlines()[0])
    assert header["type"] == "session" and header["id"] == "work-1" and header["version"] == 3


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "-lead", "x" * 129])
def test_invalid_session_ids_are_refused(tmp_path: Path, bad: str) -> None:
    # A usage error (exit 2, bad_request on the wire), as at every other boundary.
    with pytest.raises(BadRequestError, match="invalid session id"):
        make_store(tmp_path).resolve(bad)


def test_torn_last_line_is_ignored_and_repaired_on_next_append(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    ref = store.resolve("s1")
    store.append(ref, [{"type": "message", "id": "a"}])
    with ref.file.open("ab") as handle:  # what a kill mid-write leaves
        handle.write(b'{"type":"message","id":"tor')
    assert [e.get("id") for e in store.load_entries(ref)] == ["s1", "a"]
    store.append(ref, [{"type": "message", "id": "b"}])
    assert [e.get("id") for e in store.load_entries(ref)] == ["s1", "a", "b"]
    assert ref.file.read_bytes().endswith(b'"id":"b"}\n')


def test_corrupt_middle_line_is_an_error_not_silent_loss(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    ref = store.resolve("s2")
    with ref.file.open("ab") as handle:
        handle.write(b"not json\n")
    store.append(ref, [{"type": "message", "id": "a"}])
    with pytest.raises(SessionError, match=r"s2.jsonl:2"):
        store.load_entries(ref)


def test_find_unknown_session_says_how_to_list(tmp_path: Path) -> None:
    with pytest.raises(SessionError) as info:
        make_store(tmp_path).find("nope")
    assert "openclaw sessions list" in info.value.hint
