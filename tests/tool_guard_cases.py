"""Hostile tool calls against the tools' guards, counted by ``run_all()``.

Each case builds its own trap (a workspace with symlinks pointing out of it, a
planted temp-file symlink, a local HTTP server that must never be reached, a
command that must never start) and makes one hostile call through the real
``ToolRunner`` (argument checks, permissions, dispatch), or through
``web_fetch.fetch`` where a case needs the resolver or transport seam.

A case is *refused* when the tool reported an error or neutralised the trick
(a search that skips the symlink, a write that leaves the planted target
alone); it *escaped* when anything crossed the boundary: outside content in a
result, an outside file changed or created, a private address contacted, a
command started that should not have, a command left running past the cap.
``tests/e2e/test_tool_guards.py`` asserts 0 escapes and every case refused; a
``scripts/faults`` run can print ``run_all()`` as "N hostile calls, 0 escapes".
"""

from __future__ import annotations

import contextlib
import http.server
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECRET = "TOPSECRET-7f3a"
LEAK = f"the secret is {SECRET}"  # outside content (a query may echo SECRET itself)
UNCHANGED = "outside-unchanged"
PROBE_VAR = "OPENCLAW_GUARD_PROBE"


@dataclass
class Trap:
    """One case's world: a workspace, an outside dir, and what counts as escaping."""

    root: Path
    ws: Path = field(init=False)
    outside: Path = field(init=False)
    hits: list[str] = field(default_factory=list)  # requests the private server saw

    def __post_init__(self) -> None:
        self.ws = self.root / "ws"
        self.outside = self.root / "outside"
        self.ws.mkdir()
        self.outside.mkdir()
        (self.outside / "secret.txt").write_text(f"{LEAK}\n")
        (self.outside / "target.txt").write_text(UNCHANGED)
        (self.ws / "note.txt").write_text("hello note\n")

    def outside_changed(self) -> bool:
        names = sorted(p.name for p in self.outside.iterdir())
        return (
            names != ["secret.txt", "target.txt"]
            or (self.outside / "target.txt").read_text() != UNCHANGED
            or SECRET not in (self.outside / "secret.txt").read_text()
        )


@dataclass
class Outcome:
    refused: bool
    escaped: bool
    detail: str = ""


def _runner() -> Any:
    from openclaw_daemon.tools.runner import ToolRunner

    return ToolRunner(
        tokenize=lambda text: list(text.encode()),
        detokenize=lambda ids: bytes(ids).decode(errors="replace"),
        token_budget=10**6,
        ttl_s=0,
    )


def _call(
    trap: Trap,
    name: str,
    arguments: Any,
    *,
    allowed: tuple[str, ...] = ("write", "edit", "exec"),
    env: dict[str, str] | None = None,
    exec_timeout: float = 2.0,
) -> tuple[bool, str]:
    """(is_error, content) of one call through the real runner."""
    from openclaw_daemon.tools.runner import ToolContext
    from openclaw_daemon.tools.spec import ToolCall

    context = ToolContext(
        trap.ws,
        {"PATH": "/usr/bin:/bin"} if env is None else env,
        frozenset(allowed),
        exec_timeout,
    )
    [outcome] = _runner().run_step([ToolCall("g", name, arguments)], context)
    return outcome.is_error, outcome.content


def _file_case(name: str, arguments: Any, setup: Callable[[Trap], None] | None = None) -> Any:
    """A file-tool case: refused on error; escaped on outside content or changes."""

    def case(trap: Trap) -> Outcome:
        if setup:
            setup(trap)
        is_error, content = _call(trap, name, arguments)
        escaped = LEAK in content or trap.outside_changed()
        return Outcome(is_error or name in ("search", "write", "edit"), escaped, content[:200])

    case.__name__ = f"{name}:{arguments!r}"[:120]
    return case


def _strict_case(name: str, arguments: Any, setup: Callable[[Trap], None] | None = None) -> Any:
    """Like ``_file_case`` but only an error counts as refused."""

    def case(trap: Trap) -> Outcome:
        if setup:
            setup(trap)
        is_error, content = _call(trap, name, arguments)
        escaped = LEAK in content or trap.outside_changed()
        return Outcome(is_error, escaped, content[:200])

    case.__name__ = f"{name}:{arguments!r}"[:120]
    return case


# -- traps ---------------------------------------------------------------------
def link_file(trap: Trap) -> None:
    (trap.ws / "link.txt").symlink_to(trap.outside / "secret.txt")


def link_target(trap: Trap) -> None:
    (trap.ws / "target.txt").symlink_to(trap.outside / "target.txt")


def link_relative(trap: Trap) -> None:
    (trap.ws / "up.txt").symlink_to("../outside/secret.txt")


