"""Where a prompt's cached prefix comes from: L1 (live context), L2 (RAM) or L3 (disk).

``plan`` looks a prompt up in every tier and picks the cheapest way to get
the most tokens without prefilling them, using prefill and restore rates
measured online. ``apply`` carries the plan out: it parks the live sequence
first if the plan would overwrite state no tier holds yet, then restores. A
blob that fails its integrity check, or whose restored cells do not match its
header, is discarded, reported and replanned around; so is one whose first
decode fails (``discard_restored``, called by the turn). The turn still
answers. ``checkpoint`` parks the live sequence when the daemon is idle, so
switching sessions later costs a restore, not a re-prefill.

Runs on the model worker thread only (it drives the engine).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from openclaw_daemon.cache.base import DISK, RAM, CacheEntry
from openclaw_daemon.cache.kv_store import KVStore
from openclaw_daemon.cache.prefix_index import Match
from openclaw_daemon.model.base import FULL_MEMORY, common_prefix
from openclaw_daemon.wire.errors import CacheCorruptError, ModelError
from openclaw_daemon.wire.messages import ParkedTier, Tier

if TYPE_CHECKING:
    from openclaw_daemon.model.base import Checkpoint, KVEngine, LiveMatch

log = logging.getLogger("openclawd.cache")

# With several live sequences, a live prefix of at least this many tokens is
# kept (or shared) rather than restored over from L2/L3 unless the blob goes this
# many tokens further: a restored copy duplicates cells other sequences share, and
# in a unified KV cache every row of every step attends over all cells in use
# (4-row steps at a 1.3k-token head: 25 ms shared, 54 ms duplicated;
# docs/internals.md). It holds for this sequence's own cells too, even when no
# other sequence shares them yet: they may be the head that turns starting beside
# this one are about to borrow. Applying it only when another sequence already
# shared the prompt let four follow-ups starting together each restore their own
# blob (one run of two: aggregate 0.65 against 0.99 of one alone, 2026-12-07). A
# shorter live prefix (a common BOS and role marker) does not hold a restore back.
SHARE_OVER_RESTORE = 64

# A turn that prefills at least this many tokens has its park's buffer faulted
# in beside the prefill (``KVStore.prepare_buffer``): 3-4 s of prefill here, so
# the fault-in's share of the CPU is a few percent of it, while the next turn
# would have waited for all of it.
PREPARE_AHEAD_MIN_TOKENS = 1024


@dataclass(frozen=True)
class Divergence:
    """The prompt and the longest cached sequence differ at ``position``."""

    position: int
    cached: tuple[int, ...]
    source: Tier  # never "none": something was cached
    label: str  # the session that cached it


@dataclass
class CachePlan:
    cached: int  # prompt tokens that will not be prefilled
    tier: Tier
    entry: CacheEntry | None
    divergence: Divergence | None
    notices: list[str] = field(default_factory=list)
    parked: int = 0  # live tokens parked on the turn's path before being dropped


class _Rate:
    """An exponentially weighted rate (units per second), seeded with a prior."""

    def __init__(self, prior: float) -> None:
        self.value = prior

    def observe(self, units: float, seconds: float) -> None:
        if units > 0 and seconds > 0:
            self.value = 0.7 * self.value + 0.3 * (units / seconds)


class CostModel:
    """Prefill tok/s and restore bytes/s, measured online; decides if a restore pays."""

    def __init__(self) -> None:
        self.prefill_tok_s = _Rate(150.0)
        self.restore_bytes_s: dict[ParkedTier, _Rate] = {RAM: _Rate(4e9), DISK: _Rate(1e9)}

    def restore_pays(self, gained_tokens: int, blob_bytes: int, tier: ParkedTier) -> bool:
        restore_s = blob_bytes / self.restore_bytes_s[tier].value
        return restore_s < gained_tokens / self.prefill_tok_s.value

    def snapshot(self) -> dict[str, float]:
        restore = {
            f"restore{tier}MBPerS": round(rate.value / 1e6, 1)
            for tier, rate in self.restore_bytes_s.items()
        }
        return {"prefillTokPerS": round(self.prefill_tok_s.value, 1), **restore}


class PrefixCache:
    def __init__(self, engine: KVEngine, store: KVStore) -> None:
        self.engine = engine
        self.store = store
        self.costs = CostModel()
        # Per live sequence (``engine.sequence_id``: one per parallel turn):
        # the session whose turn filled it, and the entry this turn's ``apply``
        # restored into it, until its first decode succeeds (a state that
        # loads but cannot be decoded on is discarded).
        self._labels: dict[int, str] = {}
        self._restored: dict[int, CacheEntry | None] = {}
        # Parks and restores of parallel turns one at a time: a restore's fetched
        # buffer must not be handed to another park before it is loaded.
        self._tiers = threading.RLock()
        self.counters = {
            "hitL1": 0, "hitL2": 0, "hitL3": 0, "miss": 0, "parkedOnPath": 0, "parkedOnDrop": 0,
        }  # fmt: skip
        engine.keep_dropped = self._keep_dropped

    @property
    def live_label(self) -> str:
        return self._labels.get(self.engine.sequence_id, "")

    @live_label.setter
    def live_label(self, label: str) -> None:
        self._labels[self.engine.sequence_id] = label

    @property
    def restored(self) -> CacheEntry | None:
        return self._restored.get(self.engine.sequence_id)

    @restored.setter
    def restored(self, entry: CacheEntry | None) -> None:
        self._restored[self.engine.sequence_id] = entry

    # -- planning ----------------------------------------------------------------
    def plan(self, tokens: list[int]) -> CachePlan:
        self.park_dropped()  # a session dropped for room may be this one
        limit = len(tokens) - 1  # the last prompt token is always evaluated
        held = self.engine.live_match(tokens)
        shared_live = held.length
        live = min(shared_live, limit)
        if 0 < live < len(self.engine.live_tokens) and live < self.engine.trim_floor:
            live = 0  # the live state cannot be cut back that far (a sliding window)
        from_entry, entry, match = self.store.reusable(tokens, limit)
        shared_head = held.sequences > 1 and live >= SHARE_OVER_RESTORE
        margin = SHARE_OVER_RESTORE if shared_head else 0
        tier: Tier
        if (
            entry is not None
            and from_entry > live + margin
            and self.costs.restore_pays(from_entry - live, entry.blob_bytes, entry.tier)
        ):
            cached, tier = from_entry, entry.tier
        else:
            entry, cached = None, live
            tier = "L1" if cached else "none"
        plan = CachePlan(cached, tier, entry, self._divergence(tokens, held, match))
        shared = min(max(shared_live, match.length), limit)
        if cached < shared and (
            live < min(shared_live, limit) or from_entry < min(match.length, limit)
        ):
            plan.notices.append(self._window_notice(shared, cached))
        return plan

    def _window_notice(self, shared: int, cached: int) -> str:
        """Why a prompt sharing ``shared`` cached tokens reuses only ``cached``."""
        memory = self.engine.info.memory.replace("-", " ")
        nearest = f"nearest checkpoint at token {cached:,}" if cached else "no checkpoint before it"
        return (
            f"{memory}: the cached state shares {shared:,} tokens but cannot be cut back "
            f"that far; {nearest}"
        )

    def _divergence(self, tokens: list[int], held: LiveMatch, match: Match) -> Divergence | None:
        """Where the prompt leaves the longest cached sequence, if one goes on past it."""
        live = held.length
        longest = max(live, match.length)
        if longest == 0 or longest >= len(tokens):
            return None
        # ``live`` may come from another sequence's cells (a head it holds): name
        # that one's tokens and session, not this sequence's.
        if live == longest and len(held.held) > live:
            return Divergence(live, held.held, "L1", self._labels.get(held.seq_id, ""))
        if match.length == longest:
            for key in sorted(match.keys):
                entry = self.store.entry_for(key)
                if entry is not None and len(entry.tokens) > longest:
                    return Divergence(longest, entry.tokens, entry.tier, entry.label)
        return None

    # -- carrying it out -------------------------------------------------------
    def apply(self, plan: CachePlan, tokens: list[int]) -> CachePlan:
        """Make the live context hold ``plan.cached`` tokens of ``tokens``.

        Returns the plan that was carried out: a corrupt or refused blob is
        discarded and replanned around, with a notice saying so.
        """
        with self._tiers:
            done = self._apply(plan, tokens)
        if len(tokens) - done.cached >= PREPARE_AHEAD_MIN_TOKENS:
            self.store.prepare_buffer(tuple(tokens), trim_floor=self.engine.trim_floor)
        return done

    def _apply(self, plan: CachePlan, tokens: list[int]) -> CachePlan:
        entry = plan.entry
        self.restored = None
        if entry is None:
            # A prefix borrowed from another sequence replaces this one's own state
            # past their common prefix: park that first, if no tier holds it.
            own = common_prefix(self.engine.live_tokens, tokens)
            keep = own if self.engine.borrowable_prefix(tokens) else plan.cached
            plan.parked = self._park_live_before_dropping(keep=keep)
            self._count(plan.tier)
            return plan
        # Pinned: parking the live state first must not evict what we restore.
        with self.store.tier_of(entry).pinned(entry):
            plan.parked = self._park_live_before_dropping(keep=0)
            started = time.perf_counter()
            try:
                self.engine.restore(entry.tokens, self.store.fetch(entry), keep=plan.cached)
            except CacheCorruptError as exc:
                return self._replan(
                    plan, tokens, f"discarded a corrupt cache entry ({exc.message})"
                )
            except ModelError as exc:
                self.store.discard(entry, exc.message)
                return self._replan(plan, tokens, f"discarded a cache entry ({exc.message})")
        elapsed = time.perf_counter() - started
        parked = cast(ParkedTier, plan.tier)  # planned from an entry: L2 or L3
        self.costs.restore_bytes_s[parked].observe(entry.blob_bytes, elapsed)
        self.live_label = entry.label
        self.restored = entry
        self._count(plan.tier)
        return plan

    def decoded(self) -> None:
        """The turn's first decode on the restored state worked: it is trusted now."""
        self.restored = None

    def discard_restored(self, reason: str) -> str | None:
        """The first decode on a restored state failed: discard the entry and
        start cold; the notice to show, or None if nothing was restored."""
        entry, self.restored = self.restored, None
        if entry is None:
            return None
        self.store.discard(entry, reason)
        self.engine.reset()
        self.live_label = ""
        notice = f"discarded a cache entry whose first decode failed ({reason}); prefilling instead"
        log.warning("%s", notice)
        return notice

    def _replan(self, failed: CachePlan, tokens: list[int], notice: str) -> CachePlan:
        log.warning("%s; planning again", notice)
        fallback = self.plan(tokens)
        fallback.notices = [*failed.notices, f"{notice}; prefilling instead"]
        done = self.apply(fallback, tokens)
        done.parked += failed.parked
        return done

    def _count(self, tier: Tier) -> None:
        self.counters["miss" if tier == "none" else f"hit{tier}"] += 1

    def _park_live_before_dropping(self, *, keep: int) -> int:
        """Park the live sequence if the plan drops tokens no tier holds; tokens parked."""
        live = len(self.engine.live_tokens)
        if live > keep and self.checkpoint():
            self.counters["parkedOnPath"] += 1
            return live
        return 0

    def checkpoint(self) -> bool:
        """Park the live sequence in L2 (and, via the writer, L3); True if it did."""
        with self._tiers:
            return self._checkpoint()

    def _checkpoint(self) -> bool:
        live = tuple(self.engine.live_tokens)
        if not live or self.store.covers(live):
            return False
        floor = self.engine.trim_floor
        tokens, blob = self.engine.snapshot(
            lambda size: self.store.buffer_for(live, size, trim_floor=floor)
        )
        self.store.add(tokens, blob, self.live_label, trim_floor=floor)
        return True

    def checkpoint_all(self) -> bool:
        """Park every live sequence no turn owns (idle time); True if any was."""
        parked = self.park_dropped() > 0
        for _ in self.engine.each_sequence():
            parked = self.checkpoint() or parked
        return parked

    def _keep_dropped(self, seq_id: int, tokens: tuple[int, ...], size: int) -> str | None:
        """``KVControl.keep_dropped``: an idle sequence the engine drops for room is
        copied out unless a tier holds it or RAM could not take the copies (``size``
        bytes with those not yet parked). The engine's lock is held: no tiers' lock
        here, only the store's."""
        if size > self.store.ram.room_for_new() or self.store.covers(tokens):
            return None
        return self._labels.get(seq_id, "")

    def park_dropped(self) -> int:
        """Park in L2 the states the engine copied out as it dropped idle
        sequences for room (``_keep_dropped``); how many. Only full-attention
        memory runs several sequences, so a copy can be cut back anywhere
        (trim floor 0)."""
        dropped = self.engine.take_dropped()
        if not dropped:
            return 0
        parked = 0
        with self._tiers:
            for state in dropped:
                if not self.store.covers(state.tokens):
                    self.store.add(state.tokens, state.blob, state.label)
                    parked += 1
            self.counters["parkedOnDrop"] += parked
        return parked

    def boundary_checkpoint(self, tokens: list[int], boundary: int) -> Checkpoint | None:
        """Where a prefill of ``tokens`` should stop to park its state, for memory
        that cannot be cut back freely (a sliding window, recurrent layers):
        at ``boundary`` (the head every session shares), unless a tier already
        serves it or the live state is past it. A full-attention state parked
        later serves the head by trimming, so it needs none."""
        if self.engine.info.memory == FULL_MEMORY or not 0 < boundary < len(tokens) - 1:
            return None
        if len(self.engine.live_tokens) >= boundary or self.store.covers(tuple(tokens[:boundary])):
            return None

        def park() -> None:
            self.checkpoint()

        return boundary, park

    def clear(self) -> dict[str, Any]:
        """Drop every tier, the live context included: the next turn starts cold."""
        with self._tiers:
            self.engine.reset_all()
            self.engine.take_dropped()  # copies of dropped sequences go too
            self._labels.clear()
            return self.store.clear()

    def observe_prefill(self, tokens: int, seconds: float) -> None:
        # Short prefills are mostly fixed per-call overhead, not the rate.
        if tokens >= 32:
            self.costs.prefill_tok_s.observe(tokens, seconds)

    def stats(self) -> dict[str, Any]:
        return {**self.store.stats(), **self.counters, "costModel": self.costs.snapshot()}
