"""Every message that travels between the CLI and the daemon, as a TypedDict.

The wire form is a msgpack map told apart by its ``type`` (a ``Literal``, as in
simonw/llm's ``serialization.py``); ``frames`` owns the framing around it and
the type sets. TypedDicts are erased at run time: they document the keys once
and let mypy check every place that builds or reads a frame. docs/protocol.md
is checked against these classes field by field (tests/unit/test_protocol_doc.py).

Optional keys are in a ``total=False`` subclass of the required ones (the
project supports Python 3.10, which has no ``typing.NotRequired``).

One key casing on the wire: the camelCase OpenClaw uses on its JSON surfaces
(a unit goes in a suffix: ``startMs``, ``timeoutS``). The daemon parses the
requests once, in ``requests``, into snake_case Python options.

Standard library only, and nothing on the CLI's start path imports this module
at run time (the CLI imports it under ``TYPE_CHECKING``): a class definition
costs start-up time, an annotation does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict, cast

# Where a turn's reused prompt tokens came from: the live context (L1), a parked
# snapshot in RAM (L2) or on disk (L3), or nowhere (a cold prefill).
Tier = Literal["L1", "L2", "L3", "none"]
TIERS: tuple[Tier, ...] = ("L1", "L2", "L3", "none")
# The tiers that hold parked snapshots (the ones a restore reads).
ParkedTier = Literal["L2", "L3"]


# -- the opening, both ways ------------------------------------------------------
class _HelloKeys(TypedDict):
    type: Literal["hello"]
    version: int
    client: str  # "openclaw-cli", or "openclawd" from the daemon


class Hello(_HelloKeys, total=False):
    """First frame both ways; ``version`` must equal ``frames.PROTOCOL_VERSION``.
    The daemon's adds when it accepted the connection and sent this frame (its
    ``perf_counter``), so the CLI can tell a late accept from a late hello."""

    pid: int
    acceptedClock: float
    helloClock: float


# -- requests, client -> daemon --------------------------------------------------
class _TurnKeys(TypedDict):
    type: Literal["turn"]
    message: str


class TurnRequest(_TurnKeys, total=False):
    """One agent turn; every field but ``message`` has a default."""

    agentId: str
    sessionId: str | None  # null: the agent's main session
    sessionKey: str  # agent:<agentId>:<name>, instead of sessionId
    maxTokens: int | None
    temperature: float
    seed: int | None
    stop: list[str]
    cwd: str  # the tools' workspace
    timeoutS: float | None
    system: str | None  # replaces the default system prompt (the cached head)
    toolChoice: str | None  # auto | none | required | a tool name
    maxSteps: int | None  # most model calls in the turn
    allow: list[str]  # tools that change things the user permits: write, edit, exec
    env: dict[str, str]  # the CLI caller's environment, for exec
    execTimeout: float | None  # a cap on every exec command of the turn, seconds
    # Drafts from the tape at temperature 0; absent or null: where they are lossless.
    promptLookup: bool | None
    # Ask (a ``permission`` frame) before a write/edit/exec that ``allow`` lacks,
    # instead of refusing it; the client answers with ``permit``.
    askPermission: bool
    # OpenClaw's --thinking level (absent: off); an upstream model marked
    # ``reasoning`` gets it as ``reasoning_effort``, other engines say they ignore it.
    thinking: str
    # Idempotency: a committed turn of the session with this id is answered
    # from the transcript (``result.replayed``), not run again.
    requestId: str
    # An upstream engine for this turn: "provider/model-id" of openclaw.json's
    # models.providers (docs/scale-out.md). Absent: the configured primary when it
    # is an upstream, else the daemon's own model.
    model: str


class _ChatKeys(TypedDict):
    type: Literal["chat"]


class ChatRequest(_ChatKeys, total=False):
    """One OpenAI-style completion for ``openclaw serve`` (docs/openai-front.md):
    ``messages`` in OpenAI's chat shape (or ``prompt`` for a plain completion);
    no session, the conversation is found by its message prefix."""

    messages: list[dict[str, Any]]
    prompt: str  # /v1/completions: raw text, no chat template
    tools: list[dict[str, Any]]  # OpenAI function definitions
    toolChoice: str  # auto | none | required | function:NAME
    parallelToolCalls: bool  # false: a forced reply holds one call
    maxTokens: int | None
    temperature: float
    seed: int | None
    stop: list[str]
    timeoutS: float | None


class _SpanKeys(TypedDict):
    name: str
    startMs: float
    durationMs: float


class ClientSpan(_SpanKeys, total=False):
    """One of the CLI's own spans (cli.boot, cli.connect, daemon.spawn,
    request.send, reply.receive, cli.render), in ms from its process start."""

    acceptedMs: float  # cli.connect only: offsets of the daemon's accept
    helloMs: float  # ... and of its hello


class ReportRequest(TypedDict):
    """After a turn's ``done``: the CLI's spans, its wall time, its time to first
    token, and where the daemon's trace origin falls on its timeline. The daemon
    stores the merged record (docs/tracing.md)."""

    type: Literal["report"]
    turnId: str
    spans: list[ClientSpan]
    wallMs: float
    ttftMs: float | None
    daemonOffsetMs: float


class CacheRequest(TypedDict):
    """``action`` "stats" (counters, tiers, budgets) or "clear" (drop L2 and L3)."""

    type: Literal["cache"]
    action: Literal["stats", "clear"]


class CompactRequest(TypedDict):
    """Compact a session now: its older turns become a summary (generated on a
    fork of its cached prompt), and the new layout is prefilled ahead."""

    type: Literal["compact"]
    agentId: str
    sessionId: str
    instructions: str | None  # extra guidance for the summary


class TapeRequest(TypedDict):
    """Check a session: does the token tape its next turn would extend spell
    exactly its transcript's render? (``tape_check.compare``'s fields.)"""

    type: Literal["tape"]
    agentId: str
    sessionId: str


class StatusRequest(TypedDict):
    type: Literal["status"]


class StopRequest(TypedDict):
    type: Literal["stop"]


class PingRequest(TypedDict):
    type: Literal["ping"]


class MetricsRequest(TypedDict):
    """``done.result.text``: the counters in Prometheus text format 0.0.4."""

    type: Literal["metrics"]


class _PermitKeys(TypedDict):
    type: Literal["permit"]
    id: str  # the call the ``permission`` frame asked about
    allow: bool


class PermitRequest(_PermitKeys, total=False):
    """During a turn sent with ``askPermission``: the answer to its question."""

    always: bool  # allow this permission for the rest of the turn


class CancelRequest(TypedDict):
    """Stop the running turn (closing the socket does the same)."""

    type: Literal["cancel"]


Request = (
    Hello
    | TurnRequest
    | ChatRequest
    | ReportRequest
    | CacheRequest
    | CompactRequest
    | TapeRequest
    | StatusRequest
    | StopRequest
    | PingRequest
    | MetricsRequest
    | CancelRequest
    | PermitRequest
)


# -- stream frames, daemon -> client ----------------------------------------------
class TokenFrame(TypedDict):
    """A piece of the reply's text, UTF-8 complete, never part of a stop string."""

    type: Literal["token"]
    text: str


