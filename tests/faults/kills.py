"""The kill -9 campaign: the daemon killed at random moments in each phase of
its work, and the CLI killed mid-stream; after each kill, what survived.

A kill is timed from what the daemon streams to a raw client (progress,
token, tool and phase frames) or, for the disk tier, from the writer's temp
file appearing in the cache dir. After each daemon kill the daemon is
restarted through the CLI and the session is checked: every transcript line
parses, no committed turn is lost or duplicated, the next turn succeeds, and
the tape agrees with the transcript where the tree can tell.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from openclaw_daemon.wire.client import DaemonClient
from tests.faults.harness import Harness, turn_request
from tests.faults.transcripts import check_session, corrupt_lines_in

PHASES = ("prefill", "decode", "tool", "persist", "park", "compaction")
_STREAM_TIMEOUT_S = 240.0

# Fresh filler text: 120 words is about 150 tokens; a prefill kill uses 480
# (about 600 tokens, 2-3 s on 2 idle cores), so a kill 0.05-1.5 s after the
# restore lands inside the prefill even on a quiet machine.
_WORDS = ("amber", "basalt", "cedar", "delta", "ember", "fjord", "granite", "harbor", "indigo")


def filler(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


@dataclass
class KillOutcome:
    """One kill and what the checks after it found."""

    index: int
    target: str
    observed: str  # what the daemon was doing when it died, from the stream
    session: str
    delay_ms: float
    corrupt_lines: int = 0
    lost: int = 0
    duplicated: int = 0
    next_turn_ok: bool = True
    tape_matches: bool | None = None  # None: this tree cannot tell
    tape_method: str = ""
    restart_ms: float = 0.0
    detail: str = ""


@dataclass
class Campaign:
    """Bookkeeping across kills: what each session's clients saw committed."""

    harness: Harness
    rng: random.Random
    committed: dict[str, list[str]] = field(default_factory=dict)
    counter: int = 0
    last_envelope: dict[str, Any] = field(default_factory=dict)

    def message(self, label: str) -> str:
        self.counter += 1
        return f"f{self.counter} {label}: reply with one word."

    def commit(self, session: str, message: str) -> None:
        self.committed.setdefault(session, []).append(message)

    def normal_turn(self, session: str, label: str) -> tuple[bool, str]:
        message = self.message(label)
        ok, envelope, stderr = self.harness.turn(message, session)
        self.last_envelope = envelope
        if ok:
            self.commit(session, message)
        return ok, stderr or json.dumps(envelope)[:200]


