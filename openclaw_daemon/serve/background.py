"""Idle-time jobs after a turn: compaction of sessions past their threshold,
then prefill ahead of the compacted layout, so the next turn is a cache hit.

Both are preemptible: a turn arriving meanwhile goes first, and the job is
queued again (resuming from what the cache holds by then).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from openclaw_daemon.observability.tracing import Trace
from openclaw_daemon.serve.lanes import session_lane
from openclaw_daemon.serve.scheduler import Scheduler
from openclaw_daemon.turn.compactor import Compactor
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.wire.errors import CancelledError, OpenClawError
from openclaw_sessions.store import SessionRef, SessionStore

if TYPE_CHECKING:
    from openclaw_daemon.upstream.targets import Target
    from openclaw_daemon.upstream.turns import UpstreamTurns

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


def compact_upstream(
    upstream: UpstreamTurns,
    scheduler: Scheduler,
    pool: Executor,
    *,
    quiet_s: float = BACKGROUND_QUIET_S,
) -> None:
    """Compact, on its own upstream, each session a turn left past that engine's
    threshold, once the session has been quiet for ``quiet_s``; then prefill the new
    layout ahead there. On the upstream pool: the model worker never waits for a
    remote summary. A turn of the session arriving first (or meanwhile) wins: the
    job gives up, and that turn marks the session due again if it still is."""
    for target, ref, store in upstream.compactor.take_due():
        pool.submit(_upstream_compaction, upstream, scheduler, target, ref, store, quiet_s)


def _upstream_compaction(
    upstream: UpstreamTurns,
    scheduler: Scheduler,
    target: Target,
    ref: SessionRef,
    store: SessionStore,
    quiet_s: float,
) -> None:
    lane = session_lane(store, ref.key)
    updated = _updated_at(store, ref)
    time.sleep(quiet_s)

    def give_way() -> bool:  # to a turn of the session, or to the daemon's stop
        return scheduler.stopping or scheduler.lane_wanted(lane)

    if _updated_at(store, ref) != updated or give_way():
        return  # not quiet: a later turn decides again
    # openclaw.json may have changed since the turn (another URL, the model removed):
    # compact only on the engine the session's last turn ran on, as configured now.
    current = upstream.session_target(store, ref)
    if current is None or current.ref != target.ref:
        return
    target = current
    with scheduler.try_lane(lane) as held:
        if not held:
            return
        trace = Trace()
        ctx = TurnContext(trace, lambda frame: None, give_way, trace.origin)
        try:
            report = upstream.compact_session(target, ref, store, ctx, None)
        except CancelledError:
            log.info("background compaction of %s gave way to a turn", ref.session_id)
            return
        except OpenClawError as exc:  # unreachable upstream, nothing older to cut, ...
            log.info("not compacting %s on %s: %s", ref.session_id, target.ref, exc.message)
            return
        except Exception:  # a bug: on a pool thread it would vanish with its future
            log.exception("background compaction of %s failed", ref.session_id)
            return
    upstream.compactor.counters["background"] += 1
    log.info(
        "compacted %s on %s in idle time: %s -> %s tokens",
        ref.session_id, target.ref, report.get("tokensBefore"), report.get("tokensAfter"),
    )  # fmt: skip


def _updated_at(store: SessionStore, ref: SessionRef) -> object:
    """When the session's last turn (of any engine) was stored."""
    try:
        return store.load_index().get(ref.key, {}).get("updatedAt")
    except OpenClawError:
        return None
