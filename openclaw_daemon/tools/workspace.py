"""The file tools: read, write, edit and search, confined to the turn's workspace.

The workspace is the directory the CLI ran in. Every path is walked component
by component from an opened descriptor of the workspace root, each directory
opened relative to the one before with ``O_NOFOLLOW``; a symlink met on the
way is read (``readlink``) and its target walked the same way, so a link may
point anywhere inside the workspace but never out of it. Files are opened
relative to their directory's descriptor with ``O_NOFOLLOW``, checked with
``fstat`` and read from that descriptor. A directory swapped for a symlink
between two steps therefore cannot redirect the open: what is checked is
what is opened. Writes go to a fresh ``O_CREAT|O_EXCL|O_NOFOLLOW`` temp file
beside the target and are renamed into place, relative to the same
directory descriptor.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openclaw_daemon.wire.errors import ToolError

MAX_READ_BYTES = 1 << 20
MAX_SEARCH_FILES = 2000
MAX_SEARCH_MATCHES = 100
MAX_PATH_CHARS = 4096
_MAX_SYMLINKS = 40  # as the kernel's own limit for one lookup
_SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted in the workspace must not hang the tool.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _outside(raw: str, workspace: Path) -> ToolError:
    return ToolError(f"{raw!r} is outside the workspace {workspace}; refused")


def check_path(raw: Any) -> str:
    """``raw`` if it is a usable path string; a ToolError naming the problem if not."""
    if not isinstance(raw, str) or not raw:
        raise ToolError("a path is required")
    if "\0" in raw:
        raise ToolError("a path may not contain NUL bytes")
    if len(raw) > MAX_PATH_CHARS:
        raise ToolError(f"a path may have at most {MAX_PATH_CHARS} characters")
    return raw


def _relative_parts(workspace: Path, raw: str, shown: str) -> list[str]:
    """The components of ``raw`` below the workspace root (absolute paths must be inside).

    An absolute path is compared as text with the workspace as given and as
    resolved; its remaining components are then walked like any other.
    """
    if os.path.isabs(raw):
        for root in dict.fromkeys((str(workspace), os.path.realpath(workspace))):
            if raw == root or raw.startswith(root.rstrip("/") + "/"):
                raw = raw[len(root) :]
                break
        else:
            raise _outside(shown, workspace)
    return [part for part in raw.split("/") if part not in ("", ".")]


@dataclass
class _Place:
    """Where a path led: its directory's descriptor and the final name (None: the dir itself)."""

    dir_fd: int
    name: str | None
    parts: list[str]  # workspace-relative components of the directory

    @property
    def relative(self) -> str:
        return "/".join([*self.parts, *([self.name] if self.name else [])]) or "."