class ProgressFrame(TypedDict):
    """Prefill progress, once per batch: ``done`` of ``total`` prompt tokens."""

    type: Literal["progress"]
    phase: str
    done: int
    total: int
    rate: float  # tokens/s
    etaS: float


class PhaseFrame(TypedDict):
    """A finished trace span: a ``tracing.Trace`` span, with its own attributes
    (``tokens``, ``call``, ``tier``...) besides these."""

    type: Literal["phase"]
    name: str
    scope: str
    startMs: float  # from the daemon's receipt of the request
    durationMs: float


class _ToolKeys(TypedDict):
    type: Literal["tool"]
    phase: Literal["start", "end"]
    id: str
    name: str


class ToolFrame(_ToolKeys, total=False):
    """A tool call started (``phase`` "start": ``arguments``) or ended ("end":
    ``isError``, ``durationMs``, ``cached`` and a short ``preview`` of the result)."""

    arguments: dict[str, Any]
    isError: bool
    durationMs: float
    cached: bool
    preview: str


class PermissionFrame(TypedDict):
    """A turn sent with ``askPermission`` asks before running a tool that changes
    things; it waits for a ``permit`` (a cancel or no answer is a no)."""

    type: Literal["permission"]
    id: str  # the tool call's id
    name: str
    permission: str  # write | edit | exec
    arguments: dict[str, Any]


class NoticeFrame(TypedDict):
    """A message for the user's stderr."""

    type: Literal["notice"]
    text: str


StreamFrame = TokenFrame | ProgressFrame | PhaseFrame | ToolFrame | NoticeFrame | PermissionFrame


# -- terminal frames ---------------------------------------------------------------
class DoneFrame(TypedDict):
    """Terminal success: a turn's ``TurnResult``, or another request's result map."""

    type: Literal["done"]
    result: dict[str, Any]


class _ErrorKeys(TypedDict):
    type: Literal["error"]
    code: str
    message: str
    hint: str


class ErrorFrame(_ErrorKeys, total=False):
    """Terminal failure: an ``OpenClawError`` code plus text for people; a failed
    turn's names the turn, whose trace record is stored by then."""

    turnId: str


Terminal = DoneFrame | ErrorFrame
DaemonFrame = Hello | StreamFrame | Terminal


def done(result: Mapping[str, Any]) -> DoneFrame:
    return {"type": "done", "result": dict(result)}


def phase(span: Mapping[str, Any]) -> PhaseFrame:
    """A trace span as it streams (the span's extra attributes travel too)."""
    return cast(PhaseFrame, {"type": "phase", **span})


# -- results -------------------------------------------------------------------------
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
    model: str  # the stable id, e.g. smollm2-135m-instruct-q4_1
    modelName: str  # the GGUF's general.name, for display
    modelPath: str
    contextTokens: int


class TurnResult(SessionFields, total=False):
    """The ``result`` of a turn's ``done`` frame (and the core of ``--json``)."""

    turnId: str
    text: str
    stopReason: str  # stop | length | max_steps
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
    engine: str  # an upstream turn's: "upstream:provider/model-id", the one that answered
    fallbackFrom: list[str]  # engines that failed before it ("ref: why"), in order
    route: dict[str, str]  # {"engine", "rule"}: the engine routing chose and the rule why
