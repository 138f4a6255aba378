"""Bad input at the edges: GGUF headers, size settings and saved tapes fail cleanly."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from openclaw_daemon.config import embedded_model_path, parse_size
from openclaw_daemon.model.gguf import arch_value, read_metadata
from openclaw_daemon.turn.tape_store import TapeStore
from openclaw_daemon.wire.errors import BadRequestError, ModelError
from openclaw_sessions.store import SessionRef


def gguf(*kvs: bytes) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)


def key(name: str) -> bytes:
    return struct.pack("<Q", len(name)) + name.encode()


def test_the_embedded_models_header_reads_without_loading_it() -> None:
    metadata = read_metadata(embedded_model_path())
    assert arch_value(metadata, "block_count") == 30
    assert arch_value(metadata, "context_length") == 8192


@pytest.mark.parametrize(
    "body, reason",
    [
        (gguf(key("a") + struct.pack("<I", 8) + struct.pack("<Q", 1 << 40)), "string length"),
        (gguf(key("a") + struct.pack("<IIQ", 9, 4, 1 << 40)), "array length"),
        (gguf(key("a") + struct.pack("<I", 99)), "unknown value type"),
        (gguf(key("a") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 9, 1) * 10), "nests"),
        (gguf(key("a")), "ends inside"),
    ],
)
def test_garbage_gguf_headers_are_model_errors(tmp_path: Path, body: bytes, reason: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(body)
    with pytest.raises(ModelError, match=reason):
        read_metadata(path)


@pytest.mark.parametrize("raw", ["inf", "nan", "-1G", "lots", "1e999"])
def test_sizes_that_are_not_sizes_are_refused(raw: str) -> None:
    with pytest.raises(BadRequestError, match="size like 512M"):
        parse_size(raw)


def test_saved_tapes_that_do_not_fit_are_ignored(tmp_path: Path) -> None:
    ref = SessionRef("main", "agent:main:s", "s", tmp_path / "s.jsonl")
    tapes = TapeStore(tmp_path, "fp", n_vocab=100)
    tapes.save(ref, [1, 2, 3], "e1", "sys")
    assert tapes.load(ref, "e1", "sys") == [1, 2, 3]
    assert tapes.load(ref, "e2", "sys") is None  # the session moved on
    assert tapes.load(ref, "e1", "other system") is None
    assert TapeStore(tmp_path, "other model", n_vocab=100).load(ref, "e1", "sys") is None
    tapes.save(ref, [1, 200], "e1", "sys")  # an id outside the vocabulary
    assert tapes.load(ref, "e1", "sys") is None
    path = next(tmp_path.glob("*.json"))
    for junk in ("[1, 2]", "{", '"text"'):
        path.write_text(junk)
        assert tapes.load(ref, "e1", "sys") is None
