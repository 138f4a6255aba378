"""Request type -> handler, for one connection.

Every request stream ends with exactly one terminal frame. A turn is relayed
from the model worker to the socket (``relay``): its events are forwarded as
they come, and a client that hangs up or sends ``cancel`` (or a turn that
passes its timeout) stops the generation at the next token or prefill batch. After
the ``done`` frame, the CLI reports its own spans; the turn's trace record is
stored and counted then (see ``turn_record``).

Every frame sent here is one of ``wire.messages``' TypedDicts; a request is
read only through its ``wire.requests`` parser.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from openclaw_daemon.config import Paths
from openclaw_daemon.front.chat_turn import ChatTurns
from openclaw_daemon.observability import turn_record
from openclaw_daemon.observability.metrics import Metrics
from openclaw_daemon.observability.tracing import Trace, TurnLog
from openclaw_daemon.serve import background, relay
from openclaw_daemon.serve.chat_handler import serve_chat
from openclaw_daemon.serve.lanes import session_lane
from openclaw_daemon.serve.permission import PermissionAsker
from openclaw_daemon.serve.scheduler import PARK_FORCE_AFTER_S, Scheduler
from openclaw_daemon.serve.transport import Connection
from openclaw_daemon.turn.compactor import Compactor
from openclaw_daemon.turn.context import TurnContext
from openclaw_daemon.turn.pipeline import TurnPipeline
from openclaw_daemon.turn.session_tapes import SessionTapes
from openclaw_daemon.upstream.turns import UpstreamTurns
from openclaw_daemon.wire import frames as protocol
from openclaw_daemon.wire import messages, requests
from openclaw_daemon.wire.errors import (
    BadRequestError,
    CancelledError,
    OpenClawError,
    TurnTimeoutError,
)
from openclaw_daemon.wire.messages import TurnResult
from openclaw_sessions.store import SessionRef, SessionStore

log = logging.getLogger("openclawd.handlers")
# How long a finished turn waits for the CLI's trace report. The CLI sends it
# right after printing the reply; a client that never does (killed, or piped
# into a slow reader) only delays the stored record, never the next turn.
_REPORT_WAIT_S = 5.0
# A lane wait shorter than this is lock bookkeeping, not another turn.
_LANE_NOTICE_S = 0.001


@dataclass
class DaemonState:
    """What handlers share: the turn's parts, the scheduler and daemon facts."""

    pipeline: TurnPipeline
    compactor: Compactor
    tapes: SessionTapes
    paths: Paths
    model_name: str
    scheduler: Scheduler
    status: Callable[[], dict[str, Any]]
    request_shutdown: Callable[[], None]
    cache_stats: Callable[[], dict[str, Any]]
    cache_clear: Callable[[], dict[str, Any]]
    turn_log: TurnLog
    memory: Callable[[], dict[str, int]]
    gauges: Callable[[], list[tuple[str, float, dict[str, str]]]]
    metrics: Metrics = field(default_factory=Metrics)
    prefill_ahead: bool = True
    # Turns on an upstream engine (openclaw.json), and the threads they run on: they
    # wait on the network, never on the embedded model's worker.
    upstream: UpstreamTurns | None = None
    upstream_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="upstream")
    )
    started_at: float = field(default_factory=time.time)
    # OpenAI-style completions for ``openclaw serve`` (the ``chat`` request).
    chats: ChatTurns | None = None


