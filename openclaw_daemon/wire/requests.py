"""Parse every request's fields once, at the socket boundary, into typed options.

A frame that decoded as msgpack can still carry anything: a list for a
string, NaN for a number, a NUL byte in a path, a 10 MB stop string. Each
request type has one parser here; it checks every field's type, range and
length and raises ``BadRequestError`` naming the field, so nothing below the
handlers ever sees an unchecked value (and a bad turn is refused before any
prefill runs). Unknown extra fields are ignored, for forward compatibility,
except the snake_case keys of protocol version 5 (``max_tokens``...): silently
ignoring one would run a turn without the limit its sender asked for.

The wire keys are camelCase (``messages.TurnRequest``); the options'
attributes are snake_case Python (``TurnOptions.max_tokens``).

Standard library only (plus the error hierarchy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openclaw_daemon.wire import ids
from openclaw_daemon.wire.errors import BadRequestError

# Limits. A frame is at most 16 MiB (frames.MAX_FRAME_BYTES); these keep any
# one field far below what would tie up the model worker or the disk.
MAX_MESSAGE_CHARS = 1_000_000
MAX_SYSTEM_CHARS = 200_000
MAX_INSTRUCTIONS_CHARS = 20_000
MAX_ID_CHARS = 128
MAX_KEY_CHARS = 512  # a session key: agent:<agentId>:<rest>
MAX_PATH_CHARS = 4096
MAX_NAME_CHARS = 64
MAX_STOPS = 16
MAX_STOP_CHARS = 256
MAX_ALLOW = 8
MAX_ENV_ENTRIES = 4096
MAX_ENV_KEY_CHARS = 1024
MAX_ENV_VALUE_CHARS = 128 * 1024
MAX_TOKENS_LIMIT = 1 << 20
MAX_STEPS_LIMIT = 64
MAX_TEMPERATURE = 100.0
MAX_TIMEOUT_S = 7 * 24 * 3600.0
MAX_SEED = (1 << 32) - 1  # llama.cpp takes a uint32 seed
# OpenClaw's --thinking levels (the CLI's agent_args has the same list).
THINKING_LEVELS = ("off", "minimal", "low", "medium", "high", "xhigh", "adaptive", "max", "ultra")


def _fail(name: str, problem: str) -> BadRequestError:
    return BadRequestError(f"bad request field {name!r}: {problem}")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def text(
    message: Mapping[str, Any],
    name: str,
    *,
    limit: int,
    default: str | None = None,
    required: bool = False,
) -> str | None:
    """A string field: no NUL byte, at most ``limit`` characters."""
    value = message.get(name)
    if value is None:
        if required:
            raise _fail(name, "is required")
        return default
    if not isinstance(value, str):
        raise _fail(name, f"must be a string, not {_type_name(value)}")
    if len(value) > limit:
        raise _fail(name, f"is {len(value)} characters long; the limit is {limit}")
    if "\x00" in value:
        raise _fail(name, "contains a NUL byte")
    return value


def integer(
    message: Mapping[str, Any], name: str, *, low: int, high: int, default: int | None = None
) -> int | None:
    """An integer field (a bool or a float is refused) within [low, high]."""
    value = message.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, f"must be an integer, not {_type_name(value)}")
    if not low <= value <= high:
        raise _fail(name, f"must be between {low} and {high}, not {value}")
    return value


def number(
    message: Mapping[str, Any],
    name: str,
    *,
    low: float,
    high: float,
    default: float | None = None,
    positive: bool = False,
) -> float | None:
    """A finite number within [low, high] (an int is accepted; a bool is not)."""
    value = message.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, f"must be a number, not {_type_name(value)}")
    as_float = float(value) if abs(value) < 1e300 else math.inf
    if not math.isfinite(as_float):
        raise _fail(name, "must be a finite number")
    if not low <= as_float <= high or (positive and as_float <= 0):
        raise _fail(name, f"must be {'above' if positive else 'at least'} {low} and at most {high}")
    return as_float


def flag(message: Mapping[str, Any], name: str, *, default: bool) -> bool:
    """A boolean field (null: the default)."""
    value = message.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _fail(name, f"must be true or false, not {_type_name(value)}")
    return value


def optional_flag(message: Mapping[str, Any], name: str) -> bool | None:
    """A boolean field that may be left to the daemon (absent or null: None)."""
    return None if message.get(name) is None else flag(message, name, default=False)


def text_list(
    message: Mapping[str, Any], name: str, *, count: int, limit: int, allow_empty: bool = True
) -> list[str]:
    value = message.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(name, f"must be a list of strings, not {_type_name(value)}")
    if len(value) > count:
        raise _fail(name, f"has {len(value)} items; the limit is {count}")
    items = []
    for index, item in enumerate(value):
        label = f"{name}[{index}]"
        checked = text({label: item}, label, limit=limit, required=True)
        assert checked is not None
        if not checked and not allow_empty:
            raise _fail(f"{name}[{index}]", "must not be empty")
        items.append(checked)
    return items


def string_map(message: Mapping[str, Any], name: str) -> dict[str, str]:
    value = message.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(name, f"must be a map of strings, not {_type_name(value)}")
    if len(value) > MAX_ENV_ENTRIES:
        raise _fail(name, f"has {len(value)} entries; the limit is {MAX_ENV_ENTRIES}")
    result: dict[str, str] = {}
    for key, item in value.items():
        k = text({f"{name} key": key}, f"{name} key", limit=MAX_ENV_KEY_CHARS, required=True)
        assert k is not None
        if not k or "=" in k:
            raise _fail(f"{name} key", f"{k[:40]!r} is not a variable name")
        label = f"{name}[{k[:40]}]"
        v = text({label: item}, label, limit=MAX_ENV_VALUE_CHARS, required=True)
        assert v is not None
        result[k] = v
    return result


# -- ids ------------------------------------------------------------------------
# Ids become path components: the wire layer bounds their length, and
# ``openclaw_daemon.wire.ids`` applies OpenClaw's naming rules and normalisation.
def _agent_id(message: Mapping[str, Any]) -> str:
    raw = text(message, "agentId", limit=MAX_ID_CHARS)
    return ids.agent_id(raw, field="agentId")


def _session_id(message: Mapping[str, Any]) -> str | None:
    raw = text(message, "sessionId", limit=MAX_ID_CHARS)
    return ids.optional_session_id(raw, field="sessionId")


def _session_key(message: Mapping[str, Any], agent: str) -> str | None:
    """``sessionKey``: a key ``agent:<agentId>:<name>`` of ``agentId``'s store."""
    raw = text(message, "sessionKey", limit=MAX_KEY_CHARS)
    if raw is None:
        return None
    key = ids.session_ref(raw, field="sessionKey")
    if not key.startswith(f"agent:{agent}:"):
        raise BadRequestError(
            f"sessionKey {key!r:.80} is not a key of agent {agent!r}",
            hint="Use a key agent:<agentId>:<name> of the turn's agent.",
        )
    if message.get("sessionId") is not None:
        raise BadRequestError("give sessionId or sessionKey, not both")
    return key


