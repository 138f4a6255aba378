"""Tiered routing (``upstream.routing``): --model first, then edge.routing's rules in
order, then an upstream primary, else the embedded model; bad rules are named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openclaw_daemon.upstream import config_file, routing
from openclaw_daemon.wire.errors import ConfigError


def load(tmp_path: Path, **top: Any) -> config_file.OpenClawConfig:
    raw = {
        "models": {
            "providers": {
                "gpu": {"baseUrl": "http://127.0.0.1:9/v1", "models": [{"id": "big"}]},
                "cpu": {"baseUrl": "http://127.0.0.1:8/v1", "models": [{"id": "small"}]},
            }
        },
        **top,
    }
    path = tmp_path / "openclaw.json"
    path.write_text(json.dumps(raw))
    return config_file.load(path)


def choose(cfg: config_file.OpenClawConfig, **kw: Any) -> routing.Route:
    args: dict[str, Any] = {"session_tokens": 0, "message": "hi", "tool_choice": "auto"} | kw
    requested = args.pop("requested", None)
    return routing.choose(cfg, requested, **args)


RULES = {
    "routing": [
        {"when": {"promptTokensAbove": 3000}, "model": "gpu/big"},
        {"when": {"toolChoice": "required"}, "model": "cpu/small"},
        {"when": {"promptTokensBelow": 10}, "model": "embedded"},
    ]
}


def test_rules_apply_in_order_and_say_which(tmp_path: Path) -> None:
    cfg = load(tmp_path, edge=RULES)
    assert choose(cfg, session_tokens=2990, message="x" * 80) == routing.Route(
        "gpu/big", "edge.routing[0]: promptTokensAbove 3000"
    )
    # The first rule that holds wins, even when a later one would too.
    assert choose(cfg, session_tokens=5000, tool_choice="required").model == "gpu/big"
    assert choose(cfg, session_tokens=100, tool_choice="required").model == "cpu/small"
    assert choose(cfg, session_tokens=0) == routing.Route(
        None, "edge.routing[2]: promptTokensBelow 10"
    )
    assert choose(cfg, session_tokens=100) == routing.Route(None, "default")


def test_explicit_model_beats_rules_and_primary(tmp_path: Path) -> None:
    cfg = load(tmp_path, edge=RULES, agents={"defaults": {"model": "cpu/small"}})
    assert choose(cfg, requested="gpu/big", session_tokens=0) == routing.Route("gpu/big", "--model")
    # A model the daemon's config does not have is an error, never another engine.
    with pytest.raises(ConfigError, match="not a model of a provider"):
        choose(cfg, requested="other/x")
    assert choose(cfg, session_tokens=100) == routing.Route("cpu/small", "primary")


def test_a_gguf_primary_is_the_embedded_model(tmp_path: Path) -> None:
    cfg = load(tmp_path, agents={"defaults": {"model": {"primary": "/m/x.gguf"}}})
    assert choose(cfg) == routing.Route(None, "default")


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"routing": {"x": 1}}, "must be a list"),
        ({"routing": [{"when": {}}]}, 'needs a "model"'),
        ({"routing": [{"when": {"sizeOver": 1}, "model": "gpu/big"}]}, "unknown condition"),
        ({"routing": [{"when": {"promptTokensAbove": "9"}, "model": "gpu/big"}]}, "integer"),
        ({"routing": [{"model": "gpu/nope"}]}, "has no model 'nope'"),
        ({"routing": [{"model": "other/x"}]}, "not a model of a configured provider"),
    ],
)
def test_bad_rules_are_named(tmp_path: Path, rules: dict[str, Any], message: str) -> None:
    cfg = load(tmp_path, edge=rules)
    with pytest.raises(ConfigError, match=message):
        choose(cfg)
