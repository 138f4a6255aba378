"""Typed shapes of what travels on the wire and lands in ``--json`` output.

TypedDicts are erased at run time (no cost on the CLI's start): they document
the keys once and let mypy check every place that builds or reads them. Keys
use the camelCase OpenClaw uses on its JSON surfaces.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

# Where a turn's reused prompt tokens came from: the live context (L1), a parked
# snapshot in RAM (L2) or on disk (L3), or nowhere (a cold prefill).
Tier = Literal["L1", "L2", "L3", "none"]
TIERS: tuple[Tier, ...] = ("L1", "L2", "L3", "none")
# The tiers that hold parked snapshots (the ones a restore reads).
ParkedTier = Literal["L2", "L3"]


class Usage(TypedDict):
    """OpenClaw's usage buckets; each prompt token is in exactly one of ``input``
    (prefilled) and ``cacheRead`` (reused). ``cacheWrite`` is 0 locally."""

    input: int
    output: int
    cacheRead: int
    cacheWrite: int
    total: int


class ToolCallResult(TypedDict):
    id: str
    name: str
    arguments: dict[str, Any]
    isError: bool
    cached: bool
    truncated: bool
    durationMs: float
    result: str


class StepResult(TypedDict):
    """One model call of a turn and the tool calls it made."""

    call: int
    usage: Usage
    text: str
    toolCalls: list[ToolCallResult]


class SessionFields(TypedDict):
    """The session and model a turn's result names, replayed or not."""

    sessionId: str
    sessionKey: str
    sessionFile: str
    agentId: str
    provider: str
    model: str
    modelPath: str
    contextTokens: int


class TurnResult(SessionFields, total=False):
    """The ``result`` of a turn's ``done`` frame (and the core of ``--json``)."""

    turnId: str
    text: str
    stopReason: str
    usage: Usage
    steps: list[StepResult]
    ttftMs: float | None
    cache: dict[str, Any] | None  # the cache report (cache.cache_report)
    compaction: dict[str, Any] | None
    replayed: dict[str, Any]  # a retry: the stored turn's first entry id, usage and steps
    spans: list[dict[str, Any]]
    daemonMs: float
    originClock: float  # the daemon's perf_counter at the trace origin
    at: float  # wall-clock seconds when the result was built
