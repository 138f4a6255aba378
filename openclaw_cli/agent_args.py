"""Arguments of ``openclaw agent``, parsed with argparse on the fast path.

``openclaw agent`` is the command users run in loops and scripts, so ``run()``
dispatches it before typer is imported: typer (with click and inspect) costs
about 30-70 ms per process on this machine, a third to half of the
framework-residual budget. This module is the one definition of the agent
command's options; typer only lists the command in ``openclaw --help``.
"""

from __future__ import annotations

import argparse
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from openclaw_cli import agent_input
from openclaw_daemon.wire import ids

if TYPE_CHECKING:
    from openclaw_daemon.wire.messages import TurnRequest

DEFAULT_MAX_TOKENS = 512
# OpenClaw's --thinking levels (openclaw_daemon.wire.requests has the same list; a
# unit test checks): passed to an upstream model marked ``reasoning`` in openclaw.json
# as ``reasoning_effort``, reported as ignored by engines without thinking levels.
THINKING_LEVELS = ("off", "minimal", "low", "medium", "high", "xhigh", "adaptive", "max", "ultra")
DEFAULT_MAX_STEPS = 6
PERMISSIONS = ("write", "edit", "exec")  # the tools that change things
PRIVATE_FETCH = "web_fetch:private"  # an opt-in: web_fetch may reach private addresses
ALLOW_VALUES = (*PERMISSIONS, PRIVATE_FETCH)
# The daemon's tools (openclaw_daemon.tools.spec; tests/unit/test_tools.py checks they
# match), repeated here so the CLI can reject a bad --tool-choice without
# importing the daemon's modules or starting it.
TOOL_NAMES = ("read", "write", "edit", "exec", "search", "web_fetch")
TOOL_CHOICES = ("auto", "none", "required", *TOOL_NAMES)


class AgentOptions(NamedTuple):
    message: str
    session_id: str | None = None
    session_key: str | None = None
    agent_id: str = "main"
    json: bool = False
    timeout: float | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    model: str | None = None
    verbose: bool = False
    trace: bool = False
    system: str | None = None
    tool_choice: str = "auto"
    max_steps: int = DEFAULT_MAX_STEPS
    allow: tuple[str, ...] = ()
    exec_timeout: float | None = None
    workspace: str | None = None  # the tools' directory (None: the current one)
    prompt_lookup: bool | None = None  # None: auto, the daemon's choice
    thinking: str = "off"
    # ``model`` when it names an upstream of openclaw.json ("provider/model-id"):
    # the turn asks the daemon for it instead of starting it on a GGUF.
    upstream: str | None = None
    ask_permission: bool = False  # the chat asks the user for write/edit/exec mid-turn


