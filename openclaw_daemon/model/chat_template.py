"""Render chat messages with the model's own template (GGUF ``tokenizer.chat_template``).

Rendering is what turns a session into text; ``tape`` turns that text into the
exact token sequence the KV cache holds. Uses jinja2's sandbox, as
llama-cpp-python and HF transformers do.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from openclaw_daemon.wire.errors import ModelError

ChatMessage = dict[str, Any]

# Used only when a GGUF carries no template at all.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """``tojson`` as HF transformers defines it for chat templates: keys in their
    order, no HTML escaping. Jinja's own sorts keys and escapes ``<``, so a
    call it renders would not be the JSON the model was trained on."""
    return json.dumps(
        value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys
    )


class ChatTemplate:
    """A compiled chat template plus the special-token strings it refers to."""

    def __init__(
        self,
        source: str | None,
        *,
        bos_token: str,
        eos_token: str,
        label: str = "the model",
        fallback: str = "",
    ) -> None:
        """``label`` names the model and where its template came from, and
        ``fallback`` says what else the user could choose, for error messages."""
        self.source = source or CHATML_TEMPLATE
        self.label = label
        self.fallback = fallback
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        env.filters["tojson"] = _tojson
        try:
            self._template = env.from_string(self.source)
        except jinja2.exceptions.TemplateError as exc:
            raise ModelError(
                f"the chat template of {label} does not compile: {exc}", hint=fallback
            ) from exc
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: list[ChatMessage], *, add_generation_prompt: bool) -> str:
        try:
            return self._render(messages, add_generation_prompt)
        except jinja2.exceptions.TemplateError as exc:
            # Templates that insist on alternating roles (Gemma's, Mistral's)
            # refuse two user turns in a row, which a transcript has when tool
            # results go back as a user turn and the next message follows them
            # (a turn stopped by --max-steps). Such turns are joined, as one.
            merged = merge_repeated_roles(messages)
            if len(merged) < len(messages):
                with contextlib.suppress(jinja2.exceptions.TemplateError):
                    return self._render(merged, add_generation_prompt)
            raise ModelError(
                f"the chat template of {self.label} failed to render: {exc}",
                hint=self.fallback,
            ) from exc

    def _render(self, messages: list[ChatMessage], add_generation_prompt: bool) -> str:
        return str(
            self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        )


def merge_repeated_roles(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Consecutive user (or assistant) messages as one, their texts joined by a
    blank line."""
    merged: list[ChatMessage] = []
    for message in messages:
        role = message.get("role")
        if merged and role in ("user", "assistant") and merged[-1].get("role") == role:
            joined = f"{merged[-1].get('content') or ''}\n\n{message.get('content') or ''}"
            merged[-1] = {**merged[-1], "content": joined}
        else:
            merged.append(dict(message))
    return merged
