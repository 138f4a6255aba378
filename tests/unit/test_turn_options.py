"""The turn request is parsed once (``wire.requests``); ``turn.options`` applies
the daemon's defaults to it, and every part of the turn reads the attributes."""

from __future__ import annotations

from pathlib import Path

import pytest

from openclaw_daemon.tools import exec_tool
from openclaw_daemon.turn.model_calls import CallOptions
from openclaw_daemon.turn.options import DEFAULT_MAX_STEPS, DEFAULT_MAX_TOKENS, turn_settings
from openclaw_daemon.wire.errors import BadRequestError
from openclaw_daemon.wire.requests import TurnOptions
from openclaw_sessions.prompt import SYSTEM_PROMPT


def test_an_empty_request_gets_the_daemons_defaults(tmp_path: Path) -> None:
    settings = turn_settings(TurnOptions(message="hi", cwd=str(tmp_path)))
    assert settings.message == "hi" and settings.system == SYSTEM_PROMPT
    assert (settings.max_tokens, settings.max_steps) == (DEFAULT_MAX_TOKENS, DEFAULT_MAX_STEPS)
    assert settings.choice == "auto"
    assert settings.tools.workspace == tmp_path.resolve() and settings.tools.allowed == frozenset()
    assert settings.tools.exec_timeout == exec_tool.DEFAULT_TIMEOUT_S
    assert settings.call == CallOptions(temperature=0.0, seed=None, stop=())


def test_what_the_request_set_is_kept(tmp_path: Path) -> None:
    options = TurnOptions(
        message="hi",
        cwd=str(tmp_path),
        system="be brief",
        max_tokens=7,
        max_steps=2,
        tool_choice="none",
        allow=["write"],
        env={"A": "1"},
        exec_timeout=3.0,
        temperature=0.5,
        seed=11,
        stop=["\n\n"],
    )
    settings = turn_settings(options)
    assert (settings.system, settings.max_tokens, settings.max_steps) == ("be brief", 7, 2)
    assert settings.choice == "none" and settings.tools.allowed == frozenset({"write"})
    assert settings.tools.env == {"A": "1"} and settings.tools.exec_timeout == 3.0
    assert settings.call == CallOptions(temperature=0.5, seed=11, stop=("\n\n",))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"allow": ["fly"]}, "unknown permission fly"),
        ({"cwd": "/nonexistent/openclaw"}, "is not a directory"),
        ({"tool_choice": "teleport"}, "teleport"),
    ],
)
def test_what_the_daemon_does_not_know_is_refused(
    tmp_path: Path, change: dict[str, object], problem: str
) -> None:
    options = TurnOptions(message="hi", **{"cwd": str(tmp_path), **change})  # type: ignore[arg-type]
    with pytest.raises(BadRequestError, match=problem):
        turn_settings(options)
