"""The on-disk format of a KV cache blob (the L3 tier), and nothing else.

A file is::

    b"OCKV" | u32 format version | u32 header length | header JSON
    | n_tokens x int32 token ids | the engine's state blob

The header carries the model fingerprint, the token count, the blob size, the
shortest length the state can be cut back to (``trimFloor``: 0 for full
attention; see ``base.KVControl.trim_floor``) and a crc32 over tokens + blob.
A file that is truncated, corrupt, or made for another model, context size or
KV type fails ``read_blob``/``read_header`` with ``CacheCorruptError`` and is
never handed to llama.cpp. So does anything in the cache dir that is not a
regular file: a FIFO, device or symlink is refused (``_open_regular``, which
opens without blocking), so it can neither block the daemon nor point it at
someone else's file. A header that is consistent but lies about the cells its
blob holds passes here; the engine checks the restored state against the header's token count.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import struct
import zlib
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from openclaw_daemon.wire.errors import CacheCorruptError

MAGIC = b"OCKV"
FORMAT_VERSION = 1
SUFFIX = ".kvc"
_PREAMBLE = struct.Struct("<4sII")
_MAX_HEADER = 1 << 20
_MAX_TOKENS = 1 << 24
_MAX_BLOB = 1 << 40
# Tokens per block of the key's hash chain; a key names an exact token list.
BLOCK_TOKENS = 256


def fingerprint_id(fingerprint: dict[str, Any]) -> str:
    raw = json.dumps(fingerprint, sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def chain_key(fingerprint: str, tokens: list[int] | tuple[int, ...]) -> str:
    """A hash chain over token blocks: equal keys mean equal fingerprint and tokens."""
    digest = hashlib.sha256(fingerprint.encode()).digest()
    for start in range(0, len(tokens), BLOCK_TOKENS):
        block = array("i", tokens[start : start + BLOCK_TOKENS]).tobytes()
        digest = hashlib.sha256(digest + block).digest()
    return hashlib.sha256(digest + str(len(tokens)).encode()).hexdigest()[:32]


def _tokens_bytes(tokens: list[int] | tuple[int, ...]) -> bytes:
    return array("i", tokens).tobytes()


Blob = bytes | memoryview  # a KV state: immutable bytes from disk, or a snapshot buffer
# Writes go in chunks with a ``pause`` hook between them, so a turn that
# arrives mid-write gets the CPU back within one chunk.
CHUNK_BYTES = 8 << 20


def _chunks(blob: Blob, pause: Callable[[], None]) -> Any:
    view = memoryview(blob).cast("B")
    for start in range(0, len(view), CHUNK_BYTES):
        pause()
        yield view[start : start + CHUNK_BYTES]


def write_blob(
    path: Path,
    fingerprint: dict[str, Any],
    tokens: tuple[int, ...],
    blob: Blob,
    *,
    trim_floor: int = 0,
    pause: Callable[[], None] = lambda: None,
) -> int:
    """Write atomically (temp file, then rename); returns the file's size."""
    token_bytes = _tokens_bytes(tokens)
    crc = zlib.crc32(token_bytes)
    for chunk in _chunks(blob, pause):
        crc = zlib.crc32(chunk, crc)
    size = blob.nbytes if isinstance(blob, memoryview) else len(blob)
    header = json.dumps(
        {
            "fingerprint": fingerprint,
            "nTokens": len(tokens),
            "blobBytes": size,
            "trimFloor": trim_floor,
            "crc32": crc,
        }
    ).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            out.write(_PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header)))
            out.write(header)
            out.write(token_bytes)
            for chunk in _chunks(blob, pause):
                out.write(chunk)
        os.replace(tmp, path)
    except BaseException:  # a full disk, or an abandoned write: leave no partial file
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return _PREAMBLE.size + len(header) + len(token_bytes) + size


def _open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file, never following a symlink.

    ``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting for a
    writer (a plain ``open()`` hung daemon start-up); ``O_NOFOLLOW`` refuses a
    symlink. The type is then checked on the open descriptor, not the name.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CacheCorruptError(
                f"cache file {path.name} is not a regular file (a symlink)"
            ) from exc
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise CacheCorruptError(f"cache file {path.name} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_exact(handle: BinaryIO, size: int, path: Path) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise CacheCorruptError(f"cache file {path.name} is truncated")
    return data


def _read_header(
    handle: BinaryIO, path: Path, fingerprint: dict[str, Any]
) -> tuple[dict[str, Any], tuple[int, ...]]:
    magic, version, header_len = _PREAMBLE.unpack(_read_exact(handle, _PREAMBLE.size, path))
    if magic != MAGIC or version != FORMAT_VERSION or header_len > _MAX_HEADER:
        raise CacheCorruptError(f"cache file {path.name} has a bad header")
    try:
        header = json.loads(_read_exact(handle, header_len, path))
        n_tokens, blob_bytes = header["nTokens"], header["blobBytes"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheCorruptError(f"cache file {path.name} has a bad header") from exc
    if not (
        isinstance(n_tokens, int)
        and isinstance(blob_bytes, int)
        and isinstance(header.get("crc32"), int)
        and 0 <= n_tokens <= _MAX_TOKENS
        and 0 <= blob_bytes <= _MAX_BLOB
        and isinstance(header.setdefault("trimFloor", 0), int)
        and 0 <= header["trimFloor"] <= n_tokens
    ):
        raise CacheCorruptError(f"cache file {path.name} has a bad header")
    if header.get("fingerprint") != fingerprint:
        raise CacheCorruptError(
            f"cache file {path.name} was made for another model, context size or KV type"
        )
    expected = _PREAMBLE.size + header_len + 4 * n_tokens + blob_bytes
    if os.fstat(handle.fileno()).st_size != expected:
        raise CacheCorruptError(f"cache file {path.name} has the wrong size (truncated?)")
    tokens = array("i")
    tokens.frombytes(_read_exact(handle, 4 * n_tokens, path))
    return header, tuple(tokens)


def read_header(path: Path, fingerprint: dict[str, Any]) -> tuple[tuple[int, ...], int, int]:
    """The tokens a file holds, its blob size and trim floor, checking
    everything but the crc."""
    with _open_regular(path) as handle:
        header, tokens = _read_header(handle, path, fingerprint)
    return tokens, int(header["blobBytes"]), int(header["trimFloor"])


def read_blob(path: Path, fingerprint: dict[str, Any]) -> tuple[tuple[int, ...], bytes]:
    """Tokens and blob, verified against the header's crc32."""
    with _open_regular(path) as handle:
        header, tokens = _read_header(handle, path, fingerprint)
        # read() fills a fresh bytes object directly; no zero-filled buffer first.
        blob = _read_exact(handle, int(header["blobBytes"]), path)
    crc = zlib.crc32(blob, zlib.crc32(_tokens_bytes(tokens)))
    if crc != header.get("crc32"):
        raise CacheCorruptError(f"cache file {path.name} failed its checksum")
    return tokens, blob