class Handlers:
    def __init__(self, state: DaemonState) -> None:
        self.state = state

    def __call__(self, connection: Connection) -> None:
        try:
            protocol.check_hello(connection.receive_opening("hello"))
        except OpenClawError as exc:
            connection.send(protocol.error_frame(exc))
            return
        # Where the time of a slow connect went (see cli.connect in the trace).
        connection.send(
            protocol.hello(
                "openclawd",
                pid=os.getpid(),
                acceptedClock=connection.accepted_at,
                helloClock=time.perf_counter(),
            )
        )
        try:
            request = connection.receive_opening("request")
        except OpenClawError as exc:
            connection.send(protocol.error_frame(exc))
            return
        if request is None:
            return
        self.dispatch(request, connection)

    def dispatch(self, request: protocol.Message, connection: Connection) -> None:
        handler = {
            "turn": self.turn,
            "chat": self.chat,
            "status": self.status,
            "stop": self.stop,
            "ping": self.ping,
            "cache": self.cache,
            "compact": self.compact,
            "metrics": self.metrics,
            "tape": self.tape,
        }.get(request["type"])
        try:
            if handler is None:
                raise BadRequestError(f"{request['type']!r} is not a request")
            handler(request, connection)
        except OpenClawError as exc:
            connection.send(protocol.error_frame(exc))
        except Exception as exc:  # a bug: report it, keep serving
            log.exception("request %s failed", request.get("type"))
            connection.send(protocol.error_frame(OpenClawError(f"internal error: {exc!r}")))

    def ping(self, request: protocol.Message, connection: Connection) -> None:
        connection.send(messages.done({"pong": True}))

    def status(self, request: protocol.Message, connection: Connection) -> None:
        connection.send(messages.done(self.state.status()))

    def cache(self, request: protocol.Message, connection: Connection) -> None:
        if requests.parse_cache(request).action == "stats":
            result = self.state.cache_stats()
        else:
            # On the model worker: a clear must not race a turn restoring a blob.
            result = self.state.scheduler.submit(
                self.state.cache_clear, label="cache clear", exclusive=True
            ).result()
        connection.send(messages.done(result))

    def metrics(self, request: protocol.Message, connection: Connection) -> None:
        text = self.state.metrics.render(self.state.gauges())
        connection.send(messages.done({"text": text}))

    def stop(self, request: protocol.Message, connection: Connection) -> None:
        # Ask for shutdown first (it removes the status file), then reply, so a
        # client that sees "done" never finds a stale status file.
        self.state.request_shutdown()
        connection.send(messages.done({"stopping": True, "pid": os.getpid()}))

    def turn(self, raw: protocol.Message, connection: Connection) -> None:
        # Every field checked here, before the turn takes a lane or the model.
        options = requests.parse_turn(raw)
        events: queue.Queue[Mapping[str, Any]] = queue.Queue()
        cancel = threading.Event()
        trace = Trace(listener=lambda span: events.put(messages.phase(span)))
        context = TurnContext(
            trace=trace,
            emit=events.put,
            cancelled=cancel.is_set,
            received_at=trace.origin,
            turn_id=turn_record.new_turn_id(),
        )
        asker = PermissionAsker(events.put, cancel.is_set) if options.ask_permission else None
        context.ask = asker
        timeout = options.timeout_s
        deadline = time.monotonic() + timeout if timeout else None
        agent = options.agent_id
        store = SessionStore(self.state.paths.agent_sessions_dir(agent), agent)
        session_key = options.session_key or session_lane(store, options.session_id)
        scheduler = self.state.scheduler
        upstream = self.state.upstream
        waiting_since = trace.clock()
        with scheduler.lane(session_key):
            # Another turn of this session held its lane (it runs before ours).
            same_session = trace.clock() - waiting_since > _LANE_NOTICE_S

            def run() -> TurnResult:
                behind = scheduler.waited_behind
                context.waited_behind = [f"turn:{session_key}"] * same_session + behind
                return self.state.pipeline.run(options, context)

            future: Future[Any]
            try:
                route = upstream.route(options) if upstream is not None else None
            except OpenClawError as exc:
                self._fail(options, session_key, context, connection, exc)
                return
            on_upstream = route is not None and route.model is not None
            if on_upstream:
                assert upstream is not None and route is not None and route.model
                context.upstream = route.model
                future = self.state.upstream_pool.submit(upstream.run, options, context, route)
            else:
                future = scheduler.submit(run, label=f"turn:{session_key}")
            future.add_done_callback(lambda _: events.put(relay.JOB_ENDED))
            timed_out = relay.relay(
                connection,
                events,
                future,
                cancel,
                deadline,
                on_permit=asker.answer if asker is not None else None,
            )
        relay.drain(connection, events)
        try:
            # The pipeline builds a TurnResult (the one place is turn.pipeline).
            result = cast(TurnResult, future.result())
        except CancelledError as exc:
            failure: OpenClawError = exc
            if timed_out:
                failure = TurnTimeoutError(
                    f"the turn took longer than --timeout {timeout:g} s and was stopped",
                    hint="Raise --timeout, or lower --max-tokens.",
                )
            self._fail(options, session_key, context, connection, failure)
            return
        except OpenClawError as exc:
            self._fail(options, session_key, context, connection, exc)
            return
        if route is not None and not on_upstream:
            result["route"] = {"engine": "embedded", "rule": route.rule}
        connection.send(messages.done(result))
        if on_upstream and upstream is not None:  # its cache is the upstream's own: no parking
            background.compact_upstream(upstream, self.state.scheduler, self.state.upstream_pool)
            self._store_trace(result, connection)
            return
        # Park the session's KV state once the worker is idle (off this turn's path),
        # or within a minute under turns that never leave it idle.
        self.state.scheduler.submit_idle(
            "park", self.state.tapes.park, force_after_s=PARK_FORCE_AFTER_S
        )
        background.schedule_compactions(
            self.state.compactor, self.state.scheduler, prefill_ahead=self.state.prefill_ahead
        )
        self._store_trace(result, connection)

    def chat(self, raw: protocol.Message, connection: Connection) -> None:
        state = self.state
        serve_chat(
            state.chats,
            state.scheduler,
            state.tapes.park,
            raw,
            connection,
            keep=self._keep,
            memory=state.memory,
        )

    def _store_trace(self, result: TurnResult, connection: Connection) -> None:
        """Wait for the CLI's span report, then store and count the turn's record.

        A bad report (or any other frame) gets an error frame; the daemon-side
        record is stored anyway.
        """
        report, problem = None, None
        message = connection.receive_within(_REPORT_WAIT_S)
        if message is not None:
            try:
                report = turn_record.check_report(message, turn_id=result["turnId"])
            except OpenClawError as exc:
                problem = exc
        record = turn_record.build(result, report, memory=self.state.memory())
        self._keep(record)
        if problem is not None:
            connection.send(protocol.error_frame(problem))
        elif report is not None:
            connection.send(messages.done({"stored": record["turnId"]}))

    def _fail(
        self,
        options: requests.TurnOptions,
        session_key: str,
        context: TurnContext,
        connection: Connection,
        error: OpenClawError,
    ) -> None:
        """End a failed turn: store its trace (it is the one worth reading), then
        send the error, naming the turn so the CLI can show that trace."""
        ref = context.session  # None if it failed before (a bad workspace, say)
        try:
            record = turn_record.build_failed(
                context.trace,
                turn_id=context.turn_id,
                session_id=ref.session_id if ref else options.session_id or "",
                session_key=ref.key if ref else session_key,
                agent_id=options.agent_id,
                status=error.code,
                error=error.message,
                model=context.upstream or self.state.model_name,
                memory=self.state.memory(),
                engine=f"upstream:{context.upstream}" if context.upstream else "embedded",
            )
            self._keep(record)
        except Exception:  # a bug in the record must not replace the turn's own error
            log.exception("could not store the trace of failed turn %s", context.turn_id)
        connection.send(protocol.error_frame(error, turn_id=context.turn_id))

    def _keep(self, record: turn_record.TraceRecord) -> None:
        try:
            self.state.turn_log.append(record)
        except OSError as exc:  # a full disk must not fail the turn that already answered
            log.warning("could not store the trace of turn %s: %s", record["turnId"], exc)
        self.state.metrics.observe_turn(record)

    def compact(self, request: protocol.Message, connection: Connection) -> None:
        """``openclaw sessions compact``: summarise now, prefill the new layout ahead."""
        options = requests.parse_compact(request)
        if self._compact_upstream(options, connection):
            return
        compactor = self.state.compactor
        ref, result = self._session_job(
            options.agent_id,
            options.session_id,
            "sessions compact",
            lambda ref, store: compactor.compact(ref, store, instructions=options.instructions),
        )
        # Asked for explicitly: prefill the new layout as soon as the daemon is idle.
        if self.state.prefill_ahead:
            background.schedule_prefill_ahead(
                self.state.compactor, self.state.scheduler, ref, quiet_s=0.0
            )
        connection.send(messages.done(result))

    def _compact_upstream(self, options: requests.CompactOptions, connection: Connection) -> bool:
        """Compact a session whose last turn ran on an upstream, there (the summary a
        continuation of its cached messages, the new layout prefilled ahead)."""
        upstream = self.state.upstream
        if upstream is None:
            return False
        agent = options.agent_id
        store = SessionStore(self.state.paths.agent_sessions_dir(agent), agent)
        ref = store.find(options.session_id)
        target = upstream.session_target(store, ref)
        if target is None:
            return False
        trace = Trace()
        context = TurnContext(trace, lambda frame: None, lambda: False, trace.origin)
        with self.state.scheduler.lane(session_lane(store, ref.key)):
            future = self.state.upstream_pool.submit(
                upstream.compact_session, target, ref, store, context, options.instructions
            )
            connection.send(messages.done(future.result()))
        return True

    def tape(self, request: protocol.Message, connection: Connection) -> None:
        """``openclaw sessions check-tape``: the tape against the transcript."""
        options = requests.parse_session(request)
        _ref, result = self._session_job(
            options.agent_id,
            options.session_id,
            "sessions check-tape",
            self.state.tapes.check_tape,
        )
        connection.send(messages.done(result))

    def _session_job(
        self,
        agent_id: str,
        session_id: str,
        label: str,
        job: Callable[[SessionRef, SessionStore], dict[str, Any]],
    ) -> tuple[SessionRef, dict[str, Any]]:
        """Run ``job(ref, store)`` for one stored session on the model worker, in
        the session's lane (the one its turns take)."""
        store = SessionStore(self.state.paths.agent_sessions_dir(agent_id), agent_id)
        ref = store.find(session_id)
        with self.state.scheduler.lane(session_lane(store, ref.key)):
            future = self.state.scheduler.submit(
                lambda: job(ref, store), label=f"{label}:{ref.key}"
            )
            return ref, future.result()
