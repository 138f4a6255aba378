"""Agent ids, session ids, session keys and turn ids: checked wherever they arrive.

An agent id and a session id become path components (``agents/<agentId>/sessions/
<sessionId>.jsonl``), so every boundary that accepts one (CLI flags, the daemon's
request handler, ids read back from ``sessions.json``) passes it through here
first. The rules are the real OpenClaw's (2026.9.6):

- agent id: ``normalizeAgentId`` (packages/normalization-core/src/agent-id.ts):
  trimmed, 1-64 of ``[a-z0-9_-]`` starting with a letter or digit, lower-cased.
  OpenClaw rewrites anything else (``../x`` -> ``x``); we refuse it instead, so a
  typo or an attack never lands in some other agent's sessions.
- session id: ``validateSessionId`` (src/config/sessions/paths.ts): trimmed, NFC,
  a Unicode letter or digit then up to 127 letters, digits, marks, ``.``, ``_``
  or ``-``; ``<id>.jsonl`` at most 255 bytes and not a compaction checkpoint name.
- session key: ``agent:<agentId>:<rest>`` (``parseAgentSessionKeyParts``).

A bad value raises ``BadRequestError`` (exit 2 in the CLI, a ``bad_request``
frame from the daemon) with a one-line message naming the field.

Imported by the CLI on the ``agent`` fast path: standard library only (and
``errors``); ``unicodedata`` is loaded only for a non-ASCII session id.
"""

from __future__ import annotations

import re

from openclaw_daemon.wire.errors import BadRequestError

DEFAULT_AGENT_ID = "main"
AGENT_ID_RULE = "1-64 letters, digits, '_' or '-', starting with a letter or digit"
SESSION_ID_RULE = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"

# Compiled at import: both run on every ``openclaw agent``. The patterns below
# them are compiled on first use (re caches them), off the fast path.
_AGENT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}", re.ASCII | re.IGNORECASE)
_ASCII_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
# What OpenClaw's normalizeAgentId does to an id it does not accept as is; we
# only use it to suggest the id the user probably meant.
_AGENT_INVALID = r"[^a-z0-9_-]+"
_CHECKPOINT_FILE = (
    r".+\.checkpoint\.[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    r"\.jsonl"
)
# Turn ids are the daemon's own (12 hex digits); ``trace show`` takes a prefix.
_TURN_ID = r"[0-9a-f][0-9a-f-]{0,63}"
_MAX_KEY_CHARS = 512
# JavaScript's String.prototype.trim set (Python's str.strip differs: it
# strips \x1c-\x1f and keeps \ufeff), so ids trim exactly as OpenClaw's do.
_JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def _shown(value: str) -> str:
    """A value for a one-line message: quoted, escaped, bounded."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise BadRequestError(f"{field} must be a string, not {type(value).__name__}")
    return value


def agent_id(value: object, *, field: str = "agent id") -> str:
    """The canonical (lower-case) agent id; ``None`` is the default agent."""
    if value is None:
        return DEFAULT_AGENT_ID
    text = _string(value, field)
    trimmed = text.strip(_JS_WHITESPACE)
    if _AGENT_ID.fullmatch(trimmed):
        return trimmed.lower()
    guess = re.sub(_AGENT_INVALID, "-", trimmed.lower(), flags=re.ASCII).strip("-")[:64]
    suggestion = f" (did you mean {guess!r}?)" if guess else ""
    raise BadRequestError(f"invalid {field} {_shown(text)}: use {AGENT_ID_RULE}{suggestion}")


def is_session_id(value: str) -> bool:
    """OpenClaw's ``validateSessionId``, on an already trimmed value."""
    if _ASCII_SESSION_ID.fullmatch(value):
        ascii_ok = True
    elif value.isascii():
        return False
    else:
        ascii_ok = _unicode_session_id(value)
    return (
        ascii_ok
        and len(f"{value}.jsonl".encode()) <= 255
        and not _is_checkpoint_file(f"{value}.jsonl")
    )


def _is_checkpoint_file(name: str) -> bool:
    """OpenClaw keeps ``<id>.checkpoint.<uuid>.jsonl`` for compaction checkpoints."""
    if ".checkpoint." not in name.lower():
        return False
    return bool(re.fullmatch(_CHECKPOINT_FILE, name, flags=re.ASCII | re.IGNORECASE))


def _unicode_session_id(value: str) -> bool:
    import unicodedata  # rare: only a non-ASCII id pays for it

    if not 1 <= len(value) <= 128 or unicodedata.normalize("NFC", value) != value:
        return False
    first, rest = value[0], value[1:]
    if unicodedata.category(first)[0] not in "LN":
        return False
    return all(c in "._-" or unicodedata.category(c)[0] in "LNM" for c in rest)


def session_id(value: object, *, field: str = "session id") -> str:
    """A session id that is safe as a file name, trimmed as OpenClaw trims it."""
    text = _string(value, field)
    trimmed = text.strip(_JS_WHITESPACE)
    if not is_session_id(trimmed):
        raise BadRequestError(f"invalid {field} {_shown(text)}: use {SESSION_ID_RULE}")
    return trimmed


def optional_session_id(value: object, *, field: str = "session id") -> str | None:
    """``None`` (the agent's main session) or a checked session id."""
    return None if value is None else session_id(value, field=field)


def session_ref(value: object, *, field: str = "session") -> str:
    """A session named by its id, or by its key ``agent:<agentId>:<rest>``.

    The key's agent id is checked and lower-cased like any agent id; the rest
    is ``:``-separated session-id-like parts (``main``, ``explicit:<id>``).
    """
    text = _string(value, field).strip(_JS_WHITESPACE)
    if not text.lower().startswith("agent:"):
        return session_id(text, field=field)
    head, _, rest = text[len("agent:") :].partition(":")
    parts = rest.split(":")
    if len(text) > _MAX_KEY_CHARS or not rest or not all(is_session_id(p) for p in parts):
        raise BadRequestError(
            f"invalid {field} {_shown(text)}: use a session id or a key agent:<agentId>:<name>"
        )
    return f"agent:{agent_id(head, field=f'agent id in {field}')}:{rest}"


def optional_session_ref(value: object, *, field: str = "session") -> str | None:
    return None if value is None else session_ref(value, field=field)


def turn_id(value: object, *, field: str = "turn id") -> str:
    """A recorded turn's id or a prefix of it, lower-cased."""
    text = _string(value, field)
    prefix = text.strip(_JS_WHITESPACE).lower()
    if not re.fullmatch(_TURN_ID, prefix, flags=re.ASCII):
        raise BadRequestError(
            f"invalid {field} {_shown(text)}: use the hex id (or a prefix) "
            "from `openclaw trace list`"
        )
    return prefix


def is_canonical_agent_id(value: str) -> bool:
    """For the last guard before a path is built: the id came through ``agent_id``."""
    return bool(_AGENT_ID.fullmatch(value)) and value == value.lower()
