"""``daemon start --preload SESSION``: restore one session's KV state into the live
context right after the model loads, so the first turn after a start is an L1 hit
instead of an L3 restore. It runs as an idle job: a turn that arrives first wins,
and the preload gives up (that turn restores what it needs itself)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from openclaw_daemon.serve.lanes import session_lane
from openclaw_daemon.wire.errors import OpenClawError
from openclaw_sessions.prompt import SYSTEM_PROMPT
from openclaw_sessions.store import SessionRef, SessionStore

if TYPE_CHECKING:
    from openclaw_daemon.cache.prefix_cache import PrefixCache
    from openclaw_daemon.config import Paths
    from openclaw_daemon.serve.scheduler import Scheduler
    from openclaw_daemon.turn.session_tapes import SessionTapes
    from openclaw_daemon.turn.transcript import Transcript

log = logging.getLogger("openclawd")
LAST = "last"  # the most recently used session of the main agent


def pick(store: SessionStore, session: str) -> SessionRef | None:
    if session != LAST:
        return store.find(session)
    rows = sorted(store.load_index().items(), key=lambda kv: kv[1].get("updatedAt", 0))
    return store.find(rows[-1][0]) if rows else None


def schedule(
    session: str,
    *,
    paths: Paths,
    scheduler: Scheduler,
    cache: PrefixCache,
    tapes: SessionTapes,
    transcript: Transcript,
) -> None:
    store = SessionStore(paths.agent_sessions_dir("main"), "main")

    def preload() -> None:
        try:
            ref = pick(store, session)
        except OpenClawError as exc:
            log.warning("not preloading %s: %s", session, exc.message)
            return
        if ref is None:
            log.info("nothing to preload: no sessions yet")
            return
        with scheduler.try_lane(session_lane(store, ref.key)) as held:
            if not held or scheduler.busy():
                log.info("preload of %s skipped: a turn came first", ref.session_id)
                return
            entries = store.load_entries(ref)
            tape, _ = tapes.tape_for(ref, entries, transcript.head(SYSTEM_PROMPT))
            if not tape.tokens:
                return
            decision = cache.apply(cache.plan(tape.tokens), tape.tokens)
            cache.live_label = ref.session_id
            log.info(
                "preloaded %s: %d of %d tokens from %s",
                ref.session_id,
                decision.cached,
                len(tape.tokens),
                decision.tier,
            )

    scheduler.submit_idle(f"preload:{session}", preload)
