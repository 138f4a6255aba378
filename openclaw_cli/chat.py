"""``openclaw chat`` (alias ``tui``): a terminal chat on the daemon, as ``ollama run``
and ``llm chat``. Built on the Python API (``client``): each message is a turn of
one session, streamed; the warm cache makes each reply start quickly, and the
first-token time is shown after it.

Ctrl-C during a reply cancels the reply (the session stays); at the prompt it
clears the line, and a second Ctrl-C in a row (or Ctrl-D) leaves. A line ending in
``\\`` continues on the next. Up and down recall earlier messages (readline). A
tool call that changes things (write, edit, exec) asks first: yes, no, or always
(``/allow`` grants one up front).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openclaw_cli.client import (
    Client,
    Done,
    Notice,
    PermissionRequest,
    Progress,
    Token,
    ToolEnd,
    ToolStart,
)
from openclaw_daemon.wire.errors import OpenClawError

HELP = """\
/new              start a new session
/reset            a new, empty session under this one's key (the old transcript is kept)
/compact [focus]  summarise older turns now (optional focus for the summary)
/status           model, context used, cache tier of the last turn
/trace            the last turn, phase by phase
/model            the daemon's model
/allow TOOLS      allow write, edit, exec without asking (comma-separated; /allow none)
/help             this list
/exit             leave (also Ctrl-D, or Ctrl-C twice)"""


class Chat:
    def __init__(
        self,
        client: Client,
        session: str | None,
        *,
        max_tokens: int,
        tool_choice: str = "auto",
        out: Any = None,
        read: Callable[[str], str] = input,
    ) -> None:
        self.client = client
        self.session = session or f"chat-{time.strftime('%Y%m%d-%H%M%S')}"
        self.max_tokens = max_tokens
        self.tool_choice = tool_choice
        self.out = out or sys.stdout
        self.read = read
        self.allow: tuple[str, ...] = ()
        self.last: dict[str, Any] | None = None

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> int:
        _enable_line_editing()
        self.say(f"openclaw chat: session {self.session} (/help for commands, Ctrl-D leaves)")
        self.show_history()
        interrupted = False
        while True:
            try:
                line = self.read_message()
            except EOFError:
                self.say()
                return 0
            except KeyboardInterrupt:
                if interrupted:
                    self.say()
                    return 0
                interrupted = True
                self.say("\n(Ctrl-C again to leave)")
                continue
            interrupted = False
            if not line.strip():
                continue
            if line.startswith("/"):
                if self.command(line.strip()) == "exit":
                    return 0
                continue
            self.reply(line)

    def read_message(self) -> str:
        lines = [self.read(">>> ")]
        while lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1]
            lines.append(self.read("... "))
        return "\n".join(lines)

    def reply(self, message: str) -> None:
        cancel = threading.Event()
        started = time.perf_counter()
        first: float | None = None
        progress_shown = False
        try:
            events = self.client.stream(
                message,
                session=self.session,
                max_tokens=self.max_tokens,
                tools=self.tool_choice,
                allow=self.allow,
                cancel=cancel,
                ask=self.ask_permission,
            )
            for event in events:
                if isinstance(event, Token):
                    if first is None and progress_shown:
                        self.out.write("\n")  # the reply on its own line, not after [prefill]
                    first = first or time.perf_counter()
                    self.out.write(event.text)
                    self.out.flush()
                elif isinstance(event, ToolStart):
                    self.say(f"\n[model calls {event.name} {_printable(str(event.arguments))}]")
                elif isinstance(event, ToolEnd):
                    self.say(f"[tool {event.name} {_outcome(event)} ({event.duration_ms:.0f} ms)]")
                elif isinstance(event, Notice):
                    self.say(f"\n[{event.text}]")
                elif isinstance(event, Progress):
                    progress_shown = True
                    self.out.write(f"\r[prefill {event.done}/{event.total}]")
                    self.out.flush()
                elif isinstance(event, Done):
                    self.last = event.envelope
        except KeyboardInterrupt:
            cancel.set()  # the watcher thread stops the turn
            self.say("\n[cancelled]")
            return
        except OpenClawError as exc:
            self.say(f"\n[error: {exc.message}]" + (f"\n[{exc.hint}]" if exc.hint else ""))
            return
        self.say()
        self.say(self.footer(first, started))

    def ask_permission(self, request: PermissionRequest) -> str:
        """A write, edit or exec call the chat has not /allow-ed: ask, on the terminal."""
        self.say(f"\n[the model wants to run {request.name}, which needs your permission:]")
        for name, value in request.arguments.items():
            self.say(f"  {name}: {_printable(str(value))}")
        path = request.arguments.get("path")
        if request.name in ("write", "edit") and isinstance(path, str):
            with contextlib.suppress(OSError, ValueError):
                target = Path(path)  # the tools' workspace is this chat's directory
                if target.is_file():
                    size = target.stat().st_size
                    verb = "replaces" if request.name == "write" else "changes"
                    self.say(f"  (this {verb} the existing file {path}, {size} bytes)")
        while True:
            try:
                answer = self.read(f"allow {request.permission}? [y]es [n]o [a]lways: ")
            except (EOFError, KeyboardInterrupt):
                return "no"
            answer = answer.strip().lower()
            if answer in ("y", "yes"):
                return "yes"
            if answer in ("", "n", "no"):
                return "no"
            if answer in ("a", "always"):
                self.allow = tuple(sorted({*self.allow, request.permission}))
                return "always"

    def footer(self, first: float | None, started: float) -> str:
        if self.last is None:
            return ""
        usage = self.last["meta"]["agentMeta"]["usage"]
        cache = self.last["meta"]["trace"].get("cache") or {}
        ttft = f"{(first - started) * 1000:.0f} ms" if first else "n/a"
        return (
            f"(first token {ttft} · {usage['cacheRead']} cached, {usage['input']} prefilled, "
            f"{usage['output']} generated · {cache.get('tier', '?')})"
        )

    def show_history(self, last: int = 6) -> None:
        from openclaw_sessions.prompt import message_text

        try:
            entries = self.client.sessions.entries(self.session)
        except OpenClawError:
            return  # a new session
        messages = [e["message"] for e in entries if e.get("type") == "message"]
        shown = [m for m in messages if m.get("role") in ("user", "assistant")][-last:]
        for message in shown:
            prefix = ">>> " if message["role"] == "user" else ""
            self.say(prefix + message_text(message).strip())

    # -- slash commands ---------------------------------------------------------------
    def command(self, line: str) -> str | None:
        name, _, rest = line.partition(" ")
        try:
            return self._command(name, rest.strip())
        except OpenClawError as exc:
            self.say(f"[error: {exc.message}]")
            return None

    def _command(self, name: str, rest: str) -> str | None:
        if name in ("/exit", "/quit", "/bye"):
            return "exit"
        if name == "/help":
            self.say(HELP)
        elif name == "/new":
            self.session = f"chat-{uuid.uuid4().hex[:8]}"
            self.last = None
            self.say(f"[new session {self.session}]")
        elif name == "/reset":
            fresh = self.client.sessions.reset(self.session)
            self.last = None
            self.say(f"[session reset: now {fresh}; the old transcript is kept]")
        elif name == "/compact":
            report = self.client.compact(self.session, rest or None)
            self.say(
                f"[compacted: {report['tokensBefore']} -> {report['tokensAfter']} tokens, "
                f"{report['summarizedEntries']} entries summarised]"
            )
        elif name == "/status":
            self.status()
        elif name == "/trace":
            self.trace()
        elif name == "/model":
            status = self.client.status() or {}
            self.say(f"[model {status.get('model', '?')} ({status.get('modelPath', '?')})]")
        elif name == "/allow":
            names = tuple(n.strip() for n in rest.split(",") if n.strip() and n.strip() != "none")
            unknown = [n for n in names if n not in ("write", "edit", "exec")]
            if unknown:
                self.say(f"[unknown tool {', '.join(unknown)}: write, edit or exec]")
            else:
                self.allow = names
                self.say(f"[allowed: {', '.join(names) or 'none'}]")
        else:
            self.say(f"[unknown command {name}; /help lists them]")
        return None

    def status(self) -> None:
        status = self.client.status() or {}
        line = f"[session {self.session} · model {status.get('model', '?')}"
        if self.last:
            meta = self.last["meta"]
            usage = meta["agentMeta"]["usage"]
            context = meta["agentMeta"]["contextTokens"]
            tier = (meta["trace"].get("cache") or {}).get("tier", "?")
            line += f" · context {usage['total']}/{context} tokens · last turn from {tier}"
        self.say(line + "]")

    def trace(self) -> None:
        if not self.last:
            self.say("[no turn yet in this chat]")
            return
        from rich.console import Console

        from openclaw_cli.views import trace_view

        record = self.client.trace(self.last["meta"]["trace"]["turnId"])
        trace_view.print_chart(record, console=Console(file=self.out, highlight=False))


def _outcome(event: ToolEnd) -> str:
    """``done``, or ``failed: why`` (the first line of the error the model is given)."""
    if not event.is_error:
        return "done"
    first = (event.preview.splitlines() or [""])[0].removeprefix("error: ")
    return f"failed: {_printable(first, 120)}"


def _printable(text: str, limit: int = 400) -> str:
    """A value the model chose, safe to show: control characters escaped (a ``\\r`` or
    an ANSI sequence must not redraw the line the user approves), long ones cut and
    saying so."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return shown + (f" ... ({len(text) - limit} more characters)" if len(text) > limit else "")


def _enable_line_editing() -> None:
    """Up/down history and line editing at the prompt, where readline exists."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (importing it is what turns it on for input())


def run(session: str | None, max_tokens: int, tool_choice: str = "auto") -> int:
    if not sys.stdin.isatty():
        raise OpenClawError(
            "openclaw chat needs a terminal", hint="In a script, use: openclaw agent -m TEXT"
        )
    return Chat(Client(), session, max_tokens=max_tokens, tool_choice=tool_choice).run()
