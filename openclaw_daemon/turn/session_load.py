"""A turn's first phase: resolve its session, read the transcript, and find the
committed turn a retried request id replays (``replay``). Every engine's turn
starts here (the embedded pipeline and the upstream one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openclaw_daemon.config import Paths
from openclaw_daemon.turn import replay
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.turn.options import TurnSettings
from openclaw_daemon.wire.requests import TurnOptions
from openclaw_sessions.store import SessionRef, SessionStore


@dataclass
class LoadedSession:
    store: SessionStore
    ref: SessionRef
    entries: list[dict[str, Any]]
    request_id: str  # "" for none
    done: list[dict[str, Any]] | None  # the committed turn this retry replays, if any


def load_session(
    paths: Paths,
    options: TurnOptions,
    settings: TurnSettings,
    ctx: TurnContext,
    span: dict[str, Any],
) -> LoadedSession:
    """The session the turn runs on (created if new), named on ``ctx`` at once so a
    failed turn's record names it; ``span`` (session.load's) says if it replays."""
    store = SessionStore(
        paths.agent_sessions_dir(options.agent_id),
        options.agent_id,
        cwd=str(settings.tools.workspace),
    )
    if options.session_key:
        ref = store.resolve_key(options.session_key)
    else:
        ref = store.resolve(options.session_id)
    ctx.session = ref
    entries = store.load_entries(ref)
    request_id = replay.check_id(options.request_id)
    done = replay.committed_turn(entries, request_id, options.message) if request_id else None
    if done is not None:
        span["replayed"] = request_id
    return LoadedSession(store, ref, entries, request_id, done)
