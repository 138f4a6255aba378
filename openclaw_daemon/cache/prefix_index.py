"""A radix tree over token ids: which cached entry shares the longest prefix with a prompt.

Each entry is a key (a cache blob's id) and the exact tokens its KV state holds.
A lookup walks the prompt down the tree; where it stops, every entry below that
point holds the matched prefix, so any of them can be restored and trimmed to
it. Pure Python, no llama_cpp: tested on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class _Node:
    edge: list[int] = field(default_factory=list)  # tokens from the parent to this node
    children: dict[int, _Node] = field(default_factory=dict)
    ending: set[str] = field(default_factory=set)  # entries whose tokens end here
    below: set[str] = field(default_factory=set)  # entries ending here or deeper


@dataclass(frozen=True)
class Match:
    """The longest shared prefix of a query with any entry.

    ``keys`` are the entries that hold all ``length`` matched tokens; empty when
    nothing matched.
    """

    length: int
    keys: frozenset[str]


def _common(a: Sequence[int], a_start: int, b: Sequence[int]) -> int:
    """How many of ``b``'s leading tokens equal ``a[a_start:]``'s."""
    count = 0
    limit = min(len(a) - a_start, len(b))
    while count < limit and a[a_start + count] == b[count]:
        count += 1
    return count


class PrefixIndex:
    def __init__(self) -> None:
        self._root = _Node()
        self._tokens: dict[str, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, key: str) -> bool:
        return key in self._tokens

    def tokens(self, key: str) -> tuple[int, ...]:
        return self._tokens[key]

    def insert(self, key: str, tokens: Sequence[int]) -> None:
        if key in self._tokens:
            self.remove(key)
        self._tokens[key] = tuple(tokens)
        node, pos = self._root, 0
        node.below.add(key)
        while pos < len(tokens):
            child = node.children.get(tokens[pos])
            if child is None:
                leaf = _Node(edge=list(tokens[pos:]), ending={key}, below={key})
                node.children[tokens[pos]] = leaf
                return
            shared = _common(tokens, pos, child.edge)
            if shared < len(child.edge):
                child = self._split(node, child, shared)
            child.below.add(key)
            node, pos = child, pos + shared
        node.ending.add(key)

    def _split(self, parent: _Node, child: _Node, at: int) -> _Node:
        """Cut ``child``'s edge after ``at`` tokens; returns the new middle node."""
        middle = _Node(edge=child.edge[:at], below=set(child.below))
        child.edge = child.edge[at:]
        middle.children[child.edge[0]] = child
        parent.children[middle.edge[0]] = middle
        return middle

    def remove(self, key: str) -> None:
        tokens = self._tokens.pop(key, None)
        if tokens is None:
            return
        path = [self._root]
        node, pos = self._root, 0
        node.below.discard(key)
        while pos < len(tokens):
            node = node.children[tokens[pos]]
            node.below.discard(key)
            path.append(node)
            pos += len(node.edge)
        node.ending.discard(key)
        # Prune emptied nodes from the leaf up.
        for parent, child in zip(reversed(path[:-1]), reversed(path[1:]), strict=True):
            if not child.below:
                del parent.children[child.edge[0]]

    def longest_match(self, tokens: Sequence[int]) -> Match:
        node, pos = self._root, 0
        while pos < len(tokens):
            child = node.children.get(tokens[pos])
            if child is None:
                break
            shared = _common(tokens, pos, child.edge)
            pos += shared
            node = child
            if shared < len(child.edge):
                break
        if pos == 0:
            return Match(0, frozenset())
        return Match(pos, frozenset(node.below))

    def prefixes_of(self, tokens: Sequence[int]) -> list[str]:
        """Entries whose tokens are a prefix of ``tokens`` (including equal)."""
        found = list(self._root.ending)
        node, pos = self._root, 0
        while pos < len(tokens):
            child = node.children.get(tokens[pos])
            if child is None or _common(tokens, pos, child.edge) < len(child.edge):
                break
            node, pos = child, pos + len(child.edge)
            found.extend(node.ending)
        return found
