"""Agent ids, session ids, session keys and turn ids follow OpenClaw's rules (unit level)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openclaw_daemon import config
from openclaw_daemon.wire import ids
from openclaw_daemon.wire.errors import BadRequestError, OpenClawError
from openclaw_sessions.store import SessionStore


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("main", "main"), ("OPS", "ops"), (" Ops_1-x ", "ops_1-x"), ("9" * 64, "9" * 64)],
)
def test_agent_ids_are_trimmed_and_lower_cased(raw: str, canonical: str) -> None:
    assert ids.agent_id(raw) == canonical


def test_a_missing_agent_id_is_the_default_agent() -> None:
    assert ids.agent_id(None) == "main"


@pytest.mark.parametrize(
    "raw",
    [
        "../x",
        "..",
        "/tmp/abs",
        "a/b",
        "a\\b",
        "a\x00b",
        "",
        "   ",
        "-lead",
        "_lead",
        "a.b",
        "x" * 65,
        "caf\u00e9",
        "\u212aelvin",  # KELVIN SIGN: matches [a-z] under Python's Unicode IGNORECASE
        "ab\n\x1c",
    ],
)
def test_bad_agent_ids_are_refused_on_one_line(raw: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        ids.agent_id(raw, field="--agent")
    assert caught.value.exit_code == 2
    assert "--agent" in caught.value.message and "\n" not in str(caught.value)


def test_the_refusal_suggests_what_openclaw_would_have_made_of_it() -> None:
    with pytest.raises(BadRequestError, match="did you mean 'x'"):
        ids.agent_id("../X")


@pytest.mark.parametrize("raw", [123, ["main"], {"a": 1}, b"main"])
def test_agent_ids_must_be_strings(raw: object) -> None:
    with pytest.raises(BadRequestError, match="agent_id must be a string"):
        ids.agent_id(raw, field="agent_id")


@pytest.mark.parametrize(
    "raw",
    ["keep", "A.b_c-9", "x" * 128, "caf\u00e9", "\u65e5\u672c", "x\u0301"],
)
def test_good_session_ids(raw: str) -> None:
    assert ids.session_id(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        "../x",
        "..",
        ".hidden",
        "a/b",
        "a\\b",
        "/abs",
        "a\x00b",
        "a b",
        "a:b",
        "",
        "x" * 129,
        "e\u0301",  # not NFC
        "\u0301e",  # starts with a mark
        "\u00e9" * 125,  # 125 chars, but 250 + 6 bytes > 255 as a file name
        "s.checkpoint.12345678-1234-4234-8234-123456789abc",  # a checkpoint file's name
    ],
)
def test_bad_session_ids(raw: str) -> None:
    with pytest.raises(BadRequestError, match="invalid session id"):
        ids.session_id(raw)


def test_session_ids_are_trimmed_like_openclaw_trims_them() -> None:
    # The old rule used re.match with "$", which also matched before a final "\n".
    assert ids.session_id("keep\n") == "keep"
    assert ids.optional_session_id(None) is None


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("main", "main"),
        ("agent:OPS:main", "agent:ops:main"),
        ("agent:ops:explicit:Keep", "agent:ops:explicit:Keep"),
    ],
)
def test_session_refs(raw: str, canonical: str) -> None:
    assert ids.session_ref(raw) == canonical


@pytest.mark.parametrize(
    "raw", ["../x", "agent:../x:main", "agent:ops:", "agent:ops:a/b", "agent:ops::x", "agent:"]
)
def test_bad_session_refs(raw: str) -> None:
    with pytest.raises(BadRequestError):
        ids.session_ref(raw, field="--session")


def test_turn_ids() -> None:
    assert ids.turn_id(" A1B2 ") == "a1b2"
    for bad in ("../../x", "", "last/x", "a\x00"):
        with pytest.raises(BadRequestError, match="invalid turn id"):
            ids.turn_id(bad)


def test_no_path_is_built_from_an_unchecked_agent_id(tmp_path: Path) -> None:
    paths = config.Paths(
        tmp_path, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path
    )
    assert paths.agent_sessions_dir("ops") == tmp_path / "agents" / "ops" / "sessions"
    for bad in ("../x", "/abs", "OPS"):
        with pytest.raises(OpenClawError):
            paths.agent_sessions_dir(bad)


def test_a_tampered_index_cannot_point_a_session_outside_its_dir(tmp_path: Path) -> None:
    sessions = tmp_path / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    outside = tmp_path / "outside"
    (sessions / "sessions.json").write_text(
        json.dumps(
            {
                "agent:main:main": {"sessionId": "../../../outside/evil"},
                "agent:main:explicit:x": {"sessionId": "/abs/evil"},
            }
        )
    )
    store = SessionStore(sessions, "main")
    for lookup in (lambda: store.resolve(None), lambda: store.find("agent:main:explicit:x")):
        with pytest.raises(OpenClawError, match="unsafe session id"):
            lookup()
    assert not outside.exists()