def link_dir(trap: Trap) -> None:
    (trap.ws / "d").symlink_to(trap.outside)


def link_nested(trap: Trap) -> None:
    (trap.ws / "a").mkdir()
    (trap.ws / "a" / "b").symlink_to("../../outside")


def plant_tmp(trap: Trap) -> None:
    """The old write path's fixed temp name, planted as a symlink to an outside file."""
    (trap.ws / ".note.txt.openclaw.tmp").symlink_to(trap.outside / "target.txt")


def plant_fifo(trap: Trap) -> None:
    os.mkfifo(trap.ws / "fifo")


def file_cases() -> list[Any]:
    secret_abs = "{outside}/secret.txt"  # filled in per trap below
    cases: list[Any] = []
    for path, setup in (
        ("../outside/secret.txt", None),
        ("link.txt", link_file),
        ("up.txt", link_relative),
        ("d/secret.txt", link_dir),
        ("a/b/secret.txt", link_nested),
        ("a/../../outside/secret.txt", link_nested),
        ("note.txt\0../../outside/secret.txt", None),
        ("fifo", plant_fifo),
        ("", None),
    ):
        cases.append(_strict_case("read", {"path": path}, setup))
    cases.append(_abs_case("read", secret_abs))
    for arguments in (
        {"path": 42},
        {"path": ["note.txt"]},
        {"path": None},
        {"path": "note.txt", "offset": math.nan},
        {"path": "note.txt", "offset": -1},
        {"path": "note.txt", "offset": math.inf},
        {"path": "note.txt", "limit": -5},
        {"path": "note.txt", "limit": 1e300},
        {"path": "note.txt", "offset": "1"},
        {"path": "note.txt", "offset": True},
    ):
        cases.append(_strict_case("read", arguments))
    for path, setup in (
        (None, link_file),
        (None, link_dir),
        (None, link_relative),
        ("d", link_dir),
        ("a/b", link_nested),
        ("../outside", None),
    ):
        arguments = {"query": SECRET} if path is None else {"query": SECRET, "path": path}
        cases.append(_file_case("search", arguments, setup))
    for arguments in ({"query": 7}, {"query": ""}, {"query": "x", "path": "a\0b"}):
        cases.append(_strict_case("search", arguments))
    for path, setup in (
        ("../outside/target.txt", None),
        ("target.txt", link_target),
        ("d/target.txt", link_dir),
        ("d/new.txt", link_dir),
        ("a/b/target.txt", link_nested),
        ("bad\0name", None),
    ):
        cases.append(_strict_case("write", {"path": path, "content": "pwned"}, setup))
    cases.append(_file_case("write", {"path": "note.txt", "content": "fine"}, plant_tmp))
    cases.append(_file_case("edit", {"path": "note.txt", "old": "hello", "new": "bye"}, plant_tmp))
    cases.append(_strict_case("write", {"path": "note.txt", "content": 5}))
    cases.append(_strict_case("write", {"path": "note.txt", "content": "x", "mode": 511}))
    for path, setup in (("target.txt", link_target), ("d/target.txt", link_dir)):
        edit = {"path": path, "old": "outside", "new": "pwned"}
        cases.append(_strict_case("edit", edit, setup))
    cases.append(_strict_case("edit", {"path": "note.txt", "old": math.nan, "new": "x"}))
    return cases


def _abs_case(name: str, template: str) -> Any:
    def case(trap: Trap) -> Outcome:
        is_error, content = _call(trap, name, {"path": template.format(outside=trap.outside)})
        return Outcome(is_error, LEAK in content or trap.outside_changed(), content[:200])

    case.__name__ = f"{name}:absolute outside path"
    return case


# -- exec ------------------------------------------------------------------------
def _exec_case(arguments: dict[str, Any], label: str) -> Any:
    """A hostile exec must be refused before the command starts (no marker file)."""

    def case(trap: Trap) -> Outcome:
        marker = trap.root / "ran"
        args = {"command": f"touch {marker}; sleep 3", **arguments}
        started = time.monotonic()
        is_error, content = _call(trap, "exec", args, exec_timeout=1.0)
        elapsed = time.monotonic() - started
        # Left running past the cap, or started while refused: both escape.
        escaped = elapsed > 2.5 or (is_error and marker.exists() and "timed out" not in content)
        return Outcome(is_error and not marker.exists(), escaped, content[:200])

    case.__name__ = f"exec:{label}"
    return case


def _exec_capped(timeout: Any, label: str) -> Any:
    """An in-range but too-long timeout is held to the cap (killed, not left running)."""

    def case(trap: Trap) -> Outcome:
        started = time.monotonic()
        is_error, content = _call(
            trap, "exec", {"command": "sleep 5", "timeout": timeout}, exec_timeout=0.5
        )
        elapsed = time.monotonic() - started
        return Outcome(is_error, elapsed > 3, content[:200])

    case.__name__ = f"exec:{label}"
    return case


