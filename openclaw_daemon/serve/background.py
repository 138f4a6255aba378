"""Idle-time jobs after a turn: compaction of sessions past their threshold,
then prefill ahead of the compacted layout, so the next turn is a cache hit.

Both are preemptible: a turn arriving meanwhile goes first, and the job is
queued again (resuming from what the cache holds by then).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from openclaw_daemon.serve.lanes import session_lane
from openclaw_daemon.serve.scheduler import Scheduler
from openclaw_daemon.turn.compactor import Compactor
from openclaw_daemon.wire.errors import CancelledError, OpenClawError
from openclaw_sessions.store import SessionRef, SessionStore

log = logging.getLogger("openclawd.background")

# Background compaction and prefill ahead start only after this long without
# a turn. Between back-to-back turns (a script, a benchmark) they would be
# preempted at once, and having moved the live context to another session,
# make the next turn wait and restore it (measured: +30-540 ms a turn).
BACKGROUND_QUIET_S = 2.0
# ...but with turns that never pause for that long, prefill ahead runs anyway
# after this: a turn stops it mid-batch within milliseconds. A compaction has
# no such deadline: its first step restores the session's state (a 150 MB
# copy, or a disk read) that no turn can interrupt, and under a stream of
# turns every attempt paid the next turn ~250 ms only to be preempted. A
# session that overflows first is compacted on the overflow path instead.
BACKGROUND_AT_MOST_S = 60.0


def schedule_compactions(
    compactor: Compactor, scheduler: Scheduler, *, prefill_ahead: bool
) -> None:
    """Compact the sessions due for it once the daemon is quiet; then, unless
    ``prefill_ahead`` is off (OPENCLAW_PREFILL_AHEAD=0: the baseline that pays
    at the next turn), prefill each compacted layout ahead."""
    for ref, store in compactor.take_due():
        job = _compaction_job(compactor, scheduler, ref, store, prefill_ahead=prefill_ahead)
        scheduler.submit_idle(f"compact:{ref.key}", job, after_quiet_s=BACKGROUND_QUIET_S)


def _compaction_job(
    compactor: Compactor,
    scheduler: Scheduler,
    ref: SessionRef,
    store: SessionStore,
    *,
    prefill_ahead: bool,
) -> Callable[[], None]:
    """One session's idle compaction, which queues itself again when preempted (its
    own closure: one per session, never another session's)."""
    name = f"compact:{ref.key}"

    def compact() -> None:
        # In the session's lane: a turn of it may be running off the worker (on an
        # upstream) and appending to the same transcript. Taken: later.
        with scheduler.try_lane(session_lane(store, ref.key)) as held:
            if not held:
                scheduler.submit_idle(name, compact, after_quiet_s=BACKGROUND_QUIET_S)
                return
            try:
                compactor.compact(ref, store, cancelled=scheduler.busy)
            except CancelledError:
                # No deadline (see BACKGROUND_AT_MOST_S): only a quiet moment.
                scheduler.submit_idle(name, compact, after_quiet_s=BACKGROUND_QUIET_S)
                return
            except OpenClawError as exc:  # e.g. one huge turn: nothing older to cut
                log.info("not compacting %s: %s", ref.session_id, exc.message)
                return
        if prefill_ahead:
            schedule_prefill_ahead(compactor, scheduler, ref)

    return compact


def schedule_prefill_ahead(
    compactor: Compactor,
    scheduler: Scheduler,
    ref: SessionRef,
    *,
    quiet_s: float = BACKGROUND_QUIET_S,
) -> None:
    """Prefill ``ref``'s compacted layout in idle time, queued again when a turn
    preempts it (with a deadline: a turn stops it mid-batch within milliseconds)."""

    def prefill() -> None:
        if not compactor.prefill_ahead(ref, scheduler.busy):
            scheduler.submit_idle(
                f"prefill-ahead:{ref.key}",
                prefill,
                after_quiet_s=BACKGROUND_QUIET_S,
                at_most_s=BACKGROUND_AT_MOST_S,
            )

    scheduler.submit_idle(
        f"prefill-ahead:{ref.key}", prefill, after_quiet_s=quiet_s, at_most_s=BACKGROUND_AT_MOST_S
    )
