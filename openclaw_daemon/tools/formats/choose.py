"""The one place a model's tool-call format is chosen, from its chat template."""

from __future__ import annotations

from openclaw_daemon.model.chat_template import ChatTemplate
from openclaw_daemon.tools.formats import gemma, hermes, llama3, mistral
from openclaw_daemon.tools.formats.base import ToolFormat


def format_for(template: ChatTemplate) -> ToolFormat:
    """The tool-call format of the model whose chat template is ``template``.

    Families are told apart by what their template spells. A template that
    names Hermes tags is Hermes even on a Llama base (Hermes 3); then
    Mistral's ``[TOOL_CALLS]``, Llama 3's ``ipython`` role, and Gemma's turn
    markers. Hermes is the fallback: it is what ChatML models (SmolLM2, Qwen,
    Hermes) are tuned on, and SmolLM2's template names no tool syntax at all.
    """
    source = template.source
    if "<tool_call>" in source:
        return hermes.for_template(template)
    if "[TOOL_CALLS]" in source:
        return mistral.FORMAT
    if "<|python_tag|>" in source or "ipython" in source:
        return llama3.FORMAT
    if "<start_of_turn>" in source:
        return gemma.FORMAT
    return hermes.for_template(template)
