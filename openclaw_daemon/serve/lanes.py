"""The lane each request on a stored session takes.

The scheduler runs one job at a time on the model worker; a lane (a lock per
key) keeps the requests of one session in order and out of each other's way.
The key is the session's own key, derived here for every kind of request,
so a turn of the agent's main session and a ``sessions compact`` of it (named
by id or key) wait for each other.
"""

from __future__ import annotations

from openclaw_daemon.wire.errors import SessionError
from openclaw_sessions.store import SessionStore, explicit_session_key, main_session_key


def session_lane(store: SessionStore, session: str | None) -> str:
    """The lane of the session ``session`` names (its id or key; None: the
    agent's main session): that session's key, as the store resolves it.

    Every request on one session (a turn, ``sessions compact``, ``check-tape``)
    takes this lane, so they run one after another. Read only: a turn of a new
    session creates it inside the lane.
    """
    if session is None:
        return main_session_key(store.agent_id)
    try:
        index = store.load_index()
    except SessionError:  # the turn reports it, from inside its lane
        index = {}
    for key, entry in index.items():
        if session in (entry.get("sessionId"), key):
            return key
    return explicit_session_key(store.agent_id, session)