def _exec_env_case(trap: Trap) -> Outcome:
    """An empty caller environment is empty, not the daemon's."""
    os.environ[PROBE_VAR] = LEAK
    try:
        is_error, content = _call(trap, "exec", {"command": f"echo ${PROBE_VAR}"}, env={})
    finally:
        os.environ.pop(PROBE_VAR, None)
    return Outcome(LEAK not in content, LEAK in content, content[:200])


def _exec_nul(trap: Trap) -> Outcome:
    is_error, content = _call(trap, "exec", {"command": "echo ok\0; cat /etc/passwd"})
    return Outcome(is_error, "root:" in content, content[:200])


def exec_cases() -> list[Any]:
    cases = [
        _exec_case({"timeout": value}, label)
        for value, label in (
            (math.nan, "timeout NaN"),
            (math.inf, "timeout inf"),
            (-math.inf, "timeout -inf"),
            (-1, "timeout -1"),
            (0, "timeout 0"),
            ("30", "timeout string"),
            (True, "timeout bool"),
            ([1], "timeout list"),
            (1e308 * 10, "timeout overflow"),
        )
    ]
    cases.append(_exec_case({"env": {"PATH": "/tmp/evil"}}, "env argument"))
    cases.append(_exec_case({"cwd": "/"}, "cwd argument"))
    cases.append(_exec_capped(599, "timeout under the max, over the cap"))
    cases.append(_exec_capped(1e300, "timeout huge"))
    _exec_env_case.__name__ = "exec:empty env inherits nothing"
    _exec_nul.__name__ = "exec:NUL in command"
    cases += [_exec_env_case, _exec_nul]
    return cases


