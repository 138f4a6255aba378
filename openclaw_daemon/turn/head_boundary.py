"""Where a prompt's head ends, in tokens: the point every session with the same
system prompt and tools shares, so a checkpoint parked there serves them all.

Needed only for memory that cannot be cut back freely (a sliding window,
recurrent layers): a full-attention state of any longer session is trimmed to
the head instead. The head is what the renders of the system message followed
by two different user messages share: the system message as ChatML writes it
(plus the user turn's opening), or, for a template that folds the system
prompt into the first user turn as Gemma's does, that turn up to the user's
words. Its common prefix with the prompt is the boundary.
"""

from __future__ import annotations

from openclaw_daemon.model.base import FULL_MEMORY, ModelEngine, common_prefix
from openclaw_daemon.model.tape import PromptPlan, TapeBuilder


class HeadBoundary:
    def __init__(self, engine: ModelEngine, builder: TapeBuilder) -> None:
        self.engine = engine
        self.builder = builder
        self._head: tuple[str, list[int]] = ("", [])  # the last head seen: turns repeat it

    def of(self, plan: PromptPlan) -> int:
        """The head's length in ``plan``'s tokens; 0 when none is needed or found."""
        if self.engine.info.memory == FULL_MEMORY or not plan.messages:
            return 0
        head = plan.messages[0]
        if head.get("role") != "system":
            return 0
        text = str(head.get("content", ""))
        if self._head[0] != text or not self._head[1]:
            one, other = (
                self.builder.from_messages([head, {"role": "user", "content": words}]).tokens
                for words in ("x", "?")
            )
            self._head = (text, one[: common_prefix(one, other)])
        return common_prefix(self._head[1], plan.tokens)