def _session_ref(message: Mapping[str, Any]) -> str:
    raw = text(message, "sessionId", limit=MAX_KEY_CHARS, required=True)
    return ids.session_ref(raw, field="sessionId")


def _thinking(message: Mapping[str, Any]) -> str:
    level = text(message, "thinking", limit=MAX_NAME_CHARS, default="off") or "off"
    if level not in THINKING_LEVELS:
        raise _fail("thinking", f"must be one of {', '.join(THINKING_LEVELS)}, not {level!r}")
    return level


# -- request types ----------------------------------------------------------------
@dataclass(frozen=True)
class TurnOptions:
    """A ``turn`` request, every field checked (``messages.TurnRequest`` on the wire)."""

    message: str
    agent_id: str = "main"
    session_id: str | None = None
    session_key: str | None = None  # instead of session_id: this exact key
    max_tokens: int | None = None
    temperature: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    cwd: str | None = None
    timeout_s: float | None = None
    system: str | None = None
    tool_choice: str | None = None
    max_steps: int | None = None
    allow: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    exec_timeout: float | None = None
    # Drafts verified in batches, greedy sampling only; None: where they are lossless.
    prompt_lookup: bool | None = None
    ask_permission: bool = False  # ask the client before write/edit/exec it did not allow
    thinking: str = "off"  # one of THINKING_LEVELS
    request_id: str | None = None  # a retry with the same id replays the stored turn
    # "provider/model-id" of an upstream in openclaw.json; None: the configured
    # primary if it is an upstream, else the daemon's own model.
    model: str | None = None