class _Killer:
    """Kills the daemon once, now or after a delay, and records the moment."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.state = "before the turn"
        self.killed_in: str | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def kill(self) -> None:
        with self._lock:
            if self.killed_in is None:
                self.killed_in = self.state
                self.harness.kill9()

    def later(self, seconds: float) -> None:
        if self._timer is None:
            self._timer = threading.Timer(seconds, self.kill)
            self._timer.daemon = True
            self._timer.start()

    def wait(self, timeout: float = 30.0) -> None:
        if self._timer is not None:
            self._timer.join(timeout)


def _stream(
    harness: Harness, request: dict[str, Any], on_frame: Callable[[dict[str, Any], _Killer], None]
) -> _Killer:
    """Send one request on a raw connection; ``on_frame`` decides when to kill."""
    killer = _Killer(harness)
    try:
        with DaemonClient(harness.socket_path, connect_timeout=30) as client:
            for frame in client.request(request, timeout=_STREAM_TIMEOUT_S):
                _track(frame, killer)
                on_frame(frame, killer)
                if killer.killed_in is not None:
                    break
    except Exception as exc:  # the kill breaks the stream; anything else is recorded
        if killer.killed_in is None:
            killer.state = f"stream ended: {type(exc).__name__}: {exc}"[:160]
    killer.wait()
    if killer.killed_in is None:  # the turn finished first: kill right after it
        killer.state = f"after the reply ({killer.state})"
        killer.kill()
    return killer


def _track(frame: dict[str, Any], killer: _Killer) -> None:
    """Keep ``killer.state`` at what the daemon is doing now."""
    kind = frame.get("type")
    if kind == "progress":
        killer.state = "prefill"
    elif kind == "token":
        killer.state = "decode"
    elif kind == "tool":
        killer.state = "tool execution" if frame.get("phase") == "start" else "after a tool"
    elif kind == "phase":
        name = str(frame.get("name"))
        after = {
            "cache.restore": "prefill",
            "model.prefill": "decode",
            "model.decode": "cache report / persist",
            "cache.report": "session.persist",
            "session.persist": "after persist",
        }
        killer.state = after.get(name, killer.state)
    elif kind == "done":
        killer.state = "after done"


def kill_in_prefill(c: Campaign, session: str) -> tuple[str, _Killer, float]:
    message = c.message("prefill " + filler(c.rng, 480))
    delay = c.rng.uniform(0.05, 1.5)

    def on_frame(frame: dict[str, Any], killer: _Killer) -> None:
        if frame.get("type") == "phase" and frame.get("name") == "cache.restore":
            killer.later(delay)

    return message, _stream(c.harness, turn_request(message, session), on_frame), delay


def kill_in_decode(c: Campaign, session: str) -> tuple[str, _Killer, float]:
    message = c.message("decode: count from one to forty in words")
    after_tokens = c.rng.randint(1, 6)
    seen = [0]

    def on_frame(frame: dict[str, Any], killer: _Killer) -> None:
        if frame.get("type") == "token":
            seen[0] += 1
            if seen[0] >= after_tokens:
                killer.kill()

    request = turn_request(message, session, maxTokens=48)
    return message, _stream(c.harness, request, on_frame), float(after_tokens)


def kill_in_tool(c: Campaign, session: str) -> tuple[str, _Killer, float]:
    message = c.message("tool: use exec to run the command: sleep 3")
    delay = c.rng.uniform(0.0, 1.0)

    def on_frame(frame: dict[str, Any], killer: _Killer) -> None:
        if frame.get("type") == "tool" and frame.get("phase") == "start":
            killer.later(delay)

    request = turn_request(
        message,
        session,
        toolChoice="exec",
        allow=["exec"],
        maxTokens=48,
        cwd=str(c.harness.state_dir),
        execTimeout=10.0,
    )
    return message, _stream(c.harness, request, on_frame), delay


def kill_at_persist(c: Campaign, session: str) -> tuple[str, _Killer, float]:
    message = c.message("persist")
    # Persist starts when cache.report ends (a few ms); model.decode ends just before.
    trigger = c.rng.choice(("model.decode", "cache.report"))

    def on_frame(frame: dict[str, Any], killer: _Killer) -> None:
        if frame.get("type") == "phase" and frame.get("name") == trigger:
            killer.kill()

    return message, _stream(c.harness, turn_request(message, session), on_frame), 0.0


def kill_in_park(c: Campaign, session: str) -> tuple[str, _Killer, float]:
    """A turn on another session parks this one; kill while the disk writer runs."""
    # The last turn (the previous kill's check) left another session live.
    other = session + "-other"
    message = c.message("park")
    ok, _, _ = c.harness.turn(message, other)
    if ok:
        c.commit(other, message)
    killer = _Killer(c.harness)
    killer.state = "idle, waiting for the disk writer"
    extra = c.rng.uniform(0.0, 0.08)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(c.harness.cache_dir.glob("*/.*.tmp")):
            killer.state = "parking to disk (writer's temp file present)"
            time.sleep(extra)
            break
        time.sleep(0.005)
    killer.kill()
    return message, killer, extra * 1000


def kill_in_compaction(c: Campaign, session: str) -> tuple[str, _Killer, float]:
    # Enough older text that the summary shrinks the session: a compaction that
    # would not shrink it is refused before anything runs (nothing to kill).
    for _ in range(3):
        c.normal_turn(session, "compaction setup " + filler(c.rng, 200))
    delay = c.rng.uniform(0.1, 2.5)
    request = {"type": "compact", "agentId": "main", "sessionId": session, "instructions": None}

    killer = _Killer(c.harness)
    killer.state = "compaction"
    killer.later(delay)
    done = _stream_compact(c.harness, request, killer)
    if done:
        killer.kill()
    return "", killer, delay * 1000


def _stream_compact(harness: Harness, request: dict[str, Any], killer: _Killer) -> bool:
    try:
        with DaemonClient(harness.socket_path, connect_timeout=30) as client:
            client.call(request, timeout=_STREAM_TIMEOUT_S)
        killer.state = "after the compaction finished"
    except Exception as exc:  # the kill (or a refusal) ends it
        if killer.killed_in is None:
            killer.state = f"compaction refused: {exc}"[:120]
        return killer.killed_in is None
    killer.wait()
    return killer.killed_in is None


KILLERS: dict[str, Callable[[Campaign, str], tuple[str, _Killer, float]]] = {
    "prefill": kill_in_prefill,
    "decode": kill_in_decode,
    "tool": kill_in_tool,
    "persist": kill_at_persist,
    "park": kill_in_park,
    "compaction": kill_in_compaction,
}


def verify(c: Campaign, outcome: KillOutcome, *, restart: bool = True) -> None:
    """Restart (for a daemon kill), then the checks the report counts."""
    harness = c.harness
    if restart:
        started = time.monotonic()
        try:
            harness.start()
        except RuntimeError as exc:
            outcome.detail += f" restart failed: {exc}"
        outcome.restart_ms = (time.monotonic() - started) * 1000
    corrupt = corrupt_lines_in(harness.sessions_dir())
    outcome.corrupt_lines = sum(corrupt.values())
    if corrupt:
        outcome.detail += f" corrupt lines: {corrupt}"
    for session, messages in c.committed.items():
        check = check_session(harness.sessions_dir() / f"{session}.jsonl", messages)
        outcome.lost += len(check.lost)
        outcome.duplicated += len(check.duplicated)
        if check.lost or check.duplicated:
            outcome.detail += f" {session}: lost {check.lost} duplicated {check.duplicated}"
        # Counted once: later kills must not count the same defect again.
        c.committed[session] = [m for m in messages if m not in check.lost]
    ok, why = c.normal_turn(outcome.session, "next turn after the kill")
    outcome.next_turn_ok = ok
    if not ok:
        outcome.detail += f" next turn failed: {why[:200]}"
    outcome.tape_matches = tape_matches(harness, outcome.session)
    outcome.tape_method = "sessions check-tape"
    if outcome.tape_matches is None and ok:
        outcome.tape_matches = cache_agrees(c.last_envelope, outcome.session)
        outcome.tape_method = "next turn's cache divergence"
        if outcome.tape_matches is False:
            divergence = c.last_envelope["meta"]["trace"]["cache"]["divergence"]
            outcome.detail += f" cached tape leaves the transcript: {divergence}"[:400]


def tape_matches(harness: Harness, session: str) -> bool | None:
    """``openclaw sessions check-tape ID --json``: the tape the next turn would
    extend against the transcript's render (None where the tree lacks it)."""
    proc = harness.run("sessions", "check-tape", session, "--json", timeout=120)
    try:
        shown = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return None
    value = shown.get("tapeMatchesTranscript") if isinstance(shown, dict) else None
    return value if isinstance(value, bool) else None


