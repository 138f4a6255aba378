"""openclaw.json's agent defaults: each key checked, in OpenClaw's own schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from openclaw_cli.config_defaults import AgentDefaults, defaults
from openclaw_daemon.wire.errors import ConfigError

WHERE = Path("/tmp/openclaw.json")


def test_every_key_read() -> None:
    raw = {
        "agents": {
            "defaults": {
                "params": {"maxTokens": 64, "temperature": 0.5},
                "timeoutSeconds": 90,
                "thinkingDefault": "low",
                "workspace": "~/work",
            }
        },
        "tools": {"allow": ["read", "write", "exec", "browser"]},
    }
    got = defaults(raw, WHERE)
    assert got.max_tokens == 64 and got.temperature == 0.5 and got.timeout == 90.0
    assert got.thinking == "low" and got.workspace == str(Path("~/work").expanduser())
    assert got.allow == ("write", "exec")  # only the permissions this CLI grants


def test_nothing_set_and_zero_timeout() -> None:
    assert defaults({}, WHERE) == AgentDefaults()
    assert defaults({"agents": {"defaults": {"timeoutSeconds": 0}}}, WHERE).timeout is None


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"agents": {"defaults": {"params": {"maxTokens": 0}}}}, "maxTokens"),
        ({"agents": {"defaults": {"params": {"maxTokens": True}}}}, "maxTokens"),
        ({"agents": {"defaults": {"params": {"temperature": "hot"}}}}, "temperature"),
        ({"agents": {"defaults": {"params": {"temperature": False}}}}, "temperature"),
        ({"agents": {"defaults": {"timeoutSeconds": -1}}}, "timeoutSeconds"),
        ({"agents": {"defaults": {"thinkingDefault": "deep"}}}, "thinkingDefault"),
        ({"agents": {"defaults": {"workspace": ""}}}, "workspace"),
        ({"tools": {"allow": "write"}}, "tools.allow"),
    ],
)
def test_a_bad_value_names_its_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        defaults(raw, WHERE)


def test_the_agents_stand_in_has_the_same_fields() -> None:
    from openclaw_cli.agent_input import _NoDefaults

    assert _NoDefaults._fields == AgentDefaults._fields
    assert tuple(_NoDefaults()) == tuple(AgentDefaults())
