"""Run one step's tool calls: permissions, parallelism, truncation, a short-lived cache.

Independent calls of a step run in parallel threads. Every call's arguments
are checked against its tool's schema first (no unknown arguments, declared
types, finite numbers). Tools that change things (``write``, ``edit``,
``exec``) need the permission the CLI sent with the turn (``--allow``), and
``web_fetch`` reaches private addresses only with ``--allow web_fetch:private``.
Idempotent tools (``read``, ``search``, ``web_fetch``) may be answered from a
cache for ``ttl_s`` seconds; the trace says so. Results longer than the token
budget keep their head and tail around a marker, so one huge file cannot
flood the context.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openclaw_daemon.tools import exec_tool, web_fetch, workspace
from openclaw_daemon.tools.spec import PRIVATE_FETCH, TOOLS_BY_NAME, ToolCall, check_arguments
from openclaw_daemon.wire.errors import ToolError

RESULT_TOKEN_BUDGET = 1024


@dataclass(frozen=True)
class ToolContext:
    workspace: Path
    env: dict[str, str]
    allowed: frozenset[str]
    exec_timeout: float = exec_tool.DEFAULT_TIMEOUT_S  # a cap on every exec of the turn
    # Asks the user for a permission ``allowed`` lacks (the terminal chat's turns;
    # serve.permission); None: such a call is refused, as for a script.
    ask: Callable[[ToolCall, str], bool] | None = None


@dataclass
class ToolOutcome:
    call: ToolCall
    content: str
    is_error: bool
    started: float
    ended: float
    cached: bool = False
    truncated: bool = False


class ToolRunner:
    def __init__(
        self,
        *,
        tokenize: Callable[[str], list[int]],
        detokenize: Callable[[list[int]], str],
        token_budget: int = RESULT_TOKEN_BUDGET,
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.tokenize = tokenize
        self.detokenize = detokenize
        self.token_budget = token_budget
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, tuple[float, str]] = {}
        self._cache_lock = threading.Lock()

    def run_step(
        self,
        calls: list[ToolCall],
        context: ToolContext,
        on_start: Callable[[ToolCall], None] = lambda call: None,
    ) -> list[ToolOutcome]:
        """Run ``calls`` (in parallel when there are several); outcomes in call order."""
        for call in calls:
            on_start(call)
        if len(calls) == 1:
            outcomes = [self._run(calls[0], context)]
        else:
            with ThreadPoolExecutor(max_workers=min(len(calls), 8)) as pool:
                outcomes = list(pool.map(lambda c: self._run(c, context), calls))
        for outcome in outcomes:  # tokenizing stays on the caller's thread
            outcome.content, outcome.truncated = self._truncate(outcome.content)
        return outcomes

    def _run(self, call: ToolCall, context: ToolContext) -> ToolOutcome:
        started = self.clock()
        cached = False
        try:
            if call.error:
                raise ToolError(call.error)
            spec = TOOLS_BY_NAME[call.name]
            if spec.permission and spec.permission not in context.allowed:
                if context.ask is None:
                    raise ToolError(
                        f"{call.name} is not allowed in this turn; the user must rerun with "
                        f"--allow {spec.permission}"
                    )
                if not context.ask(call, spec.permission):
                    raise ToolError(f"the user did not allow this {call.name} call")
            problem = check_arguments(spec, call.arguments)
            if problem:
                raise ToolError(problem)
            # The opt-in is part of the key: a page fetched with private
            # addresses allowed must not answer a turn without the opt-in.
            policy = "private" if self._private(call, context) else ""
            arguments = json.dumps(call.arguments, sort_keys=True)
            key = f"{context.workspace}\0{call.name}\0{policy}\0{arguments}"
            content = self._cached(key) if spec.idempotent else None
            cached = content is not None
            if content is None:
                content = self._dispatch(call, context)
                if spec.idempotent:
                    with self._cache_lock:
                        self._cache[key] = (self.clock() + self.ttl_s, content)
            is_error = False
        except ToolError as exc:
            content, is_error = f"error: {exc.message}", True
        except Exception as exc:  # a tool bug must not end the turn
            content, is_error = f"error: {type(exc).__name__}: {exc}", True
        return ToolOutcome(call, content, is_error, started, self.clock(), cached)

    def _cached(self, key: str) -> str | None:
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is None or hit[0] < self.clock():
                self._cache.pop(key, None)
                return None
            return hit[1]

    def _dispatch(self, call: ToolCall, context: ToolContext) -> str:
        args: dict[str, Any] = call.arguments
        if call.name == "read":
            return workspace.read(context.workspace, args)
        if call.name == "write":
            return workspace.write(context.workspace, args)
        if call.name == "edit":
            return workspace.edit(context.workspace, args)
        if call.name == "search":
            return workspace.search(context.workspace, args)
        if call.name == "exec":
            return exec_tool.run(context.workspace, args, context.env, cap=context.exec_timeout)
        if call.name == "web_fetch":
            return web_fetch.fetch(args, allow_private=self._private(call, context))
        raise ToolError(f"unknown tool {call.name!r}")

    @staticmethod
    def _private(call: ToolCall, context: ToolContext) -> bool:
        return call.name == "web_fetch" and PRIVATE_FETCH in context.allowed

    def _truncate(self, content: str) -> tuple[str, bool]:
        tokens = self.tokenize(content)
        if len(tokens) <= self.token_budget:
            return content, False
        half = self.token_budget // 2
        omitted = len(tokens) - 2 * half
        head, tail = self.detokenize(tokens[:half]), self.detokenize(tokens[-half:])
        return f"{head}\n[... {omitted} tokens omitted ...]\n{tail}", True
