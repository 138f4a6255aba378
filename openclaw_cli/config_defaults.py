"""The agent's defaults from openclaw.json, in OpenClaw's own schema (so the real
OpenClaw reads the same file without complaint):

| key | default of |
|---|---|
| ``agents.defaults.params.maxTokens`` | ``--max-tokens`` |
| ``agents.defaults.params.temperature`` | ``--temperature`` |
| ``agents.defaults.timeoutSeconds`` | ``--timeout`` (0: none) |
| ``agents.defaults.thinkingDefault`` | ``--thinking`` |
| ``agents.defaults.workspace`` | the tools' workspace (else the current directory) |
| ``tools.allow`` | ``--allow``: the entries that are write, edit or exec |

Precedence: a flag, then the environment, then this file, then the built-in
default. Read on every ``openclaw agent`` only when the file exists (a stat
otherwise); a plain-JSON file costs a ``json.loads``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

from openclaw_daemon.wire.errors import ConfigError

PERMISSIONS = ("write", "edit", "exec")
THINKING = ("off", "minimal", "low", "medium", "high", "xhigh", "adaptive", "max", "ultra")


class AgentDefaults(NamedTuple):
    max_tokens: int | None = None
    temperature: float | None = None
    timeout: float | None = None
    thinking: str | None = None
    workspace: str | None = None
    allow: tuple[str, ...] = ()


def config_path() -> Path:
    """OPENCLAW_CONFIG_PATH, else openclaw.json in the state dir (as the upstream
    work reads it)."""
    from openclaw_daemon import config

    return config.openclaw_config_path()


def read_raw(path: Path) -> dict[str, Any]:
    """The file's object; {} when there is none. ConfigError names a bad file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        raw = json.loads(text)
    except ValueError:
        import json5

        try:
            raw = json5.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON5: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold an object at the top level")
    return raw


def lookup(raw: dict[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def defaults(raw: dict[str, Any], where: Path) -> AgentDefaults:
    """The agent defaults ``raw`` sets, each checked (ConfigError names the key)."""

    def bad(key: str, what: str) -> ConfigError:
        return ConfigError(f"{where}: {key} must be {what}", hint=f"openclaw config unset {key}")

    max_tokens = lookup(raw, "agents.defaults.params.maxTokens")
    if max_tokens is not None and (type(max_tokens) is not int or not 1 <= max_tokens <= 1 << 20):
        raise bad("agents.defaults.params.maxTokens", "a whole number of tokens, at least 1")
    temperature = lookup(raw, "agents.defaults.params.temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not (math.isfinite(temperature) and 0 <= temperature <= 5)
    ):
        raise bad("agents.defaults.params.temperature", "a number from 0 to 5")
    timeout = lookup(raw, "agents.defaults.timeoutSeconds")
    if timeout is not None and (type(timeout) is not int or timeout < 0):
        raise bad("agents.defaults.timeoutSeconds", "a whole number of seconds, 0 for none")
    thinking = lookup(raw, "agents.defaults.thinkingDefault")
    if thinking is not None and thinking not in THINKING:
        raise bad("agents.defaults.thinkingDefault", f"one of {', '.join(THINKING)}")
    workspace = lookup(raw, "agents.defaults.workspace")
    if workspace is not None and (not isinstance(workspace, str) or not workspace):
        raise bad("agents.defaults.workspace", "a directory path")
    allow = lookup(raw, "tools.allow")
    if allow is not None and (
        not isinstance(allow, list) or not all(isinstance(a, str) for a in allow)
    ):
        raise bad("tools.allow", "a list of tool names")
    return AgentDefaults(
        max_tokens=max_tokens,
        temperature=float(temperature) if temperature is not None else None,
        timeout=float(timeout) if timeout else None,
        thinking=thinking,
        workspace=os.path.expanduser(workspace) if workspace else None,
        allow=tuple(a for a in (allow or []) if a in PERMISSIONS),
    )


def load() -> AgentDefaults:
    path = config_path()
    if not path.exists():
        return AgentDefaults()
    return defaults(read_raw(path), path)
