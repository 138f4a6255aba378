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

One exception, ``Trusted``: the tools section is ours, not the user's, yet it
sits in the system message's content; a family whose template would write
its own control tags there (Mistral's ``[AVAILABLE_TOOLS]``) gets those tags,
inside that exact section only, as markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from openclaw_daemon.model.chat_template import ChatMessage, ChatTemplate

# Private-use code points: never in a template, and checked anyway (below).
_OPEN, _CLOSE = "\ue000", "\ue001"
_SENTINEL = re.compile(f"{_OPEN}(\\d+){_CLOSE}")

Span = tuple[int, int, bool]  # start, end, is_markup


@dataclass(frozen=True)
class Trusted:
    """Text of ours inside a message's content, and its control tags."""

    text: str  # the tools section, as the head holds it
    tags: tuple[str, ...]  # the control tags that are markup inside it


def spans(
    template: ChatTemplate,
    messages: list[ChatMessage],
    rendered: str,
    *,
    add_generation_prompt: bool,
) -> list[Span]:
    """``rendered`` (the template's render of ``messages``) cut into markup and content."""
    exact = exact_spans(template, messages, rendered, add_generation_prompt=add_generation_prompt)
    if exact is not None:
        return exact
    return _by_search([str(m.get("content") or "") for m in messages], rendered)


def exact_spans(
    template: ChatTemplate,
    messages: list[ChatMessage],
    rendered: str,
    *,
    add_generation_prompt: bool,
) -> list[Span] | None:
    """The split from the sentinel render, or None when the template transforms
    content (trims it, strips a think block) so the split cannot be exact."""
    contents = [str(m.get("content") or "") for m in messages]
    masked: list[dict[str, Any]] = [
        {**m, "content": f"{_OPEN}{i}{_CLOSE}"} for i, m in enumerate(messages)
    ]
    try:
        skeleton = template.render(masked, add_generation_prompt=add_generation_prompt)
    except Exception:  # noqa: BLE001 - a template that inspects content: no exact split
        return None
    if any(_OPEN in c or _CLOSE in c for c in contents):
        return None
    return _from_skeleton(skeleton, contents, rendered)


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


def lift(pieces: list[Span], rendered: str, trusted: Trusted | None) -> list[Span]:
    """``pieces`` with the control tags inside each whole occurrence of
    ``trusted.text`` in content made markup (the rest stays content)."""
    if trusted is None or not trusted.text or not trusted.tags:
        return pieces
    out: list[Span] = []
    for start, end, is_markup in pieces:
        if is_markup:
            out.append((start, end, True))
            continue
        out += _split_content(start, end, rendered, trusted)
    return out


def _split_content(start: int, end: int, rendered: str, trusted: Trusted) -> list[Span]:
    tags = re.compile("|".join(re.escape(t) for t in sorted(trusted.tags, key=len, reverse=True)))
    out: list[Span] = []
    pos = start
    at = rendered.find(trusted.text, pos, end)
    while at >= 0:
        section_end = at + len(trusted.text)
        for match in tags.finditer(rendered, at, section_end):
            out += [(pos, match.start(), False), (match.start(), match.end(), True)]
            pos = match.end()
        at = rendered.find(trusted.text, section_end, end)
    out.append((pos, end, False))
    return [s for s in out if s[1] > s[0]]
