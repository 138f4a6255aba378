"""The Python API: run turns on the daemon from a script, as ``openclaw agent`` does.

``Client.turn`` returns the same envelope as ``openclaw agent --json``;
``Client.stream`` yields typed events as the turn runs (``Token``, ``ToolStart``,
``ToolEnd``, ``Progress``, ``Phase``, ``Notice``, then one ``Done``). The daemon is
started on first use, as the CLI starts it, and each turn's trace is stored with
the client's own spans (``Client.trace``). ``AsyncClient`` is the same for asyncio:
each call runs the blocking socket work in a thread. docs/python-api.md.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from openclaw_cli import daemon_control
from openclaw_cli.agent_args import (
    DEFAULT_MAX_STEPS,
    DEFAULT_MAX_TOKENS,
    AgentOptions,
    turn_request,
)
from openclaw_cli.client_events import (
    Done,
    Event,
    Notice,
    PermissionRequest,
    Phase,
    Progress,
    Token,
    ToolEnd,
    ToolStart,
    event_of,
)
from openclaw_cli.commands.agent import client_report, envelope, span
from openclaw_daemon import config
from openclaw_daemon.observability import turn_record
from openclaw_daemon.wire import ids
from openclaw_daemon.wire.errors import OpenClawError, TurnTimeoutError

if TYPE_CHECKING:
    from openclaw_daemon.wire.messages import ClientSpan, TurnResult

__all__ = [
    "AsyncClient",
    "Client",
    "Done",
    "Event",
    "Notice",
    "OpenClawError",
    "PermissionRequest",
    "Phase",
    "Progress",
    "Token",
    "ToolEnd",
    "ToolStart",
]

_TIMEOUT_GRACE_S = 10.0


class Sessions:
    """The agent's stored sessions (read from the store, as ``openclaw sessions``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _store(self) -> Any:
        from openclaw_sessions.store import SessionStore

        agent = self._client.agent
        return SessionStore(self._client.paths.agent_sessions_dir(agent), agent)

    def list(self) -> list[dict[str, Any]]:
        """Rows of ``sessions.json``, newest first, each with its ``key``."""
        rows = [{"key": k, **e} for k, e in self._store().load_index().items()]
        return sorted(rows, key=lambda row: row.get("updatedAt", 0), reverse=True)

    def entries(self, session: str) -> builtins.list[dict[str, Any]]:
        """A session's transcript entries (by id or key), header included."""
        store = self._store()
        return list(store.load_entries(store.find(ids.session_ref(session))))

    def reset(self, session: str) -> str:
        """A new, empty session under the key; returns the new session id."""
        from openclaw_sessions import lifecycle

        store = self._store()
        return lifecycle.reset(store, store.find(ids.session_ref(session))).session_id

    def delete(self, session: str) -> None:
        """Unlist the session; its transcript is renamed aside, not erased."""
        from openclaw_sessions import lifecycle

        store = self._store()
        lifecycle.delete(store, store.find(ids.session_ref(session)))