# -- web_fetch -------------------------------------------------------------------
@contextlib.contextmanager
def private_server(trap: Trap, host: str = "127.0.0.1") -> Iterator[int]:
    """A server that must never be reached: it records every request."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            trap.hits.append(self.path)
            body = LEAK.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        address_family = (
            __import__("socket").AF_INET6 if ":" in host else __import__("socket").AF_INET
        )

    server = Server((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _fetch(url: str, **kwargs: Any) -> tuple[bool, str]:
    from openclaw_daemon.tools import web_fetch
    from openclaw_daemon.wire.errors import ToolError

    try:
        return False, web_fetch.fetch({"url": url}, **kwargs)
    except ToolError as exc:
        return True, exc.message


def _fetch_case(template: str, label: str, host: str = "127.0.0.1", **kwargs: Any) -> Any:
    def case(trap: Trap) -> Outcome:
        with private_server(trap, host) as port:
            is_error, content = _fetch(template.format(port=port), **kwargs)
        return Outcome(is_error, bool(trap.hits) or LEAK in content, content[:200])

    case.__name__ = f"web_fetch:{label}"
    return case


def stub_resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    """A resolver seam: names map to fixed addresses, nothing touches DNS."""

    def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


def _redirect_case(trap: Trap) -> Outcome:
    """An allowed (public) host redirects to loopback: the second hop is refused."""
    import httpx

    seen: list[str] = []
    with private_server(trap) as port:

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url.host))
            if request.url.host == "93.184.216.34":
                location = f"http://127.0.0.1:{port}/secret"
                return httpx.Response(302, headers={"Location": location})
            return httpx.Response(200, text=LEAK)

        is_error, content = _fetch(
            "http://public.test/start",
            resolver=stub_resolver({"public.test": ["93.184.216.34"]}),
            transport=httpx.MockTransport(handler),
        )
    escaped = bool(trap.hits) or LEAK in content or "127.0.0.1" in seen
    return Outcome(is_error, escaped, content[:200])


def _rebinding_case(trap: Trap) -> Outcome:
    """A name that resolves to loopback (through the stub resolver) is refused."""
    with private_server(trap) as port:
        is_error, content = _fetch(
            f"http://rebind.test:{port}/",
            resolver=stub_resolver({"rebind.test": ["127.0.0.1"]}),
        )
    return Outcome(is_error, bool(trap.hits) or LEAK in content, content[:200])


def _mixed_case(trap: Trap) -> Outcome:
    """One public and one private address: refused (any private answer refuses)."""
    with private_server(trap) as port:
        is_error, content = _fetch(
            f"http://mixed.test:{port}/",
            resolver=stub_resolver({"mixed.test": ["93.184.216.34", "127.0.0.1"]}),
        )
    return Outcome(is_error, bool(trap.hits) or LEAK in content, content[:200])


def _resolve_once_case(trap: Trap) -> Outcome:
    """DNS rebinding: the name is resolved once and the connection goes to that address."""
    import httpx

    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url.host), request.headers.get("host", "")))
        return httpx.Response(200, text="public page")

    is_error, content = _fetch(
        "http://flip.test/",
        resolver=lambda host, port: next(answers),
        transport=httpx.MockTransport(handler),
    )
    pinned = seen == [("93.184.216.34", "flip.test")]
    return Outcome(pinned and not is_error, not pinned, f"{content[:100]} {seen}")


def _ipv6_loopback_available() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def web_cases() -> list[Any]:
    cases = [
        _fetch_case("http://127.0.0.1:{port}/", "127.0.0.1"),
        _fetch_case("http://localhost:{port}/", "localhost"),
        _fetch_case("http://127.1:{port}/", "127.1"),
        _fetch_case("http://0x7f000001:{port}/", "hex 127.0.0.1"),
        _fetch_case("http://2130706433:{port}/", "decimal 127.0.0.1"),
        _fetch_case("http://[::ffff:127.0.0.1]:{port}/", "IPv4-mapped loopback"),
        _fetch_case("http://user:pw@127.0.0.1:{port}/", "userinfo"),
        _fetch_case("http://0.0.0.0:{port}/", "unspecified"),
    ]
    if _ipv6_loopback_available():
        cases.append(_fetch_case("http://[::1]:{port}/", "::1", host="::1"))
    for url, label in (
        ("http://10.1.2.3/", "10.x"),
        ("http://172.16.0.1/", "172.16.x"),
        ("http://192.168.1.1/", "192.168.x"),
        ("http://169.254.169.254/latest/meta-data/", "metadata 169.254.169.254"),
        ("http://100.64.0.1/", "CGNAT 100.64.x"),
        ("http://[fd00::1]/", "ULA fd00::"),
        ("http://[fe80::1]/", "link-local fe80::"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[::]/", "unspecified ::"),
        ("file:///etc/passwd", "file scheme"),
        ("gopher://127.0.0.1/", "gopher scheme"),
        ("http://127.0.0.1\0.example.com/", "NUL in URL"),
        ("http:///nohost", "no host"),
    ):
        cases.append(_fetch_url_only(url, label))
    cases.append(_wrong_type_url())
    for fn, label in (
        (_redirect_case, "redirect from an allowed host to 127.0.0.1"),
        (_rebinding_case, "name resolving to 127.0.0.1"),
        (_mixed_case, "name with a public and a private address"),
        (_resolve_once_case, "resolve once, connect to that address"),
    ):
        fn.__name__ = f"web_fetch:{label}"
        cases.append(fn)
    return cases


def _fetch_url_only(url: str, label: str) -> Any:
    """Refused before any connection: a transport that records any attempt."""

    def case(trap: Trap) -> Outcome:
        import httpx

        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url))
            return httpx.Response(200, text=LEAK)

        try:
            is_error, content = _fetch(url, transport=httpx.MockTransport(handler))
        except TypeError:  # a fetch without the transport seam: call it plainly
            is_error, content = _fetch(url)
        return Outcome(is_error, bool(seen) or LEAK in content, content[:200])

    case.__name__ = f"web_fetch:{label}"
    return case


def _wrong_type_url() -> Any:
    def case(trap: Trap) -> Outcome:
        is_error, content = _call(trap, "web_fetch", {"url": ["http://127.0.0.1/"]})
        return Outcome(is_error, LEAK in content, content[:200])

    case.__name__ = "web_fetch:URL of the wrong type"
    return case


# -- the suite -------------------------------------------------------------------
def all_cases() -> list[Any]:
    return file_cases() + exec_cases() + web_cases()


def run_case(case: Any) -> Outcome:
    root = Path(tempfile.mkdtemp(prefix="openclaw-guard-"))
    try:
        return case(Trap(root))
    except Exception as exc:  # a crash is neither a clean refusal nor proof of escape
        return Outcome(False, False, f"crashed: {type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_all(verbose: bool = False) -> dict[str, Any]:
    """Run every hostile case; ``{"cases", "refused", "escaped", "failures"}``."""
    results = {"cases": 0, "refused": 0, "escaped": 0, "failures": []}
    for case in all_cases():
        outcome = run_case(case)
        results["cases"] += 1
        results["refused"] += outcome.refused
        results["escaped"] += outcome.escaped
        if outcome.escaped or not outcome.refused:
            kind = "ESCAPED" if outcome.escaped else "not refused"
            results["failures"].append(f"{case.__name__}: {kind}: {outcome.detail}")
        if verbose:
            print(case.__name__, outcome)
    return results


if __name__ == "__main__":
    summary = run_all()
    for failure in summary["failures"]:
        print(failure)
    print(
        f"{summary['cases']} hostile calls, {summary['refused']} refused, "
        f"{summary['escaped']} escapes"
    )