def _finite_float(text: str) -> float:
    value = float(text)
    # float() takes "nan" and "inf"; neither is a usable timeout or temperature.
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError("must be a finite number")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_float(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _permissions(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALLOW_VALUES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown permission {', '.join(unknown)}; choose from {', '.join(ALLOW_VALUES)}"
        )
    return names


def _add_turn_arguments(parser: argparse.ArgumentParser) -> None:
    """The message, where the turn runs (session, agent), the output form and the deadline."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "-m",
        "--message",
        metavar="TEXT",
        help="the user message for this turn; - reads it from stdin, as does a piped "
        "stdin with no -m",
    )
    source.add_argument(
        "--message-file",
        metavar="PATH",
        help="read the message from this UTF-8 file (at most 4 MiB)",
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="run on the local daemon (the only mode; accepted for OpenClaw compatibility)",
    )
    session = parser.add_mutually_exclusive_group()
    session.add_argument(
        "--session-id",
        help="continue or create this session (default: the agent's main session)",
    )
    session.add_argument(
        "--session-key",
        metavar="KEY",
        help="continue or create the session stored under this key: agent:<id>:<name>, "
        "or <name> scoped to --agent",
    )
    parser.add_argument("--agent", dest="agent_id", default=None, help="agent id (default: main)")
    parser.add_argument(
        "--json", action="store_true", help="print OpenClaw's JSON envelope instead of text"
    )
    parser.add_argument(
        "--timeout",
        type=_non_negative_float,
        metavar="SECONDS",
        help="give up after this long; 0 waits as long as the turn takes (default: no deadline)",
    )


def _add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """How the model generates: length, sampling, stops, the model and the system prompt."""
    parser.add_argument(
        "--max-tokens",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"most tokens to generate (default: {DEFAULT_MAX_TOKENS})",
    )
    parser.add_argument(
        "--temperature",
        type=_non_negative_float,
        default=None,
        metavar="T",
        help="sampling temperature; 0 is greedy (default: 0)",
    )
    parser.add_argument("--seed", type=int, metavar="N", help="sampling seed")
    parser.add_argument(
        "--stop",
        action="append",
        default=[],
        metavar="STR",
        help="stop at this string (repeatable)",
    )
    parser.add_argument(
        "--prompt-lookup",
        choices=("auto", "on", "off"),
        default="auto",
        help="at temperature 0, draft tokens from the conversation and verify them in "
        "one batch: faster where the reply quotes what it read. auto: where the "
        "daemon's llama.cpp computes a batch's rows as single steps, so the reply is "
        "the same as without (scripts/setup's build does, with --parallel 1; "
        "`daemon status` says) (default: auto)",
    )
    parser.add_argument(
        "--thinking",
        choices=THINKING_LEVELS,
        default=None,
        metavar="LEVEL",
        help=f"thinking level where the model supports one ({', '.join(THINKING_LEVELS)}): "
        "sent as reasoning_effort to an upstream model marked reasoning in openclaw.json, "
        "ignored with a notice elsewhere (default: off)",
    )
    parser.add_argument(
        "--model",
        metavar="NAME|PATH",
        help="GGUF model: a path or a name from `openclaw models list` "
        "(default: OPENCLAW_MODEL or the embedded model)",
    )
    parser.add_argument(
        "-s",
        "--system",
        metavar="TEXT",
        help="system prompt for this turn instead of the default; a system prompt that "
        "changes between turns is re-prefilled in full (openclaw doctor explains it)",
    )


def _add_tool_arguments(parser: argparse.ArgumentParser) -> None:
    """Which tools the model may call, how often, and for how long."""
    parser.add_argument(
        "--tool-choice",
        default="auto",
        metavar="CHOICE",
        help="auto (the model decides), none (no tools), required (every model call but "
        "the last --max-steps allows must call a tool), or a tool name (the first call "
        "must call it: read, write, edit, exec, search, web_fetch); required and a name "
        "constrain the reply with a grammar (default: auto)",
    )
    parser.add_argument(
        "--max-steps",
        type=_positive_int,
        default=DEFAULT_MAX_STEPS,
        metavar="N",
        help=f"most model calls in the turn (default: {DEFAULT_MAX_STEPS})",
    )
    parser.add_argument(
        "--allow",
        type=_permissions,
        action="append",
        default=[],
        metavar="TOOLS",
        help="let the model use these tools that change things: write, edit, exec "
        "(comma-separated, repeatable); read, search and web_fetch need no permission; "
        f"{PRIVATE_FETCH} lets web_fetch reach loopback and private addresses",
    )
    parser.add_argument(
        "--exec-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="kill any exec tool command after this long (default: 30)",
    )


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """What is printed to stderr after the reply."""
    parser.add_argument(
        "--verbose",
        choices=("on", "off"),
        default="off",
        help="on: print usage and the phase trace to stderr after the reply",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print the turn's phase chart (as `openclaw trace last` draws it) to stderr "
        "after the reply",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openclaw agent",
        description="Run one agent turn on the local daemon and stream the reply to stdout. "
        "The first turn starts the daemon if it is not running.",
        epilog="Progress and notices go to stderr. Exit codes: 0 ok, 1 error, 2 usage, "
        "124 timeout, 130 interrupted, 141 stdout closed (the turn is cancelled).",
    )
    # --help lists the options in the order they are added.
    _add_turn_arguments(parser)
    _add_sampling_arguments(parser)
    _add_tool_arguments(parser)
    _add_report_arguments(parser)
    return parser


def _agent_and_key(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> tuple[str, str | None]:
    """--agent and --session-key: a key agent:<id>:<name> names its agent, a bare
    name is scoped to --agent (as OpenClaw's)."""
    agent = ids.agent_id(args.agent_id or "main", field="--agent")
    if args.session_key is None:
        return agent, None
    raw = args.session_key.strip()
    key = ids.session_ref(
        raw if raw.lower().startswith("agent:") else f"agent:{agent}:{raw}", field="--session-key"
    )
    key_agent = key.split(":")[1]
    if args.agent_id is not None and key_agent != agent:
        parser.error(f"--session-key {key} belongs to agent {key_agent}, not --agent {agent}")
    return key_agent, key


def parse_agent_args(argv: list[str]) -> AgentOptions:
    """Parse ``openclaw agent`` arguments; exits 2 with a usage message on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    message = agent_input.message(args, parser)
    cfg = agent_input.config_defaults()
    allow = tuple(name for group in args.allow for name in group) if args.allow else cfg.allow
    allowed = set(allow)
    if args.tool_choice not in TOOL_CHOICES:
        parser.error(f"--tool-choice must be one of: {', '.join(TOOL_CHOICES)}")
    if args.tool_choice in PERMISSIONS and args.tool_choice not in allowed:
        parser.error(
            f"--tool-choice {args.tool_choice} forces a call the turn may not make: "
            f"add --allow {args.tool_choice}"
        )
    agent, key = _agent_and_key(args, parser)
    timeout = args.timeout if args.timeout is not None else cfg.timeout
    return AgentOptions(
        message=message,
        # BadRequestError (one line, exit 2) before the daemon is even started.
        session_id=ids.optional_session_id(args.session_id, field="--session-id"),
        session_key=key,
        agent_id=agent,
        json=args.json,
        timeout=timeout or None,  # 0: no deadline
        max_tokens=args.max_tokens or cfg.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=_first(args.temperature, cfg.temperature, 0.0),
        seed=args.seed,
        stop=tuple(args.stop),
        model=args.model,
        verbose=args.verbose == "on",
        trace=args.trace,
        system=args.system,
        tool_choice=args.tool_choice,
        max_steps=args.max_steps,
        allow=allow,
        workspace=cfg.workspace,
        exec_timeout=args.exec_timeout,
        prompt_lookup={"on": True, "off": False}.get(args.prompt_lookup),
        thinking=args.thinking or cfg.thinking or "off",
    )


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)


def turn_request(options: AgentOptions) -> TurnRequest:
    """The ``turn`` frame for these options (docs/protocol.md)."""
    request: TurnRequest = {
        "type": "turn",
        # One id per invocation; a script retrying a turn whose reply it never
        # got sets OPENCLAW_REQUEST_ID, and the daemon answers a committed one
        # from the transcript instead of running it twice (docs/recovery.md).
        "requestId": os.environ.get("OPENCLAW_REQUEST_ID") or uuid.uuid4().hex,
        "message": options.message,
        "agentId": options.agent_id,
        "sessionId": options.session_id,
        "maxTokens": options.max_tokens,
        "temperature": options.temperature,
        "seed": options.seed,
        "stop": list(options.stop),
        "cwd": str(Path(options.workspace).resolve()) if options.workspace else str(Path.cwd()),
        "timeoutS": options.timeout,
        "system": options.system,
        "toolChoice": options.tool_choice,
        "maxSteps": options.max_steps,
        "allow": list(options.allow),
        "execTimeout": options.exec_timeout,
        "promptLookup": options.prompt_lookup,
        # exec runs with the caller's environment, not the daemon's.
        "env": dict(os.environ),
    }
    if options.session_key:
        request["sessionKey"] = options.session_key
    if options.ask_permission:
        request["askPermission"] = True
    if options.thinking != "off":
        request["thinking"] = options.thinking
    if options.upstream:
        request["model"] = options.upstream
    return request