def cache_agrees(envelope: dict[str, Any], session: str) -> bool | None:
    """A proxy where the tree has no tape check: the next prompt, rendered from
    the transcript, must follow this session's cached tokens up to its new
    message. A divergence inside an older message means the tape the daemon
    kept (or reloaded) is not what the transcript says."""
    try:
        cache = envelope["meta"]["trace"]["cache"]
    except (KeyError, TypeError):
        return None
    divergence = cache.get("divergence") if isinstance(cache, dict) else None
    if not isinstance(divergence, dict):
        return True
    if session not in str(divergence.get("cachedSession") or ""):
        return True  # another session's prefix: says nothing about this tape
    segment = str(divergence.get("segment", ""))
    return segment.startswith("new ") or segment == "generation prompt"


def run_daemon_kills(
    harness: Harness,
    count: int,
    seed: int,
    *,
    phases: tuple[str, ...] = PHASES,
    progress: Callable[[list[KillOutcome]], None] | None = None,
) -> list[KillOutcome]:
    """``count`` kills, the phases in turn, each at a random moment in its phase."""
    c = Campaign(harness, random.Random(seed))
    harness.start()
    outcomes: list[KillOutcome] = []
    for index in range(count):
        target = phases[index % len(phases)]
        session = f"k{index % 3}"
        message, killer, delay = KILLERS[target](c, session)
        outcome = KillOutcome(index, target, killer.killed_in or "?", session, delay)
        verify(c, outcome)
        outcomes.append(outcome)
        del message  # cut by the kill: allowed once or not at all, never twice
        if progress is not None:
            progress(outcomes)
    return outcomes


def run_cli_kills(harness: Harness, count: int, seed: int) -> list[KillOutcome]:
    """kill -9 of the CLI once it has printed part of the reply."""
    c = Campaign(harness, random.Random(seed + 1))
    if not harness.alive():
        harness.start()
    outcomes = []
    for index in range(count):
        session = f"cli{index % 2}"
        message = c.message("cli: count from one to thirty in words")
        proc = harness.popen(
            "agent", "--local", "--session-id", session, "-m", message, "--max-tokens", "48"
        )
        assert proc.stdout is not None
        guard = threading.Timer(300, proc.kill)  # a hung turn must not hang the suite
        guard.start()
        first = proc.stdout.read(c.rng.randint(1, 8))  # blocks until the stream starts
        guard.cancel()
        proc.kill()
        proc.wait(timeout=30)
        observed = "mid-stream" if first else "before any output"
        outcome = KillOutcome(index, "cli", observed, session, 0.0)
        outcome.detail = "" if harness.alive() else "daemon did not survive the CLI kill"
        outcome.next_turn_ok = harness.alive()
        verify(c, outcome, restart=False)
        outcomes.append(outcome)
    return outcomes


def summarise(outcomes: list[KillOutcome]) -> dict[str, Any]:
    tapes = [o.tape_matches for o in outcomes if o.tape_matches is not None]
    return {
        "kills": len(outcomes),
        "byTarget": _count(o.target for o in outcomes),
        "byObserved": _count(o.observed for o in outcomes),
        "corruptLines": sum(o.corrupt_lines for o in outcomes),
        "lostTurns": sum(o.lost for o in outcomes),
        "duplicatedTurns": sum(o.duplicated for o in outcomes),
        "nextTurnFailed": sum(1 for o in outcomes if not o.next_turn_ok),
        "tapeChecked": len(tapes),
        "tapeMethods": _count(o.tape_method for o in outcomes if o.tape_matches is not None),
        "tapeMismatch": sum(1 for t in tapes if not t),
        "restartMsMax": max((o.restart_ms for o in outcomes), default=0.0),
        "outcomes": [asdict(o) for o in outcomes],
    }


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts
