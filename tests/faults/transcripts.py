"""Checks on stored transcripts after a fault: every line parses, and each
committed turn is there exactly once.

Reads the JSONL files directly (the format the daemon writes); it must not
import the daemon's store, so a bug there cannot hide a bug here.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TranscriptCheck:
    """What one session's transcript says against what its clients saw."""

    corrupt_lines: int
    lost: list[str]
    duplicated: list[str]
    user_texts: list[str]


def parse_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(entries, lines that are not a JSON object). A missing file is empty."""
    entries: list[dict[str, Any]] = []
    bad = 0
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        return [], 0
    except UnicodeDecodeError:
        return [], 1
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            bad += 1
    return entries, bad


def corrupt_lines_in(sessions_dir: Path) -> dict[str, int]:
    """Unparseable lines per transcript file (only files that have some)."""
    found = {}
    for path in sorted(sessions_dir.glob("*.jsonl")):
        _, bad = parse_lines(path)
        if bad:
            found[path.name] = bad
    return found


def user_texts(entries: list[dict[str, Any]]) -> list[str]:
    texts = []
    for entry in entries:
        message = entry.get("message") if entry.get("type") == "message" else None
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.append("".join(b.get("text", "") for b in content if isinstance(b, dict)))
    return texts


def check_session(path: Path, committed: list[str]) -> TranscriptCheck:
    """``committed``: messages whose turn a client saw finish, each must be
    there once; a turn cut by a kill may be there once or not at all."""
    entries, bad = parse_lines(path)
    texts = user_texts(entries)
    counts = Counter(texts)
    lost = [m for m in committed if counts[m] == 0]
    # Every message the suite sends is unique, so any repeat is a duplicated turn.
    duplicated = [m for m, n in counts.items() if n > 1]
    return TranscriptCheck(bad, lost, duplicated, texts)
