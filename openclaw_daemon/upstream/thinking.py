"""OpenClaw's --thinking levels on upstream engines: a model marked ``"reasoning": true``
in openclaw.json gets one as OpenAI's ``reasoning_effort`` (vLLM and SGLang take the
same field); any other is told it is ignored."""

from __future__ import annotations

from openclaw_daemon.upstream.config_file import UpstreamModel


def reasoning_effort(level: str) -> str:
    """OpenClaw's --thinking level as OpenAI's ``reasoning_effort`` (vLLM and SGLang
    take the same): the levels above high are high, adaptive is medium."""
    return {"minimal": "minimal", "low": "low", "medium": "medium", "adaptive": "medium"}.get(
        level, "high"
    )


def thinking_notice(level: str, model: UpstreamModel) -> str | None:
    """What to tell the user when ``model`` will not get the --thinking level."""
    if level == "off" or model.reasoning:
        return None
    return (
        f'--thinking {level}: ignored, {model.ref} is not marked "reasoning": true in openclaw.json'
    )
