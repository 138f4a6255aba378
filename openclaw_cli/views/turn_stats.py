"""Aggregate stored turn records into what ``openclaw stats`` reports, and what to do about it.

Pure functions over the records of ``turn_record`` (docs/tracing.md), so the
numbers can be recomputed from ``openclaw trace list --json`` by anyone.
Percentiles interpolate linearly between closest ranks (numpy's default, and
``statistics.quantiles(..., method="inclusive")``). Token rates are totals
over totals (tokens / seconds across the turns), so one short turn cannot
swing them.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

from openclaw_daemon.observability.turn_record import prompt_tokens
from openclaw_daemon.wire.errors import BadRequestError
from openclaw_daemon.wire.messages import TIERS

PERCENTILES = (50, 90, 99)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: list[float]) -> dict[str, Any]:
    summary: dict[str, Any] = {"count": len(values)}
    for q in PERCENTILES:
        value = percentile(values, q)
        summary[f"p{q}"] = None if value is None else round(value, 3)
    return summary


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``15m``, ``2h``, ``7d``, ``1w`` (or a bare number of seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not match:
        raise BadRequestError(
            f"cannot read the duration {text!r}",
            hint="Use a number and a unit (s, m, h, d, w), e.g. 90s, 15m, 2h or 7d; "
            "a bare number is seconds.",
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def matches_session(record: dict[str, Any], session: str) -> bool:
    """A session given as its id, its key, or the key's last part (``main``)."""
    key = str(record.get("sessionKey") or "")
    return session in (record.get("sessionId"), key) or key.endswith(f":{session}")


def select(
    records: list[dict[str, Any]],
    *,
    session: str | None = None,
    since_s: float | None = None,
    now: float | None = None,
) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    chosen = [r for r in records if isinstance(r.get("spans"), list) and "wallMs" in r]
    if session:
        chosen = [r for r in chosen if matches_session(r, session)]
    if since_s is not None:
        chosen = [r for r in chosen if float(r.get("at", 0)) >= now - since_s]
    return chosen


def _behind_background(span: dict[str, Any]) -> bool:
    """The turn waited behind an idle-time job rather than another turn."""
    behind = span.get("behind")
    return isinstance(behind, list) and any(
        not str(label).startswith(("turn:", "cache clear", "sessions compact:")) for label in behind
    )


def _spans(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for r in records for s in r["spans"] if s["name"] == name]


def _rate(spans: list[dict[str, Any]]) -> float | None:
    """Tokens per second over every span that did work."""
    busy = [s for s in spans if (s.get("tokens") or 0) > 0 and s["durationMs"] > 0]
    seconds = sum(s["durationMs"] for s in busy) / 1000.0
    return round(sum(s["tokens"] for s in busy) / seconds, 1) if seconds > 0 else None


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Every figure ``openclaw stats`` shows, from the selected records.

    Time percentiles use the turns that finished and that the CLI reported on
    (so every one is measured from the process start); failed turns are
    counted by status; phases and token rates use every turn.
    """
    finished = [r for r in records if r.get("status", "ok") == "ok"]
    client = [r for r in finished if r.get("origin") == "process start"]
    failed = Counter(str(r.get("status")) for r in records if r.get("status", "ok") != "ok")
    lookups = Counter(str((r.get("cache") or {}).get("tier", "none")) for r in finished)
    prompt = sum(prompt_tokens(r.get("usage") or {}) for r in finished)
    cached = sum((r.get("usage") or {}).get("cacheRead", 0) for r in finished)
    phases: dict[str, list[float]] = {}
    for record in records:
        for span in record["spans"]:
            phases.setdefault(span["name"], []).append(float(span["durationMs"]))
    peaks = [r["peakRssBytes"] for r in records if isinstance(r.get("peakRssBytes"), int)]
    n = len(finished)
    summary: dict[str, Any] = {
        "turns": len(records),
        "finished": n,
        "failed": dict(sorted(failed.items())),
        "clientReported": len(client),
        "sessions": len({r.get("sessionKey") or r.get("sessionId") for r in records}),
        "from": min((r["at"] for r in records), default=None),
        "to": max((r["at"] for r in records), default=None),
        "ttftMs": distribution([r["ttftMs"] for r in client if r.get("ttftMs") is not None]),
        "turnMs": distribution([r["wallMs"] for r in client]),
        "residualMs": distribution([r["residualMs"] for r in client]),
        "prefillTokPerS": _rate(_spans(records, "model.prefill")),
        "decodeTokPerS": _rate(_spans(records, "model.decode")),
        "cache": {
            # An upstream's own cache counts under its name ("upstream:<provider>").
            "lookups": {tier: lookups.get(tier, 0) for tier in TIERS}
            | {tier: n for tier, n in sorted(lookups.items()) if tier.startswith("upstream:")},
            "hitRate": round(1 - lookups.get("none", 0) / n, 4) if n else None,
            "byTier": {tier: round(lookups.get(tier, 0) / n, 4) if n else None for tier in TIERS},
            "promptTokens": prompt,
            "cachedTokens": cached,
            "tokenHitRate": round(cached / prompt, 4) if prompt else None,
        },
        "peakRssBytes": max(peaks, default=None),
        "engines": dict(Counter(str(r.get("engine") or "embedded") for r in finished)),
        "routes": dict(Counter(str((r.get("route") or {}).get("rule", "-")) for r in finished)),
        "phases": {
            name: {**distribution(values), "totalMs": round(sum(values), 3)}
            for name, values in sorted(phases.items())
        },
    }
    summary["suggestions"] = suggestions(records, summary)
    return summary


_Tip = tuple[float, str]  # (what it costs, in ms, for sorting; what to do about it)


def suggestions(records: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """What the data says to change, most costly first; nothing when nothing stands out."""
    if not records:
        return []
    system = _system_prompt_changes(records)
    found = (
        _system_prompt_tip(records, system),
        _spawn_tip(records),
        _lane_wait_tip(records),
        _cache_miss_tip(records, summary, system),
        _boot_tip(records, summary),
        _tool_time_tip(records, summary),
    )
    tips = [tip for tip in found if tip is not None]
    return [text for _, text in sorted(tips, key=lambda tip: -tip[0])]


def _system_prompt_changes(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The turns whose prefix diverged from the cache in the system message."""
    return [
        r
        for r in records
        if ((r.get("cache") or {}).get("divergence") or {}).get("segment") == "system message"
    ]