class _Walker:
    """Walks workspace paths from the root descriptor without following symlinks out."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.root_fd = os.open(workspace, _DIR_FLAGS & ~os.O_NOFOLLOW)
        self._fds: list[int] = []

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        os.close(self.root_fd)

    def walk(self, raw: str, *, want_dir: bool = False, create_dirs: bool = False) -> _Place:
        """Resolve ``raw`` beneath the root; the last component is left unopened unless
        ``want_dir``. Symlinks (also a final one) are expanded, never followed blindly."""
        pending = _relative_parts(self.workspace, raw, raw)
        chain: list[tuple[str, int]] = []  # (name, fd) of each directory below the root
        links = created = 0

        def current() -> int:
            return chain[-1][1] if chain else self.root_fd

        while pending:
            part = pending.pop(0)
            if part == "..":
                if not chain:
                    raise _outside(raw, self.workspace)
                chain.pop()
                continue
            if not pending and not want_dir:
                try:
                    info = os.stat(part, dir_fd=current(), follow_symlinks=False)
                except FileNotFoundError:
                    return _Place(current(), part, [name for name, _ in chain])
                if not stat.S_ISLNK(info.st_mode):
                    if stat.S_ISDIR(info.st_mode):
                        raise ToolError(f"{raw!r} is a directory")
                    return _Place(current(), part, [name for name, _ in chain])
            try:
                fd = os.open(part, _DIR_FLAGS, dir_fd=current())
            except FileNotFoundError:
                created += 1
                if not create_dirs or created > 64:
                    raise ToolError(f"no such file or directory: {raw}") from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=current())
                pending.insert(0, part)
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                try:
                    target = os.readlink(part, dir_fd=current())
                except OSError:  # not a symlink: a file where a directory should be
                    raise ToolError(f"{raw!r}: {part} is not a directory") from None
                links += 1
                if links > _MAX_SYMLINKS:
                    raise ToolError(f"{raw!r}: too many levels of symbolic links") from None
                if os.path.isabs(target):
                    chain.clear()  # walked again from the root (fds stay open until close)
                pending[:0] = _relative_parts(self.workspace, target, raw)
                continue
            self._fds.append(fd)
            chain.append((part, fd))
        return _Place(current(), None, [name for name, _ in chain])


@contextlib.contextmanager
def _walker(workspace: Path) -> Iterator[_Walker]:
    walker = _Walker(workspace)
    try:
        yield walker
    finally:
        walker.close()


def _read_fd(fd: int, shown: str) -> str:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ToolError(f"{shown} is not a regular file")
    if info.st_size > MAX_READ_BYTES:
        raise ToolError(f"{shown} is larger than {MAX_READ_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_READ_BYTES:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    data = b"".join(chunks)
    if len(data) > MAX_READ_BYTES:
        raise ToolError(f"{shown} is larger than {MAX_READ_BYTES} bytes")
    if b"\0" in data[:8192]:
        raise ToolError(f"{shown} is a binary file")
    return data.decode("utf-8", errors="replace")


def _open_read(place: _Place, shown: str) -> str:
    if place.name is None:
        raise ToolError(f"{shown!r} is a directory")
    try:
        fd = os.open(place.name, _READ_FLAGS, dir_fd=place.dir_fd)
    except FileNotFoundError:
        raise ToolError(f"no such file: {shown}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a symlink after the walk checked it
            raise ToolError(f"{shown!r} changed while being opened; refused") from None
        raise ToolError(f"cannot open {shown}: {exc.strerror}") from None
    try:
        return _read_fd(fd, shown)
    finally:
        os.close(fd)


def _text(workspace: Path, raw: Any) -> tuple[str, str]:
    """(content, workspace-relative path) of the file ``raw`` names."""
    path = check_path(raw)
    with _walker(workspace) as walker:
        place = walker.walk(path)
        return _open_read(place, path), place.relative


def _line_number(value: Any, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError(f"{name} must be a whole number")
    if isinstance(value, float) and not value.is_integer():  # also NaN and inf
        raise ToolError(f"{name} must be a whole number, not {value!r}")
    number = int(value)
    if not minimum <= number <= 10**9:
        raise ToolError(f"{name} must be between {minimum} and 1000000000, not {number}")
    return number


def read(workspace: Path, args: dict[str, Any]) -> str:
    offset = _line_number(args.get("offset"), "offset", 1)
    limit = _line_number(args.get("limit"), "limit", 0)
    text, _ = _text(workspace, args.get("path"))
    if offset is None and limit is None:
        return text
    lines = text.splitlines(keepends=True)
    start = (offset or 1) - 1
    end = start + limit if limit is not None else len(lines)
    return "".join(lines[start:end])


def _write_at(place: _Place, content: str) -> None:
    """Replace ``place`` atomically through a fresh temp file in the same directory."""
    assert place.name is not None
    mode = 0o644
    with contextlib.suppress(FileNotFoundError):
        mode = stat.S_IMODE(os.stat(place.name, dir_fd=place.dir_fd, follow_symlinks=False).st_mode)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(8):
        tmp = f".{place.name[:200]}.{secrets.token_hex(6)}.openclaw.tmp"
        try:
            fd = os.open(tmp, flags, 0o600, dir_fd=place.dir_fd)
            break
        except FileExistsError:  # a planted name (or a symlink): pick another
            continue
    else:
        raise ToolError("could not create a temp file beside the target")
    try:
        try:
            os.fchmod(fd, mode)
            data = content.encode("utf-8")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, place.name, src_dir_fd=place.dir_fd, dst_dir_fd=place.dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=place.dir_fd)
        raise


def write(workspace: Path, args: dict[str, Any]) -> str:
    path = check_path(args.get("path"))
    content = args.get("content")
    if not isinstance(content, str):
        raise ToolError("content must be a string")
    with _walker(workspace) as walker:
        place = walker.walk(path, create_dirs=True)
        if place.name is None:
            raise ToolError(f"{path!r} is a directory")
        _write_at(place, content)
        return f"wrote {len(content.encode())} bytes to {place.relative}"


def edit(workspace: Path, args: dict[str, Any]) -> str:
    path = check_path(args.get("path"))
    old, new = args.get("old"), args.get("new")
    if not isinstance(old, str) or not old or not isinstance(new, str):
        raise ToolError("edit needs a non-empty 'old' string and a 'new' string")
    with _walker(workspace) as walker:
        place = walker.walk(path)
        text = _open_read(place, path)
        count = text.count(old)
        if count != 1:
            raise ToolError(
                f"'old' must occur exactly once in {place.name}; it occurs {count} times"
            )
        _write_at(place, text.replace(old, new))
        return f"replaced 1 occurrence in {place.relative}"


def search(workspace: Path, args: dict[str, Any]) -> str:
    query = args.get("query")
    if not isinstance(query, str) or not query:
        raise ToolError("a non-empty query is required")
    if "\0" in query:
        raise ToolError("a query may not contain NUL bytes")
    sub = args.get("path")
    sub = check_path(sub) if sub not in (None, "") else "."
    matches: list[str] = []
    scanned = 0
    needle = query.lower()
    with _walker(workspace) as walker:
        place = walker.walk(sub, want_dir=True)
        prefix = place.relative
        # fwalk opens each directory relative to its parent and never follows
        # directory symlinks; files are opened with O_NOFOLLOW, so a symlinked
        # file (in or out of the workspace) is skipped rather than read.
        for folder, dirs, files, dir_fd in os.fwalk(".", dir_fd=place.dir_fd):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
            for name in sorted(files):
                scanned += 1
                if scanned > MAX_SEARCH_FILES or len(matches) >= MAX_SEARCH_MATCHES:
                    break
                shown = os.path.normpath(os.path.join(prefix, folder, name))
                try:
                    text = _open_read(_Place(dir_fd, name, []), shown)
                except (ToolError, OSError):
                    continue
                for number, line in enumerate(text.splitlines(), 1):
                    if needle in line.lower():
                        matches.append(f"{shown}:{number}: {line.strip()}")
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
