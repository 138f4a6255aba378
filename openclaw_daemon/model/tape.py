"""A session's token tape: the exact token ids its KV cache holds.

Re-tokenizing generated text does not give back the ids the model produced,
and that alone would break the cached prefix at every assistant message. So a
session keeps its tape, and each turn appends to it: the rendered delta of the
new user message, the generated ids, then the template's trailer after the
assistant message. The tape's ``text`` always equals the template's full render
of ``messages``; ``tests/e2e/test_tape_template.py`` proves it. Only the template's markup is
tokenized with special tokens parsed; message content is plain text
(``markup``), but for the tools section's control tags (``markup.Trusted``).
Generated ids are matched against their text with the tool-call format's
control tags spelled (``spelled``), as the decoder streamed them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openclaw_daemon.model import markup
from openclaw_daemon.model.chat_template import ChatMessage, ChatTemplate
from openclaw_daemon.model.text_stream import Tokenizer, spell


@dataclass
class TokenTape:
    """Tokens, the text they spell, and the messages that text renders."""

    tokens: list[int] = field(default_factory=list)
    text: str = ""
    messages: list[ChatMessage] = field(default_factory=list)
    last_entry_id: str | None = None
    # How often appending fell back to a full re-tokenization (a cache risk).
    rebuilds: int = 0


@dataclass(frozen=True)
class PromptPlan:
    """The prompt for one model call, as tape tokens plus the new fragment."""

    tokens: list[int]
    text: str
    messages: list[ChatMessage]
    appended: int  # tokens added by this turn's fragment
    rebuilt: bool  # True if the template was not prefix-stable


class TapeBuilder:
    """Extends tapes with a chat template and a tokenizer."""

    def __init__(
        self,
        template: ChatTemplate,
        tokenizer: Tokenizer,
        *,
        add_bos: bool,
        trusted: markup.Trusted | None = None,
        spelled: frozenset[int] = frozenset(),
    ) -> None:
        self.template = template
        self.tokenizer = tokenizer
        self.add_bos = add_bos
        self.trusted = trusted
        self.spelled = spelled

    def _tokenize_rendered(
        self,
        text: str,
        messages: list[ChatMessage],
        *,
        add_generation_prompt: bool,
        start: int = 0,
    ) -> list[int]:
        """Ids of ``text[start:]``, where ``text`` renders ``messages``: markup
        with special tokens parsed, content as plain text."""
        bos_in_text = bool(self.template.bos_token) and text.startswith(self.template.bos_token)
        bos = start == 0 and self.add_bos and not bos_in_text
        ids: list[int] = []
        pieces = markup.spans(
            self.template, messages, text, add_generation_prompt=add_generation_prompt
        )
        pieces = markup.lift(pieces, text, self.trusted)
        for begin, end, special in pieces:
            begin = max(begin, start)
            if begin < end:
                ids += self.tokenizer.tokenize(text[begin:end], add_bos=bos, special=special)
                bos = False
        return ids

    def from_messages(self, messages: list[ChatMessage]) -> TokenTape:
        """A tape for a transcript loaded from disk (a cold cache anyway)."""
        text = self.template.render(messages, add_generation_prompt=False) if messages else ""
        tokens = (
            self._tokenize_rendered(text, messages, add_generation_prompt=False) if text else []
        )
        return TokenTape(tokens=tokens, text=text, messages=list(messages))

    def render_turn(
        self, tape: TokenTape, new_messages: list[ChatMessage]
    ) -> tuple[list[ChatMessage], str]:
        """The messages and full prompt text after appending ``new_messages``."""
        messages = tape.messages + new_messages
        return messages, self.template.render(messages, add_generation_prompt=True)

    def tokenize_turn(self, tape: TokenTape, messages: list[ChatMessage], full: str) -> PromptPlan:
        """Tokens for ``full``: the tape plus only the new fragment, when the
        template is prefix-stable (it almost always is)."""
        if tape.text and full.startswith(tape.text):
            delta = self._tokenize_rendered(
                full, messages, add_generation_prompt=True, start=len(tape.text)
            )
            return PromptPlan(tape.tokens + delta, full, messages, len(delta), False)
        tokens = self._tokenize_rendered(full, messages, add_generation_prompt=True)
        return PromptPlan(tokens, full, messages, len(tokens), bool(tape.text))

    def plan_turn(self, tape: TokenTape, new_messages: list[ChatMessage]) -> PromptPlan:
        messages, full = self.render_turn(tape, new_messages)
        return self.tokenize_turn(tape, messages, full)

    def commit_reply(self, plan: PromptPlan, generated: list[int], content: str) -> TokenTape:
        """The tape after the model answered ``content`` with ids ``generated``.

        ``generated`` excludes the end-of-turn token the model sampled (it was
        never evaluated, so the KV cache does not hold it).
        """
        messages = plan.messages + [{"role": "assistant", "content": content}]
        rendered = self.template.render(messages, add_generation_prompt=False)
        kept, kept_text = self._longest_matching_prefix(generated, content)
        head = plan.text + kept_text
        if rendered.startswith(plan.text) and rendered.startswith(head):
            tail = self._tokenize_rendered(
                rendered, messages, add_generation_prompt=False, start=len(head)
            )
            return TokenTape(plan.tokens + kept + tail, rendered, messages)
        # The template rewrites assistant text (e.g. trims it): fall back.
        tape = self.from_messages(messages)
        tape.rebuilds = 1
        return tape

    def _longest_matching_prefix(self, generated: list[int], content: str) -> tuple[list[int], str]:
        """The longest run of generated ids whose text is a prefix of ``content``.

        A stop string can end in the middle of a token; ids after the cut are
        dropped and their surviving text is re-tokenized instead.
        """
        for count in range(len(generated), -1, -1):
            ids = generated[:count]
            text = spell(self.tokenizer, ids, self.spelled).decode("utf-8", errors="replace")
            if content.startswith(text):
                return generated[:count], text
        return [], ""
