"""Which parts of a rendered prompt are the template's markup, and which are content.

Only the chat template's own markup (``<|im_start|>``, role names, the
trailer after each message) may be tokenized with special tokens parsed.
Message content (user text, the ``-s`` system prompt, tool results, generated
replies) is tokenized as plain text, so a file that spells ``<|im_end|>`` stays
those characters and cannot close a turn or open a forged one.

The split renders the messages once more with each content replaced by a
sentinel; the text between sentinels is markup. If the template transforms
content (so the sentinel render does not reproduce the real one), each
content is found in order in the real render instead; a gap that should hold
a content not found is treated as content: plain text is the safe default.
"""

from __future__ import annotations

import re
from typing import Any

from openclaw_daemon.model.chat_template import ChatMessage, ChatTemplate

# Private-use code points: never in a template, and checked anyway (below).
_OPEN, _CLOSE = "\ue000", "\ue001"
_SENTINEL = re.compile(f"{_OPEN}(\\d+){_CLOSE}")

Span = tuple[int, int, bool]  # start, end, is_markup


def spans(
    template: ChatTemplate,
    messages: list[ChatMessage],
    rendered: str,
    *,
    add_generation_prompt: bool,
) -> list[Span]:
    """``rendered`` (the template's render of ``messages``) cut into markup and content."""
    contents = [str(m.get("content") or "") for m in messages]
    masked: list[dict[str, Any]] = [
        {**m, "content": f"{_OPEN}{i}{_CLOSE}"} for i, m in enumerate(messages)
    ]
    try:
        skeleton = template.render(masked, add_generation_prompt=add_generation_prompt)
    except Exception:  # noqa: BLE001 - a template that inspects content: use the fallback
        skeleton = None
    if skeleton is not None and not any(_OPEN in c or _CLOSE in c for c in contents):
        result = _from_skeleton(skeleton, contents, rendered)
        if result is not None:
            return result
    return _by_search(contents, rendered)


def _from_skeleton(skeleton: str, contents: list[str], rendered: str) -> list[Span] | None:
    out: list[Span] = []
    pos = 0  # in ``rendered``
    last = 0  # in ``skeleton``
    for match in _SENTINEL.finditer(skeleton):
        markup = skeleton[last : match.start()]
        index = int(match.group(1))
        if index >= len(contents):
            return None
        content = contents[index]
        out.append((pos, pos + len(markup), True))
        pos += len(markup)
        out.append((pos, pos + len(content), False))
        pos += len(content)
        last = match.end()
    tail = skeleton[last:]
    out.append((pos, pos + len(tail), True))
    pos += len(tail)
    if pos != len(rendered) or _spell(skeleton, contents) != rendered:
        return None
    return [s for s in out if s[1] > s[0]]


def _spell(skeleton: str, contents: list[str]) -> str:
    """The text the skeleton and contents spell (must equal the real render)."""
    return _SENTINEL.sub(lambda m: contents[int(m.group(1))], skeleton)


def _by_search(contents: list[str], rendered: str) -> list[Span]:
    out: list[Span] = []
    pos = 0
    lost = False  # a content the template changed lies somewhere in the next gap
    for content in contents:
        if not content:
            continue
        at = rendered.find(content, pos)
        if at < 0:
            lost = True
            continue
        out.append((pos, at, not lost))
        out.append((at, at + len(content), False))
        pos, lost = at + len(content), False
    out.append((pos, len(rendered), not lost))
    return [s for s in out if s[1] > s[0]]