# Version 5's request keys. A v5 client is refused at its hello already; these
# catch a script that bumped the version and kept the old spelling.
_V5_KEYS = {
    "agent_id": "agentId",
    "session_id": "sessionId",
    "max_tokens": "maxTokens",
    "timeout_s": "timeoutS",
    "tool_choice": "toolChoice",
    "max_steps": "maxSteps",
    "exec_timeout": "execTimeout",
    "request_id": "requestId",
}


def _refuse_v5_keys(message: Mapping[str, Any]) -> None:
    for old, new in _V5_KEYS.items():
        if old in message:
            raise BadRequestError(
                f"bad request field {old!r}: protocol version 6 spells it {new!r}",
                hint="Request keys are camelCase since protocol version 6 (docs/protocol.md).",
            )


def parse_turn(message: Mapping[str, Any]) -> TurnOptions:
    _refuse_v5_keys(message)
    text_ = text(message, "message", limit=MAX_MESSAGE_CHARS, required=True)
    assert text_ is not None
    if not text_.strip():
        raise BadRequestError("the turn has no message text", hint="Pass one with -m TEXT.")
    agent = _agent_id(message)
    return TurnOptions(
        message=text_,
        agent_id=agent,
        session_id=_session_id(message),
        session_key=_session_key(message, agent),
        max_tokens=integer(message, "maxTokens", low=1, high=MAX_TOKENS_LIMIT),
        temperature=number(message, "temperature", low=0.0, high=MAX_TEMPERATURE, default=0.0)
        or 0.0,
        seed=integer(message, "seed", low=0, high=MAX_SEED),
        stop=text_list(message, "stop", count=MAX_STOPS, limit=MAX_STOP_CHARS, allow_empty=False),
        cwd=text(message, "cwd", limit=MAX_PATH_CHARS),
        timeout_s=number(message, "timeoutS", low=0.0, high=MAX_TIMEOUT_S, positive=True),
        system=text(message, "system", limit=MAX_SYSTEM_CHARS),
        tool_choice=text(message, "toolChoice", limit=MAX_NAME_CHARS),
        max_steps=integer(message, "maxSteps", low=1, high=MAX_STEPS_LIMIT),
        allow=text_list(message, "allow", count=MAX_ALLOW, limit=MAX_NAME_CHARS),
        env=string_map(message, "env"),
        exec_timeout=number(message, "execTimeout", low=0.0, high=MAX_TIMEOUT_S, positive=True),
        request_id=text(message, "requestId", limit=MAX_ID_CHARS),
        prompt_lookup=optional_flag(message, "promptLookup"),
        ask_permission=flag(message, "askPermission", default=False),
        thinking=_thinking(message),
        model=text(message, "model", limit=MAX_PATH_CHARS),
    )


@dataclass(frozen=True)
class CacheOptions:
    action: str


def parse_cache(message: Mapping[str, Any]) -> CacheOptions:
    action = text(message, "action", limit=MAX_NAME_CHARS, required=True)
    if action not in ("stats", "clear"):
        raise BadRequestError(
            f"bad request field 'action': unknown cache action {action!r}",
            hint="Use stats or clear.",
        )
    return CacheOptions(action)


@dataclass(frozen=True)
class CompactOptions:
    agent_id: str
    session_id: str
    instructions: str | None


def parse_compact(message: Mapping[str, Any]) -> CompactOptions:
    _refuse_v5_keys(message)
    return CompactOptions(
        agent_id=_agent_id(message),
        session_id=_session_ref(message),
        instructions=text(message, "instructions", limit=MAX_INSTRUCTIONS_CHARS),
    )


@dataclass(frozen=True)
class SessionOptions:
    """A request about one stored session (``tape``)."""

    agent_id: str
    session_id: str


def parse_session(message: Mapping[str, Any]) -> SessionOptions:
    _refuse_v5_keys(message)
    return SessionOptions(agent_id=_agent_id(message), session_id=_session_ref(message))


@dataclass(frozen=True)
class PermitOptions:
    """A ``permit`` frame: the user's answer to a turn's ``permission`` question."""

    call_id: str
    allow: bool
    always: bool


def parse_permit(message: Mapping[str, Any]) -> PermitOptions:
    call_id = text(message, "id", limit=MAX_ID_CHARS * 2, required=True)
    assert call_id is not None
    return PermitOptions(
        call_id=call_id,
        allow=flag(message, "allow", default=False),
        always=flag(message, "always", default=False),
    )
