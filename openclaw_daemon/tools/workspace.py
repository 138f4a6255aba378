"""The file tools: read, write, edit and search, confined to the turn's workspace.

The workspace is the directory the CLI ran in. A path is resolved (symlinks
included) before use; anything that lands outside the workspace is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from openclaw_daemon.errors import ToolError

MAX_READ_BYTES = 1 << 20
MAX_SEARCH_FILES = 2000
MAX_SEARCH_MATCHES = 100
_SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}


def resolve(workspace: Path, raw: Any) -> Path:
    if not isinstance(raw, str) or not raw:
        raise ToolError("a path is required")
    path = (workspace / raw).resolve()
    if path != workspace and workspace not in path.parents:
        raise ToolError(f"{raw!r} is outside the workspace {workspace}; refused")
    return path


def _text(path: Path) -> str:
    if not path.is_file():
        raise ToolError(f"no such file: {path.name}")
    if path.stat().st_size > MAX_READ_BYTES:
        raise ToolError(f"{path.name} is larger than {MAX_READ_BYTES} bytes")
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        raise ToolError(f"{path.name} is a binary file")
    return data.decode("utf-8", errors="replace")


def read(workspace: Path, args: dict[str, Any]) -> str:
    text = _text(resolve(workspace, args.get("path")))
    offset, limit = args.get("offset"), args.get("limit")
    if offset is None and limit is None:
        return text
    lines = text.splitlines(keepends=True)
    start = max(int(offset or 1), 1) - 1
    end = start + int(limit) if limit is not None else len(lines)
    return "".join(lines[start:end])


def write(workspace: Path, args: dict[str, Any]) -> str:
    path = resolve(workspace, args.get("path"))
    content = args.get("content")
    if not isinstance(content, str):
        raise ToolError("content must be a string")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.openclaw.tmp")
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, path)
    return f"wrote {len(content.encode())} bytes to {path.relative_to(workspace)}"


def edit(workspace: Path, args: dict[str, Any]) -> str:
    path = resolve(workspace, args.get("path"))
    old, new = args.get("old"), args.get("new")
    if not isinstance(old, str) or not old or not isinstance(new, str):
        raise ToolError("edit needs a non-empty 'old' string and a 'new' string")
    text = _text(path)
    count = text.count(old)
    if count != 1:
        raise ToolError(f"'old' must occur exactly once in {path.name}; it occurs {count} times")
    write(workspace, {"path": str(path.relative_to(workspace)), "content": text.replace(old, new)})
    return f"replaced 1 occurrence in {path.relative_to(workspace)}"


def search(workspace: Path, args: dict[str, Any]) -> str:
    query = args.get("query")
    if not isinstance(query, str) or not query:
        raise ToolError("a non-empty query is required")
    root = resolve(workspace, args.get("path") or ".")
    matches: list[str] = []
    scanned = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            scanned += 1
            if scanned > MAX_SEARCH_FILES or len(matches) >= MAX_SEARCH_MATCHES:
                break
            path = Path(folder) / name
            try:
                text = _text(path)
            except (ToolError, OSError):
                continue
            for number, line in enumerate(text.splitlines(), 1):
                if query.lower() in line.lower():
                    matches.append(f"{path.relative_to(workspace)}:{number}: {line.strip()}")
                    if len(matches) >= MAX_SEARCH_MATCHES:
                        break
    return "\n".join(matches) if matches else f"no matches for {query!r}"


def list_files(workspace: Path, limit: int) -> list[str]:
    """Up to ``limit`` + 1 workspace-relative file paths (skipping caches and VCS dirs)."""
    found: list[str] = []
    for folder, dirs, files in os.walk(workspace):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            found.append(str((Path(folder) / name).relative_to(workspace)))
            if len(found) > limit:
                return found
    return found
