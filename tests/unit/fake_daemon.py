"""Helpers for unit tests on the fake model: wire requests, a pipeline, an in-process daemon.

Every request a test sends is built by ``wire_request`` (the one place that
knows the wire's key spelling), and the pipeline is driven only through its
constructor and ``run``, so a change to either is a one-line fix here.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openclaw_daemon import config, state_dirs
from openclaw_daemon.cache.kv_store import KVStore
from openclaw_daemon.cache.prefix_cache import PrefixCache
from openclaw_daemon.model import fake
from openclaw_daemon.model.fake import FakeEngine
from openclaw_daemon.observability.tracing import Trace
from openclaw_daemon.serve.server import Daemon
from openclaw_daemon.turn.assemble import turn_services
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.turn.pipeline import TurnPipeline
from openclaw_daemon.turn.session_tapes import SessionTapes
from openclaw_daemon.wire import requests
from openclaw_daemon.wire.client import DaemonClient

CACHE_BUDGET = 64 << 20
PREFILL_BATCH = 64
# The fake prefills in microseconds; measured, that rate would make every
# restore (a copy of an 8 MB buffer) look slower than prefilling, and every
# prefill ahead not worth doing. Pinned at a small CPU's rate (the cost
# model's prior), the cache plans as it does on the real model.
PREFILL_TOK_S = 150.0


def pin_prefill_rate(cache: PrefixCache, tok_s: float = PREFILL_TOK_S) -> None:
    rate = cache.costs.prefill_tok_s
    rate.value = tok_s
    rate.observe = lambda units, seconds: None  # type: ignore[method-assign]


def wire_request(kind: str, **fields: Any) -> dict[str, Any]:
    """A request frame as the CLI sends it; ``fields`` are named as in the wire's
    request parsers' attributes (``openclaw_daemon.wire.requests``), in
    snake_case; the wire spells them in camelCase (protocol version 6)."""
    return {"type": kind, **{_camel(name): value for name, value in fields.items()}}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def pipeline_request(message: str, **fields: Any) -> requests.TurnOptions:
    """A turn request as the handlers pass it to the pipeline: parsed and checked."""
    return requests.parse_turn(wire_request("turn", message=message, **fields))


@dataclass
class Harness:
    """A pipeline on a fake engine, with a real KV store and prefix cache."""

    engine: FakeEngine
    pipeline: TurnPipeline
    tapes: SessionTapes
    store: KVStore
    events: list[dict[str, Any]] = field(default_factory=list)

    def turn(self, message: str, **fields: Any) -> dict[str, Any]:
        self.events.clear()
        trace = Trace()
        context = TurnContext(
            trace=trace,
            emit=self.events.append,
            cancelled=lambda: False,
            received_at=trace.origin,
            turn_id=f"turn-{len(self.engine.calls)}",
        )
        return self.pipeline.run(pipeline_request(message, **fields), context)

    def streamed_text(self) -> str:
        return "".join(e["text"] for e in self.events if e["type"] == "token")


@contextlib.contextmanager
def pipeline_on(engine: FakeEngine) -> Iterator[Harness]:
    """A ``TurnPipeline`` on ``engine`` in the test's own state dir."""
    paths = config.resolve_paths()
    state_dirs.prepare(paths)
    store = KVStore(
        paths.cache_dir, engine.fingerprint(), ram_budget=CACHE_BUDGET, disk_budget=CACHE_BUDGET
    )
    store.load_disk_index()
    cache = PrefixCache(engine, store)
    pin_prefill_rate(cache)
    services = turn_services(engine, paths, prefill_batch=PREFILL_BATCH, cache=cache)
    try:
        yield Harness(engine, services.pipeline, services.tapes, store)
    finally:
        store.close()


@contextlib.contextmanager
def daemon_on(engine: FakeEngine) -> Iterator[Daemon]:
    """The whole daemon (handlers, scheduler, transport, pipeline, cache) serving
    its socket in this process, on ``engine``."""
    daemon = Daemon(
        Path("fake.gguf"),
        engine.info.n_ctx,
        cache_ram=CACHE_BUDGET,
        cache_disk=CACHE_BUDGET,
        engine_factory=fake.factory(engine),
    )
    pin_prefill_rate(daemon.cache)
    thread = threading.Thread(target=daemon.serve, name="fake-daemon", daemon=True)
    thread.start()
    try:
        yield daemon
    finally:
        daemon.request_shutdown()
        thread.join(30)
        assert not thread.is_alive(), "the in-process daemon did not stop"


def send(daemon: Daemon, kind: str, **fields: Any) -> list[dict[str, Any]]:
    """One request over the daemon's socket with the wire client; every frame it got."""
    with DaemonClient(daemon.paths.socket) as client:
        return list(client.request(wire_request(kind, **fields), timeout=30))


def result_of(frames: list[dict[str, Any]]) -> dict[str, Any]:
    assert frames[-1]["type"] == "done", frames[-1]
    return dict(frames[-1]["result"])
