"""The prefix index: longest shared prefix across entries, splits, removal."""

from __future__ import annotations

import random

from openclaw_daemon.cache.prefix_index import PrefixIndex


def brute_force(entries: dict[str, list[int]], query: list[int]) -> tuple[int, set[str]]:
    best, keys = 0, set()
    for key, tokens in entries.items():
        n = 0
        while n < min(len(tokens), len(query)) and tokens[n] == query[n]:
            n += 1
        if n > best:
            best, keys = n, {key}
        elif n == best and n > 0:
            keys.add(key)
    return best, keys


def test_shared_head_then_divergence() -> None:
    index = PrefixIndex()
    index.insert("a", [1, 2, 3, 4, 5])
    index.insert("b", [1, 2, 3, 9, 9, 9])
    assert index.longest_match([1, 2, 3, 4, 5, 6]).length == 5
    assert index.longest_match([1, 2, 3, 4, 5, 6]).keys == {"a"}
    assert index.longest_match([1, 2, 3, 7]).length == 3
    assert index.longest_match([1, 2, 3, 7]).keys == {"a", "b"}
    assert index.longest_match([8]).length == 0
    assert index.longest_match([8]).keys == frozenset()


def test_prefixes_of_and_removal_prune_the_tree() -> None:
    index = PrefixIndex()
    index.insert("head", [1, 2])
    index.insert("long", [1, 2, 3, 4])
    index.insert("other", [1, 5])
    assert sorted(index.prefixes_of([1, 2, 3, 4, 5])) == ["head", "long"]
    index.remove("long")
    assert index.longest_match([1, 2, 3, 4]).length == 2
    assert index.longest_match([1, 2, 3, 4]).keys == {"head"}
    index.remove("head")
    index.remove("other")
    assert len(index) == 0
    assert index.longest_match([1, 2]).length == 0


def test_reinserting_a_key_replaces_its_tokens() -> None:
    index = PrefixIndex()
    index.insert("s", [1, 2, 3])
    index.insert("s", [7, 8])
    assert index.longest_match([1, 2, 3]).length == 0
    assert index.longest_match([7, 8, 9]).length == 2


def test_matches_brute_force_on_random_entries() -> None:
    rng = random.Random(3)
    index = PrefixIndex()
    entries: dict[str, list[int]] = {}
    for step in range(300):
        key = f"k{rng.randrange(40)}"
        if rng.random() < 0.3 and key in entries:
            index.remove(key)
            del entries[key]
        else:
            base = entries[rng.choice(sorted(entries))][:] if entries and rng.random() < 0.7 else []
            tokens = base[: rng.randrange(len(base) + 1)] + [
                rng.randrange(4) for _ in range(rng.randrange(1, 8))
            ]
            index.insert(key, tokens)
            entries[key] = tokens
        query = [rng.randrange(4) for _ in range(rng.randrange(1, 12))]
        if entries and rng.random() < 0.5:
            query = entries[rng.choice(sorted(entries))][: rng.randrange(1, 20)] + query
        match = index.longest_match(query)
        assert (match.length, set(match.keys)) == brute_force(entries, query), step
        expected_prefixes = {k for k, t in entries.items() if query[: len(t)] == t}
        assert set(index.prefixes_of(query)) == expected_prefixes
