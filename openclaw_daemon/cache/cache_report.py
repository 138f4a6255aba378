"""Explain a turn's cache outcome: how many tokens, from which tier, and why not more.

On a divergence the report names the token position, the message and
segment it falls in (the head, an earlier transcript message, or the new
message) and a short snippet of both sides, and says it in one line of words
for ``--verbose``, ``openclaw doctor`` and the stored turn record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openclaw_daemon.cache.prefix_cache import CachePlan, Divergence
from openclaw_daemon.model.chat_template import ChatMessage, ChatTemplate

if TYPE_CHECKING:
    from openclaw_daemon.model.base import ModelEngine

_SNIPPET_TOKENS = 8


def _text(engine: ModelEngine, tokens: tuple[int, ...] | list[int]) -> str:
    return engine.detokenize(list(tokens), special=True).decode("utf-8", errors="replace")


def _message_at(
    template: ChatTemplate, messages: list[ChatMessage], offset: int
) -> tuple[int, str]:
    """Index and segment name of the message whose rendered text holds ``offset``."""
    for index in range(len(messages)):
        end = len(template.render(messages[: index + 1], add_generation_prompt=False))
        if offset < end:
            role = str(messages[index].get("role"))
            if index == 0 and role == "system":
                return index, "system message"
            if index == len(messages) - 1:
                return index, f"new {role} message"
            return index, f"message {index} ({role})"
    return len(messages), "generation prompt"


def describe_divergence(
    engine: ModelEngine,
    template: ChatTemplate,
    messages: list[ChatMessage],
    tokens: list[int],
    divergence: Divergence,
) -> dict[str, Any]:
    at = divergence.position
    index, segment = _message_at(template, messages, len(_text(engine, tokens[:at])))
    before = tokens[max(0, at - _SNIPPET_TOKENS) : at]
    return {
        "position": at,
        "messageIndex": index,
        "segment": segment,
        "cachedFrom": divergence.source,
        "cachedSession": divergence.label,
        "context": _text(engine, before),
        "prompt": _text(engine, tokens[at : at + _SNIPPET_TOKENS]),
        "cached": _text(engine, divergence.cached[at : at + _SNIPPET_TOKENS]),
    }


def summary(report: dict[str, Any]) -> str:
    cached, total, tier = report["cachedTokens"], report["promptTokens"], report["tier"]
    reused = f"cache reused {cached:,} of {total:,} tokens"
    source = f" ({tier})" if tier != "none" else ""
    divergence = report.get("divergence")
    if divergence is None:
        if cached == 0:
            return f"no cached prefix: prefilled all {total:,} tokens"
        return f"{reused}{source}"
    segment = divergence["segment"]
    if segment == "system message":
        return f"system message changed at token {divergence['position']:,}: {reused}{source}"
    return (
        f"prompt leaves the cached sequence of session {divergence['cachedSession'] or '?'} "
        f"at token {divergence['position']:,}, in the {segment}: {reused}{source}"
    )


def build(
    engine: ModelEngine,
    template: ChatTemplate,
    messages: list[ChatMessage],
    tokens: list[int],
    plan: CachePlan,
    *,
    restore_ms: float | None,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "tier": plan.tier,
        "cachedTokens": plan.cached,
        "promptTokens": len(tokens),
        "restoreMs": restore_ms,
        "parkedTokens": plan.parked,
        "notices": list(plan.notices),
    }
    if plan.divergence is not None:
        report["divergence"] = describe_divergence(
            engine, template, messages, tokens, plan.divergence
        )
    report["summary"] = summary(report)
    return report
