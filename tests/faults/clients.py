"""Concurrent clients through the real CLI: C clients x T turns over S sessions.

Each client sends its turns one after another (so their order is known), and
several clients share each session. Afterwards every turn must have finished
and each session's transcript must hold every turn once, each client's turns
in the order it sent them, and any turn a client saw finish before another was
sent must come before it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from tests.faults.harness import Harness
from tests.faults.transcripts import parse_lines, user_texts


@dataclass
class Sent:
    client: int
    index: int
    session: str
    message: str
    sent_at: float
    done_at: float
    ok: bool
    error: str


def run(harness: Harness, clients: int = 8, turns: int = 5, sessions: int = 4) -> dict[str, Any]:
    if not harness.alive():
        harness.start()
    sent: list[Sent] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        session = f"c{number % sessions}"
        for index in range(turns):
            message = f"client {number} turn {index}: reply with one word."
            started = time.monotonic()
            ok, _, stderr = harness.turn(message, session, timeout=600)
            with lock:
                sent.append(
                    Sent(number, index, session, message, started, time.monotonic(), ok, stderr)
                )

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=1800)
    wall_s = time.monotonic() - started
    return _check(harness, sent, clients * turns, sessions, wall_s)


def _check(
    harness: Harness, sent: list[Sent], expected: int, sessions: int, wall_s: float
) -> dict[str, Any]:
    failed = [s for s in sent if not s.ok]
    lost = duplicated = order_violations = corrupt = 0
    details: list[str] = []
    for number in range(sessions):
        session = f"c{number}"
        entries, bad = parse_lines(harness.sessions_dir() / f"{session}.jsonl")
        corrupt += bad
        texts = user_texts(entries)
        position = {t: i for i, t in enumerate(texts)}
        mine = [s for s in sent if s.session == session and s.ok]
        for s in mine:
            count = texts.count(s.message)
            lost += count == 0
            duplicated += max(0, count - 1)
        # A client's turns in its own order; a turn finished before another was
        # sent comes first.
        for a in mine:
            for b in mine:
                known = a.message in position and b.message in position
                if known and a.done_at < b.sent_at and position[a.message] > position[b.message]:
                    order_violations += 1
                    details.append(f"{session}: {b.message!r} stored before {a.message!r}")
    return {
        "clients": len({s.client for s in sent}),
        "turnsExpected": expected,
        "turnsCompleted": sum(1 for s in sent if s.ok),
        "turnsFailed": len(failed) + (expected - len(sent)),
        "lost": lost,
        "duplicated": duplicated,
        "orderViolations": order_violations,
        "corruptLines": corrupt,
        "wallS": round(wall_s, 1),
        "details": details[:10] + [f"failed: {s.message}: {s.error[:160]}" for s in failed[:5]],
    }
