"""Tiered routing: which engine answers a turn, and the rule that chose it.

In order: an explicit ``--model`` (a request's ``model``); else the first rule of
openclaw.json's ``edge.routing`` whose conditions all hold; else
``agents.defaults.model.primary`` when it names an upstream; else the embedded model.
A rule's ``model`` is ``provider/model-id`` or ``"embedded"``::

    edge: { routing: [
      { when: { promptTokensAbove: 3000 }, model: "gpu/qwen3-32b" },  // long prompts
      { when: { toolChoice: "required" }, model: "gpu/qwen3-32b" },   // forced tools
    ] }

``edge`` is our own key beside OpenClaw's; conditions: ``promptTokensAbove`` and
``promptTokensBelow`` (the session's last size plus the new message, estimated at
four characters a token: a rule is chosen before any tokenizer runs) and
``toolChoice``. The chosen engine and rule go into the turn's ``--json``
(``meta.route``), its trace (the ``route`` span) and ``stats``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from openclaw_daemon.upstream.config_file import OpenClawConfig
from openclaw_daemon.wire.errors import ConfigError

EMBEDDED = "embedded"
CONDITIONS = ("promptTokensAbove", "promptTokensBelow", "toolChoice")
CHARS_PER_TOKEN = 4


class Route(NamedTuple):
    model: str | None  # provider/model-id of an upstream; None: the embedded model
    rule: str  # why: "--model", "edge.routing[0]: promptTokensAbove 3000", "primary", "default"


class Rule(NamedTuple):
    position: int
    when: dict[str, Any]
    model: str

    def holds(self, prompt_tokens: int, tool_choice: str) -> bool:
        when = self.when
        if "promptTokensAbove" in when and not prompt_tokens > when["promptTokensAbove"]:
            return False
        if "promptTokensBelow" in when and not prompt_tokens < when["promptTokensBelow"]:
            return False
        return "toolChoice" not in when or tool_choice == when["toolChoice"]

    def describe(self) -> str:
        conditions = ", ".join(f"{k} {v}" for k, v in self.when.items()) or "always"
        return f"edge.routing[{self.position}]: {conditions}"


def rules(cfg: OpenClawConfig) -> list[Rule]:
    """``edge.routing``, checked; ConfigError naming the rule and key otherwise."""
    raw = cfg.routing_raw
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{cfg.path}: edge.routing must be a list of rules")
    checked = []
    for index, spec in enumerate(raw):
        where = f"{cfg.path}: edge.routing[{index}]"
        if not isinstance(spec, dict) or not isinstance(spec.get("model"), str):
            raise ConfigError(f'{where} needs a "model" (provider/model-id or "embedded")')
        when = spec.get("when") or {}
        if not isinstance(when, dict):
            raise ConfigError(f"{where}.when must be an object")
        unknown = set(when) - set(CONDITIONS)
        if unknown:
            raise ConfigError(
                f"{where}.when has unknown condition(s) {', '.join(sorted(unknown))}",
                hint=f"Conditions: {', '.join(CONDITIONS)}.",
            )
        for key in ("promptTokensAbove", "promptTokensBelow"):
            value = when.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ConfigError(f"{where}.when.{key} must be an integer")
        model = spec["model"]
        if model != EMBEDDED and cfg.find(model) is None:
            raise ConfigError(f"{where}.model {model!r} is not a model of a configured provider")
        checked.append(Rule(index, dict(when), model))
    return checked


def choose(
    cfg: OpenClawConfig,
    requested: str | None,
    *,
    session_tokens: int,
    message: str,
    tool_choice: str,
) -> Route:
    """The engine for one turn, and the rule that chose it."""
    if requested:
        if cfg.find(requested) is None:
            # Never silently another engine than the one asked for: the daemon may
            # read another openclaw.json than the client did (OPENCLAW_CONFIG_PATH).
            raise ConfigError(
                f"{requested} is not a model of a provider in {cfg.path} (the daemon's config)",
                hint="Check OPENCLAW_CONFIG_PATH / OPENCLAW_STATE_DIR of the daemon, or "
                "restart it: openclaw daemon restart.",
            )
        return Route(requested, "--model")
    prompt_tokens = session_tokens + len(message) // CHARS_PER_TOKEN
    for rule in rules(cfg):
        if rule.holds(prompt_tokens, tool_choice):
            return Route(None if rule.model == EMBEDDED else rule.model, rule.describe())
    if cfg.primary and cfg.find(cfg.primary) is not None:
        return Route(cfg.primary, "primary")
    return Route(None, "default")