def _system_prompt_tip(records: list[dict[str, Any]], system: list[dict[str, Any]]) -> _Tip | None:
    if not system:
        return None
    cost = sum(_prefill_ms(r) for r in system)
    return (
        cost,
        f"the system prompt changed in {len(system)} of {len(records)} turns, re-prefilling "
        f"{cost / 1000:,.1f} s in all; keep it byte-identical and move volatile "
        "content (dates, retrieved snippets) to the user turn",
    )


def _spawn_tip(records: list[dict[str, Any]]) -> _Tip | None:
    spawned = [r for r in records if r.get("spawned")]
    if not spawned:
        return None
    cost = sum(s["durationMs"] for r in spawned for s in r["spans"] if s["name"] == "daemon.spawn")
    return (
        cost,
        f"{len(spawned)} of {len(records)} turns had to start the daemon first "
        f"({cost / 1000:,.1f} s in all); keep it running with `openclaw daemon start`",
    )


def _lane_wait_tip(records: list[dict[str, Any]]) -> _Tip | None:
    waits = _spans(records, "lane.wait")
    if not (waits and max(s["durationMs"] for s in waits) >= 500):
        return None
    waited = sum(s["durationMs"] for s in waits)
    background = sum(s["durationMs"] for s in waits if _behind_background(s))
    cause = (
        f"{background / 1000:,.1f} s of it behind background work (parking, "
        "compaction, prefill ahead), which should stop within milliseconds of a turn "
        "arriving; `openclaw trace list` finds those turns (lane.wait says behind what), "
        "and OPENCLAW_PREFILL_AHEAD=0 turns prefill ahead off"
        if background >= waited / 2
        else "turns of different sessions run one at a time unless the daemon has "
        "`--parallel N` (they then share model steps; on a CPU each decodes slower), so "
        "avoid overlapping runs, expect the wait, or start it with `daemon start --parallel 4`"
    )
    return (
        waited,
        f"turns waited {waited / 1000:,.1f} s in all for the model (lane.wait), at most "
        f"{max(s['durationMs'] for s in waits) / 1000:,.1f} s; {cause}",
    )


def _cache_miss_tip(
    records: list[dict[str, Any]], summary: dict[str, Any], system: list[dict[str, Any]]
) -> _Tip | None:
    n = len(records)
    misses = summary["cache"]["lookups"]["none"]
    # A changed system prompt already explains the misses (its own tip says so).
    if not (n >= 4 and misses / n >= 0.5 and not system):
        return None
    cost = sum(_prefill_ms(r) for r in records if (r.get("cache") or {}).get("tier") == "none")
    return (
        cost,
        f"{misses} of {n} turns found nothing in the prefix cache; new sessions share "
        "the cached head only when their system prompt is the same, so reuse one "
        "(-s TEXT) rather than varying it",
    )


def _boot_tip(records: list[dict[str, Any]], summary: dict[str, Any]) -> _Tip | None:
    boot = summary["phases"].get("cli.boot", {}).get("p50")
    if not (boot is not None and boot > 150):
        return None
    return (
        boot * len(records),
        f"the CLI took {boot:,.0f} ms to start (p50 of cli.boot); is "
        "PYTHONDONTWRITEBYTECODE set, or the install on a slow disk? Byte-compiled "
        "modules start several times faster",
    )


def _tool_time_tip(records: list[dict[str, Any]], summary: dict[str, Any]) -> _Tip | None:
    tools = summary["phases"]
    tool_ms = sum(v["totalMs"] for k, v in tools.items() if k.startswith("tool."))
    wall_ms = sum(r["wallMs"] for r in records)
    if not (wall_ms and tool_ms / wall_ms > 0.3):
        return None
    slowest = max(
        ((k, v["totalMs"]) for k, v in tools.items() if k.startswith("tool.")),
        key=lambda item: item[1],
    )
    return (
        tool_ms,
        f"tools took {tool_ms / wall_ms:.0%} of the turn time, most of it in "
        f"{slowest[0]} ({slowest[1] / 1000:,.1f} s)",
    )


def _prefill_ms(record: dict[str, Any]) -> float:
    return sum(s["durationMs"] for s in record["spans"] if s["name"] == "model.prefill")
