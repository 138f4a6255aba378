"""Read a GGUF file's metadata header without loading the model.

The daemon predicts its memory from these numbers before it asks llama.cpp to
load anything, so a configuration that cannot fit is refused up front. Pure
standard library; arrays (the tokenizer's vocabulary) are skipped, not kept,
but a few named tokens can be looked for on the way (``header``).
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from pathlib import Path
from typing import Any, BinaryIO

from openclaw_daemon.wire.errors import ModelError

MAGIC = b"GGUF"
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
_VOCABULARY = "tokenizer.ggml.tokens"
# Arrays longer than this are skipped (vocabularies); short ones (per-layer
# head counts) are kept.
_KEEP_ARRAY_MAX = 4096
# Sanity bounds: a garbage header must fail cleanly, not allocate gigabytes.
_MAX_STRING = 1 << 24
_MAX_COUNT = 1 << 28
_MAX_DEPTH = 4


class _CorruptHeader(Exception):
    pass


def _read(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) < size:
        raise _CorruptHeader("it ends inside the header")
    return data


def _count(handle: BinaryIO, limit: int, what: str) -> int:
    value = int(_unpack(handle, "<Q"))
    if value > limit:
        raise _CorruptHeader(f"it claims a {what} of {value:,}")
    return value


def _unpack(handle: BinaryIO, fmt: str) -> Any:
    return struct.unpack(fmt, _read(handle, struct.calcsize(fmt)))[0]


def _string(handle: BinaryIO) -> str:
    return _read(handle, _count(handle, _MAX_STRING, "string length")).decode(
        "utf-8", errors="replace"
    )


def _value(handle: BinaryIO, kind: int, depth: int = 0) -> Any:
    if kind in _SCALARS:
        return _unpack(handle, _SCALARS[kind])
    if kind == _STRING:
        return _string(handle)
    if kind == _ARRAY:
        if depth >= _MAX_DEPTH:
            raise _CorruptHeader("it nests arrays too deeply")
        item_kind, count = _unpack(handle, "<I"), _count(handle, _MAX_COUNT, "array length")
        if count > _KEEP_ARRAY_MAX:
            _skip_array(handle, item_kind, count, depth + 1)
            return None
        return [_value(handle, item_kind, depth + 1) for _ in range(count)]
    raise _CorruptHeader(f"it has an unknown value type {kind}")


def _skip_array(handle: BinaryIO, kind: int, count: int, depth: int) -> None:
    if kind in _SCALARS:
        handle.seek(struct.calcsize(_SCALARS[kind]) * count, 1)
        return
    for _ in range(count):
        _value(handle, kind, depth)


def read_metadata(path: Path) -> dict[str, Any]:
    """Every scalar and short-array key of ``path``'s GGUF header."""
    return header(path)[0]


def header(path: Path, look_for: Collection[str] = ()) -> tuple[dict[str, Any], set[str]]:
    """``read_metadata``, and which of the tokens ``look_for`` the vocabulary
    holds (what the builtin template choice asks, e.g. Llama 3's ``<|eot_id|>``)."""
    found: set[str] = set()
    try:
        with path.open("rb") as handle:
            if handle.read(4) != MAGIC:
                raise ModelError(f"not a GGUF model file: {path}")
            version = _unpack(handle, "<I")
            if version < 2:
                raise ModelError(f"GGUF version {version} is too old: {path}")
            _tensors = _unpack(handle, "<Q")
            n_kv = _count(handle, _MAX_COUNT, "key count")
            metadata: dict[str, Any] = {}
            for _ in range(n_kv):
                key = _string(handle)
                kind = _unpack(handle, "<I")
                if key == _VOCABULARY and look_for and kind == _ARRAY:
                    metadata[key], found = _scan_strings(handle, set(look_for))
                    continue
                metadata[key] = _value(handle, kind)
            return metadata, found
    except _CorruptHeader as exc:
        raise ModelError(
            f"could not load {path}: its GGUF header is corrupt ({exc})",
            hint="Re-download or re-convert the model file.",
        ) from None
    except OSError as exc:
        raise ModelError(f"could not load {path}: {exc}") from exc


def _scan_strings(handle: BinaryIO, wanted: set[str]) -> tuple[list[Any] | None, set[str]]:
    """An array as ``_value`` reads it, and the ``wanted`` strings it holds."""
    item_kind, count = _unpack(handle, "<I"), _count(handle, _MAX_COUNT, "array length")
    if item_kind != _STRING:
        _skip_array(handle, item_kind, count, 1)
        return None, set()
    items = [_string(handle) for _ in range(count)]
    return (items if count <= _KEEP_ARRAY_MAX else None), wanted.intersection(items)


def arch_value(metadata: dict[str, Any], key: str, default: Any = None) -> Any:
    """``<architecture>.<key>``, e.g. ``block_count`` for ``llama.block_count``."""
    arch = metadata.get("general.architecture", "llama")
    return metadata.get(f"{arch}.{key}", default)