class Client:
    """Turns on the local daemon. ``state_dir`` defaults to OPENCLAW_STATE_DIR or
    ~/.openclaw; ``model`` (a GGUF path or registered name) is used when this
    client starts the daemon."""

    def __init__(
        self,
        *,
        state_dir: str | Path | None = None,
        agent: str = "main",
        model: str | None = None,
    ) -> None:
        self.paths = config.resolve_paths(Path(state_dir) if state_dir is not None else None)
        self.agent = ids.agent_id(agent, field="agent")
        self.model = str(config.resolve_model_path(model)) if model else None
        self.sessions = Sessions(self)

    # -- turns ----------------------------------------------------------------------
    def turn(self, message: str, **options: Any) -> dict[str, Any]:
        """Run one turn; ``openclaw agent --json``'s envelope. Options as ``stream``."""
        done = None
        for event in self.stream(message, **options):
            if isinstance(event, Done):
                done = event
        assert done is not None  # stream ends with Done or raises
        return done.envelope

    def stream(
        self,
        message: str,
        *,
        session: str | None = None,
        session_key: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = 0.0,
        seed: int | None = None,
        stop: Sequence[str] = (),
        system: str | None = None,
        tools: str = "auto",
        allow: Sequence[str] = (),
        max_steps: int = DEFAULT_MAX_STEPS,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        ask: Callable[[PermissionRequest], str] | None = None,
    ) -> Iterator[Event]:
        """Run one turn, yielding its events; the last is ``Done``. ``session`` is an
        id (None: the agent's main session), ``session_key`` a key instead;
        ``tools``: auto, none, required or a tool name; ``allow``: of write, edit,
        exec. Setting ``cancel`` stops the turn (its partial reply is not kept).
        ``ask``: a write, edit or exec call that ``allow`` lacks calls it (on this
        thread, while the turn waits) instead of being refused.
        Errors raise ``OpenClawError`` subclasses, as the CLI reports them."""
        key = None
        if session_key is not None:
            raw = (
                session_key
                if session_key.startswith("agent:")
                else f"agent:{self.agent}:{session_key}"
            )
            key = ids.session_ref(raw, field="session_key")
        options = AgentOptions(
            message=message,
            session_id=ids.optional_session_id(session, field="session"),
            session_key=key,
            agent_id=self.agent,
            json=True,
            timeout=timeout,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            stop=tuple(stop),
            system=system,
            tool_choice=tools,
            max_steps=max_steps,
            allow=tuple(allow),
            ask_permission=ask is not None,
        )
        base = time.perf_counter()
        command = daemon_control.server_command(model=self.model)
        client, spawned = daemon_control.connect_or_start(self.paths, command=command)
        connected = time.perf_counter()
        spans: list[ClientSpan] = [
            span("daemon.spawn" if spawned else "api.connect", base, connected, base)
        ]
        deadline = timeout + _TIMEOUT_GRACE_S if timeout else None
        with client:
            sent = time.perf_counter()
            first: float | None = None
            result: TurnResult | None = None
            watcher = _cancel_watcher(client, cancel)
            try:
                for frame in client.request(turn_request(options), timeout=deadline):
                    if frame["type"] == "done":
                        result = cast("TurnResult", frame["result"])
                        continue
                    if frame["type"] == "token" and first is None:
                        first = time.perf_counter()
                    if frame["type"] == "permission" and ask is not None:
                        asked = cast("dict[str, Any]", frame)
                        answer = ask(
                            PermissionRequest(
                                asked["id"],
                                asked["name"],
                                asked["permission"],
                                dict(asked.get("arguments") or {}),
                            )
                        )
                        client.permit(
                            asked["id"],
                            allow=answer in ("yes", "always"),
                            always=answer == "always",
                        )
                        continue
                    event = event_of(cast("dict[str, Any]", frame))
                    if event is not None:
                        yield event
            except (GeneratorExit, KeyboardInterrupt, TurnTimeoutError):
                client.cancel()  # the caller stopped reading: stop the turn too
                raise
            finally:
                watcher.set()
            if result is None:
                raise OpenClawError("the daemon ended the turn without a result")
            end = time.perf_counter()
            spans.append(span("api.result", end, time.perf_counter(), base))
            report = client_report(result, spans, (connected, sent, end), first, base)
            record = turn_record.build(result, report, memory={})
            with contextlib.suppress(OpenClawError):
                client.call(report, timeout=2.0)
        yield Done(envelope(result, record))

    # -- the rest -------------------------------------------------------------------
    def trace(self, turn_id: str = "last") -> dict[str, Any]:
        """A stored turn's trace record (``openclaw trace show ID --json``)."""
        from openclaw_daemon.observability.tracing import TurnLog

        records = TurnLog(self.paths.turns_file).read(limit=None)
        if turn_id == "last":
            if not records:
                raise OpenClawError("no turns recorded yet")
            return records[-1]
        prefix = ids.turn_id(turn_id)
        found = [r for r in records if str(r.get("turnId", "")).startswith(prefix)]
        if len(found) != 1:
            raise OpenClawError(f"{len(found)} recorded turns match {turn_id!r}")
        return found[0]

    def compact(self, session: str, instructions: str | None = None) -> dict[str, Any]:
        """Compact a session now (``openclaw sessions compact``); the daemon's report."""
        client, _ = daemon_control.connect_or_start(
            self.paths, command=daemon_control.server_command(model=self.model)
        )
        request = {
            "type": "compact",
            "agentId": self.agent,
            "sessionId": ids.session_ref(session, field="session"),
            "instructions": instructions,
        }
        with client:
            return dict(client.call(cast("Any", request), timeout=900))

    def status(self) -> dict[str, Any] | None:
        """The running daemon's status (``openclaw daemon status --json``), or None."""
        client = daemon_control.try_connect(self.paths)
        if client is None:
            return None
        with client:
            return dict(client.call({"type": "status"}, timeout=10))

    def stop_daemon(self) -> bool:
        """Stop the daemon if one runs; whether one did."""
        return bool(daemon_control.stop(self.paths))


def _cancel_watcher(client: Any, cancel: threading.Event | None) -> threading.Event:
    """A thread that cancels the turn when ``cancel`` is set; set the returned event
    to end it."""
    finished = threading.Event()
    if cancel is None:
        return finished

    def watch() -> None:
        while not finished.is_set():
            if cancel.wait(0.05):
                with contextlib.suppress(Exception):  # the turn may have just ended
                    client.cancel()
                return

    threading.Thread(target=watch, name="openclaw-cancel", daemon=True).start()
    return finished


class AsyncClient:
    """``Client`` for asyncio: the same calls, awaited; ``stream`` is an async iterator."""

    def __init__(self, **kwargs: Any) -> None:
        self._sync = Client(**kwargs)
        self.sessions = self._sync.sessions

    async def turn(self, message: str, **options: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self._sync.turn, message, **options)

    async def stream(self, message: str, **options: Any) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()
        cancel = threading.Event()

        def pump() -> None:
            try:
                for event in self._sync.stream(message, cancel=cancel, **options):
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except BaseException as exc:  # handed to the awaiting task
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = loop.run_in_executor(None, pump)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()  # a consumer that stopped early stops the turn
            await worker

    async def trace(self, turn_id: str = "last") -> dict[str, Any]:
        return await asyncio.to_thread(self._sync.trace, turn_id)

    async def status(self) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._sync.status)
