"""Named chat templates we ship, and the one place a model's template is chosen.

A GGUF usually embeds its template (``tokenizer.chat_template``), and that is
what the model was trained on, so it wins. Some carry none (the Gemma 3 270M
GGUF the tests use): then the architecture names the family (``gemma*`` ->
gemma, ``llama`` with Llama 3's ``<|eot_id|>`` token -> llama3, ``mistral`` ->
mistral, else chatml), as llama.cpp's ``llama-chat.cpp`` and llama-cpp-python's
named formats do. The user overrides either with ``--chat-template NAME|FILE``
(or ``OPENCLAW_CHAT_TEMPLATE``). Where the template came from is recorded
("embedded", "builtin:gemma (no template in the GGUF)", "file:PATH",
"override:NAME") for ``daemon status`` and the trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openclaw_daemon.model.chat_template import CHATML_TEMPLATE, ChatTemplate
from openclaw_daemon.wire.errors import BadRequestError, ModelError

log = logging.getLogger("openclawd.engine")

# google/gemma-3-*-it's own template (tokenizer_config.json), verbatim: Gemma 2 and 3
# share the turn markup; only 3's folds the system message into the first user turn.
GEMMA_TEMPLATE = r"""{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# Llama 3's header markup; tool results go under Meta's ``ipython`` header.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + ('ipython' if message['role'] == 'tool' else message['role'])"
    " + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)

# Mistral's v3 ([INST], [TOOL_CALLS] calls, [TOOL_RESULTS] results), the system
# message folded into the first user turn as Mistral's own templates do.
MISTRAL_TEMPLATE = (
    "{%- set system = messages[0]['content'] if messages[0]['role'] == 'system' else '' -%}"
    "{{ bos_token }}"
    "{%- for message in messages if message['role'] != 'system' -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{ '[INST]' + ((system + '\\n\\n') if system and loop.first else '')"
    " + message['content'] + '[/INST]' }}"
    "{%- elif message['role'] == 'tool' -%}"
    "{{ '[TOOL_RESULTS]{\"content\": ' + message['content'] + ', \"call_id\": \"'"
    " + message.get('tool_call_id', '') + '\"}[/TOOL_RESULTS]' }}"
    "{#- replies, [TOOL_CALLS] ones too #}{%- else -%}{{ message['content'] + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

BUILTIN: dict[str, str] = {
    "chatml": CHATML_TEMPLATE,
    "gemma": GEMMA_TEMPLATE,
    "llama3": LLAMA3_TEMPLATE,
    "mistral": MISTRAL_TEMPLATE,
}


@dataclass(frozen=True)
class TemplateChoice:
    source: str
    family: str  # gemma, llama3, mistral, chatml, or "custom"
    origin: str  # embedded, builtin:NAME (why), file:PATH, override:NAME
    fallback: str  # the builtin this model would get without its own template


def family_of(source: str) -> str:
    """The family a template's markup spells."""
    for marker, family in (
        ("<start_of_turn>", "gemma"),
        ("<|start_header_id|>", "llama3"),
        ("[INST]", "mistral"),
        ("<|im_start|>", "chatml"),
    ):
        if marker in source:
            return family
    return "custom"


# The tokens ``by_architecture`` asks about (``catalog`` looks them up in a
# GGUF's vocabulary without loading the model).
ASKED_TOKENS = ("<|eot_id|>", "[INST]")


def by_architecture(metadata: dict[str, Any], has_token: Callable[[str], bool]) -> str:
    """The builtin for a GGUF's ``general.architecture``."""
    arch = str(metadata.get("general.architecture", ""))
    if arch.startswith("gemma"):
        return "gemma"
    if arch == "llama" and has_token("<|eot_id|>"):
        return "llama3"
    if arch == "mistral" or (arch == "llama" and has_token("[INST]")):
        return "mistral"
    return "chatml"


def choose_template(
    metadata: dict[str, Any], *, has_token: Callable[[str], bool], override: str | None = None
) -> TemplateChoice:
    """The template for a model: the override, else the embedded one, else the
    builtin its architecture names."""
    fallback = by_architecture(metadata, has_token)
    if override:
        return _overridden(override, fallback)
    embedded = metadata.get("tokenizer.chat_template")
    if isinstance(embedded, str) and embedded.strip():
        return TemplateChoice(embedded, family_of(embedded), "embedded", fallback)
    reason = "no template in the GGUF"
    return TemplateChoice(BUILTIN[fallback], fallback, f"builtin:{fallback} ({reason})", fallback)


def builtin_instead(choice: TemplateChoice, why: str) -> TemplateChoice:
    """The architecture's builtin, for an embedded template that cannot be used."""
    name = choice.fallback
    return TemplateChoice(BUILTIN[name], name, f"builtin:{name} ({why})", name)


def _overridden(override: str, fallback: str) -> TemplateChoice:
    if override in BUILTIN:
        return TemplateChoice(BUILTIN[override], override, f"override:{override}", fallback)
    path = Path(override).expanduser()
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequestError(
            f"--chat-template {override!r} is neither a builtin template nor a readable file: "
            f"{exc}",
            hint=f"Use one of {', '.join(BUILTIN)}, or the path of a Jinja template file.",
        ) from None
    return TemplateChoice(source, family_of(source), f"file:{path.resolve()}", fallback)


def fallback_hint(choice: TemplateChoice) -> str:
    """What the user can do when this template fails (for the ModelError's hint)."""
    return (
        f"Start the daemon with --chat-template {choice.fallback} (the builtin for this "
        f"architecture) or --chat-template FILE; builtins: {', '.join(BUILTIN)}."
    )


def load_template(
    choice: TemplateChoice, model_name: str, bos_token: str, eos_token: str
) -> tuple[ChatTemplate, TemplateChoice]:
    """``choice`` compiled; an embedded template that does not compile gives way
    to the architecture's builtin, and the origin says so (an override that
    does not compile is the user's to fix: its ModelError stands)."""
    try:
        return _compiled(choice, model_name, bos_token, eos_token), choice
    except ModelError as exc:
        if choice.origin != "embedded":
            raise
        log.warning("%s; using the builtin %s template instead", exc.message, choice.fallback)
        instead = builtin_instead(choice, "the GGUF's template does not compile")
        return _compiled(instead, model_name, bos_token, eos_token), instead


def _compiled(
    choice: TemplateChoice, model_name: str, bos_token: str, eos_token: str
) -> ChatTemplate:
    return ChatTemplate(
        choice.source,
        bos_token=bos_token,
        eos_token=eos_token,
        label=f"{model_name} ({choice.origin})",
        fallback=fallback_hint(choice),
    )
