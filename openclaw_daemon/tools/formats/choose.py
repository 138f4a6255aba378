"""The one place a model's tool-call format is chosen, from its chat template."""

from __future__ import annotations

from openclaw_daemon.model.chat_template import ChatTemplate
from openclaw_daemon.tools.formats import hermes
from openclaw_daemon.tools.formats.base import ToolFormat


def format_for(template: ChatTemplate) -> ToolFormat:
    """The tool-call format of the model whose chat template is ``template``.

    Families are told apart by what their template spells (e.g. a future
    ``if "[TOOL_CALLS]" in template.source: return mistral.for_template(template)``).
    Hermes is the fallback: it is what ChatML models (SmolLM2, Qwen, Hermes) are
    tuned on, and SmolLM2's template names no tool syntax at all.
    """
    return hermes.for_template(template)
