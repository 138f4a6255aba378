"""How an upstream turn writes its tools: our own format in the prompt (the default,
``turns.TOOL_FORMAT``), or the server's native tool calling for the models
``edge.nativeTools`` names (``native_tools``, ``native_transcript``).

The mode is the turn's first engine's: a fallback of the other mode is left out of
the chain, since the turn's messages are rendered for one mode. What differs lives
here: how a session is rendered, each call's native fields, and how a reply becomes a
``Step`` (its calls parsed from the text, or taken from the server's ``tool_calls``).
"""

from __future__ import annotations

import logging
from typing import Any

from openclaw_daemon.model.tape import PromptPlan, TokenTape
from openclaw_daemon.tools.formats.base import ToolFormat
from openclaw_daemon.tools.spec import ParsedReply
from openclaw_daemon.turn.agent_loop import Step
from openclaw_daemon.turn.options import TurnSettings
from openclaw_daemon.turn.transcript import Transcript
from openclaw_daemon.upstream import native_transcript
from openclaw_daemon.upstream.config_file import OpenClawConfig
from openclaw_daemon.upstream.model_call import CallResult
from openclaw_daemon.upstream.native_tools import NativeRequest, parsed_calls, tool_choice
from openclaw_daemon.upstream.targets import Target
from openclaw_sessions.store import new_entry_id

log = logging.getLogger("openclawd.upstream")


def native_chain(cfg: OpenClawConfig, chain: list[Target]) -> tuple[bool, list[Target]]:
    """Whether the turn's tools are native (its first engine is in edge.nativeTools),
    and the chain without the fallbacks of the other mode."""
    native = is_native(cfg, chain[0])
    kept = [target for target in chain if is_native(cfg, target) == native]
    for target in chain:
        if target not in kept:
            log.warning(
                "fallback %s skipped: %s is %sin edge.nativeTools and it is not",
                target.ref, chain[0].ref, "" if native else "not ",
            )  # fmt: skip
    return native, kept


def is_native(cfg: OpenClawConfig, target: Target) -> bool:
    return target.ref in cfg.native_tools


def session_messages(
    transcript: Transcript, native: bool, entries: list[dict[str, Any]], system: str
) -> list[dict[str, Any]]:
    """A session's messages as the mode's requests carry them."""
    if native:
        return native_transcript.messages(entries, system)
    return list(transcript.messages(entries, system))


def native_request(settings: TurnSettings, index: int) -> NativeRequest:
    """Model call ``index``'s native tool fields (``tool_choice`` per --tool-choice)."""
    return NativeRequest(tool_choice(settings.choice, index, settings.max_steps))


def reply_step(
    made: CallResult,
    messages: list[dict[str, Any]],
    settings: TurnSettings,
    tool_format: ToolFormat,
    native: NativeRequest | None,
) -> Step:
    """The call's reply as a step of the agent loop, its calls parsed."""
    generation = made.generation
    prefix = f"call_{new_entry_id()[:8]}"
    raw = shown = generation.text
    if settings.choice == "none":
        parsed = ParsedReply(generation.text)  # a call is only text
    elif native is not None:
        parsed = ParsedReply(generation.text, parsed_calls(native.calls(), prefix))
    else:
        parsed = tool_format.parse(generation.text, prefix)
    if generation.stop_reason == "length" and parsed.calls and parsed.calls[-1].error:
        parsed.calls.pop()  # a call cut off by max_tokens is not a call
        if native is None:
            raw = raw[: raw.rfind(tool_format.tags.call_open)]
    if native is not None:
        # As our own format would have held it: a session that moves to a model
        # without native tools (or to the embedded one) re-renders it from rawText.
        rendered = [tool_format.render_call(c.id, c.name, c.arguments) for c in parsed.calls]
        raw = "\n".join(filter(None, [generation.text, *rendered]))
    elif tool_format.tags.call_open in generation.text:
        shown = parsed.text
    plan = PromptPlan(made.prompt_tokens, "", list(messages), made.usage["input"], False)
    return Step(plan, generation, made.usage, parsed, TokenTape(), raw=raw, shown=shown)
