"""Cache-aware compaction policy: pure functions over transcript entries and token counts.

After compaction a session's prompt is [stable head][summary][recent tail]:
the head is untouched (its tokens stay cached), the summary replaces what was
cut, and the tail keeps the most recent turns verbatim, by token budget. The
cut is always at the start of a user turn, so a tool call is never separated
from its result. Old entries stay in the file; a ``compaction`` entry records
``{summary, firstKeptEntryId, tokensBefore, tokensAfter}``, and the active
context is the latest compaction's summary plus the entries from its
``firstKeptEntryId`` on.

No daemon, no model: the daemon supplies token counts and runs the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from openclaw_sessions.store import Entry

SUMMARY_PREFIX = "Summary of the earlier conversation:\n"


@dataclass(frozen=True)
class CompactionSettings:
    context_window: int
    reserve: int  # tokens left free for the next message and its reply
    keep_recent: int  # token budget of the tail kept verbatim

    @classmethod
    def for_window(cls, n_ctx: int) -> CompactionSettings:
        """OpenClaw keeps 16-20k in reserve and 20k recent on large windows; scale
        both to small ones (a quarter and a fifth of the window)."""
        return cls(n_ctx, reserve=min(20_000, n_ctx // 4), keep_recent=min(20_000, n_ctx // 5))

    def needs_compaction(self, prompt_tokens: int) -> bool:
        return prompt_tokens > self.context_window - self.reserve


@dataclass(frozen=True)
class CompactionPlan:
    summarized: list[Entry]  # message entries the summary replaces
    kept: list[Entry]  # message entries kept verbatim, from first_kept_id on
    first_kept_id: str | None


def latest_compaction(entries: list[Entry]) -> Entry | None:
    return next((e for e in reversed(entries) if e.get("type") == "compaction"), None)


def active_messages(entries: list[Entry]) -> tuple[str | None, list[Entry]]:
    """The current context: the latest summary (or None) and the message entries after it."""
    compaction = latest_compaction(entries)
    messages = [e for e in entries if e.get("type") == "message"]
    if compaction is None:
        return None, messages
    first = compaction.get("firstKeptEntryId")
    ids = [e.get("id") for e in messages]
    kept = messages[ids.index(first) :] if first in ids else []
    return str(compaction.get("summary", "")), kept


def _is_turn_start(entry: Entry) -> bool:
    return entry.get("message", {}).get("role") == "user"


def plan_compaction(
    entries: list[Entry],
    tokens: Callable[[Entry], int],
    keep_recent: int,
    *,
    keep_last_turn: bool = True,
) -> CompactionPlan | None:
    """Which active entries to summarise and which to keep; None if nothing can go.

    Keeps the longest run of whole recent turns within ``keep_recent`` tokens
    (at least the last turn, whatever its size, unless ``keep_last_turn`` is
    False: on overflow the new message is the tail), cut where a user turn starts.
    """
    _summary, active = active_messages(entries)
    starts = [i for i, entry in enumerate(active) if _is_turn_start(entry)]
    if not keep_last_turn and len(starts) == 1 and sum(tokens(e) for e in active) > keep_recent:
        return CompactionPlan(active, [], None)  # the one turn overflowed: summarise it
    if len(starts) < 2:
        return None  # one turn or none: nothing older to summarise
    cut = starts[-1]
    kept_tokens = sum(tokens(e) for e in active[cut:])
    for start in reversed(starts[1:-1]):
        more = sum(tokens(e) for e in active[start:cut])
        if kept_tokens + more > keep_recent:
            break
        cut, kept_tokens = start, kept_tokens + more
    return CompactionPlan(active[:cut], active[cut:], str(active[cut].get("id")))
