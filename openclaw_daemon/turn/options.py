"""A turn's checked request with the daemon's defaults applied, once.

``wire.requests.parse_turn`` has already checked every field's type and range;
this adds what the daemon decides: the defaults, the permission names, the
workspace directory and the per-call sampling options. The pipeline and the
agent loop read these attributes, never the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from openclaw_daemon.tools import exec_tool
from openclaw_daemon.tools.grammar import check_choice
from openclaw_daemon.tools.runner import ToolContext
from openclaw_daemon.tools.spec import PERMISSIONS
from openclaw_daemon.turn.model_calls import CallOptions
from openclaw_daemon.wire.errors import BadRequestError
from openclaw_daemon.wire.requests import TurnOptions
from openclaw_sessions.prompt import SYSTEM_PROMPT

DEFAULT_MAX_TOKENS = 512
DEFAULT_MAX_STEPS = 6


@dataclass(frozen=True)
class TurnSettings:
    message: str
    system: str  # the system prompt the request set, or the default one
    max_tokens: int
    max_steps: int
    choice: str  # tool_choice: auto, none, required, or a tool's name
    tools: ToolContext
    call: CallOptions  # how each model call of the turn samples


def turn_settings(options: TurnOptions) -> TurnSettings:
    """``options`` with the defaults applied; BadRequestError for a tool choice,
    a permission or a workspace the daemon does not know."""
    choice = check_choice(options.tool_choice or "auto")
    allowed = frozenset(options.allow)
    unknown = allowed - PERMISSIONS
    if unknown:
        raise BadRequestError(
            f"unknown permission {', '.join(sorted(unknown))}",
            hint=f"--allow takes: {', '.join(sorted(PERMISSIONS))}.",
        )
    cwd = Path(options.cwd or ".").resolve()
    if not cwd.is_dir():
        raise BadRequestError(f"the workspace {cwd} is not a directory")
    exec_timeout = options.exec_timeout or exec_tool.DEFAULT_TIMEOUT_S
    return TurnSettings(
        message=options.message,
        system=options.system or SYSTEM_PROMPT,
        max_tokens=options.max_tokens or DEFAULT_MAX_TOKENS,
        max_steps=max(1, options.max_steps or DEFAULT_MAX_STEPS),
        choice=choice,
        tools=ToolContext(cwd, dict(options.env), allowed, exec_timeout),
        call=CallOptions(
            options.temperature,
            options.seed,
            tuple(options.stop),
            options.prompt_lookup,
            options.thinking,
        ),
    )
