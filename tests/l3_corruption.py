"""A reusable L3 (disk cache) fault check: damaged files are detected and the turn is still right.

``run(state_dir)`` primes one session pair per kind of damage, stops the
daemon, damages each kind's cache files on disk, restarts, and sends every
damaged session a follow-up. Its twin session (same transcript) then answers
the same follow-up from a cleared cache: greedy decoding must give the same
reply. The kinds:

- ``corrupt``: a byte flipped inside the KV blob (the header still parses);
- ``truncated``: the file cut to two thirds;
- ``swapped``: its header and tokens kept, the KV blob of another entry put
  in, the checksum made consistent (the header lies about the cells);
- ``renamed``: the file moved under a name (key) that does not match its tokens;
- ``foreign``: the header's fingerprint changed to another model's, checksum
  consistent.

Returns ``{"files", "detected", "discarded", "turns_correct", "turns", ...}``:
damaged files, those the daemon's log names as discarded, those of them gone
from disk, and follow-ups answered as their twin answered cold;
scripts (scripts/faults) and tests call it. It drives the real ``openclaw``
CLI; only the file surgery imports ``openclaw_daemon.cache.kv_files`` (no llama_cpp).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from openclaw_daemon.cache import kv_files

KINDS = ("corrupt", "truncated", "swapped", "renamed", "foreign")
OPENCLAW = Path(sys.executable).with_name("openclaw")
_WRITE_WAIT_S = 60.0


def _notes(label: str) -> str:
    return " ".join(f"{label} fact {i}: item {i * 7 % 13} is in box {i}." for i in range(30))


class _Runner:
    def __init__(self, state_dir: Path, openclaw: Path) -> None:
        self.state_dir = state_dir
        self.openclaw = openclaw
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        env["OPENCLAW_STATE_DIR"] = str(state_dir)
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.openclaw), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"openclaw {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def turn(self, session: str, message: str, max_tokens: int) -> subprocess.CompletedProcess[str]:
        return self.run(
            "agent", "--local", "--json", "--session-id", session, "-m", message,
            "--max-tokens", str(max_tokens), check=False,
        )  # fmt: skip

    def files(self) -> set[Path]:
        return set((self.state_dir / "cache" / "kv").glob(f"*/*{kv_files.SUFFIX}"))

    def wait_written(self) -> None:
        """Until the writer has put every parked state on disk (bounded)."""
        deadline = time.monotonic() + _WRITE_WAIT_S
        while time.monotonic() < deadline:
            stats = json.loads(self.run("cache", "stats", "--json").stdout)
            if not stats.get("pendingWrites"):
                return
            time.sleep(0.2)


def _parts(path: Path) -> tuple[dict[str, Any], tuple[int, ...], bytes]:
    """A file's header, tokens and blob, read with the daemon's own format code."""
    raw = path.read_bytes()
    _magic, _version, header_len = kv_files._PREAMBLE.unpack_from(raw)
    start = kv_files._PREAMBLE.size
    header = json.loads(raw[start : start + header_len])
    tokens, blob = kv_files.read_blob(path, header["fingerprint"])
    return header, tokens, blob


def _damage(kind: str, path: Path, other: Path | None) -> None:
    if kind == "corrupt":
        data = bytearray(path.read_bytes())
        data[len(data) - max(1, (len(data) // 3))] ^= 0xFF  # inside the blob
        path.write_bytes(bytes(data))
    elif kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "swapped":
        assert other is not None, "swapped needs another entry's blob"
        header, tokens, _ = _parts(path)
        _, _, blob = _parts(other)
        kv_files.write_blob(path, header["fingerprint"], tokens, blob)
    elif kind == "renamed":
        path.rename(path.with_name(f"{'0' * 8}{path.stem[8:]}{kv_files.SUFFIX}"))
    elif kind == "foreign":
        header, tokens, blob = _parts(path)
        foreign = {**header["fingerprint"], "modelBytes": header["fingerprint"]["modelBytes"] + 1}
        kv_files.write_blob(path, foreign, tokens, blob)
    else:
        raise ValueError(f"unknown kind {kind}")


def _other_blob(path: Path, candidates: list[Path], damaged: list[Path]) -> Path | None:
    """An intact file holding another number of tokens (so its blob has other cells)."""
    mine = len(_parts(path)[1])
    for candidate in candidates:
        if candidate in damaged or not candidate.exists():
            continue
        try:
            if len(_parts(candidate)[1]) != mine:
                return candidate
        except Exception:  # noqa: BLE001 - an unreadable candidate is just skipped
            continue
    return None


def _text(proc: subprocess.CompletedProcess[str]) -> str | None:
    if proc.returncode != 0:
        return None
    try:
        payloads = json.loads(proc.stdout)["payloads"]
    except (ValueError, KeyError):
        return None
    return "".join(p.get("text") or "" for p in payloads)


def run(
    state_dir: Path,
    *,
    kinds: tuple[str, ...] = KINDS,
    openclaw: Path = OPENCLAW,
    max_tokens: int = 8,
) -> dict[str, Any]:
    """Damage each kind of L3 file, then check detection, discard and the turn's answer."""
    cli = _Runner(state_dir, openclaw)
    cli.run("daemon", "start")
    owned: dict[str, set[Path]] = {}
    for kind in kinds:
        before = cli.files()
        prime = _notes(kind.capitalize()) + " Which box holds item 3?"
        for twin in ("a", "b"):
            cli.turn(f"l3-{kind}-{twin}", prime, 4)
        cli.wait_written()
        owned[kind] = cli.files() - before
    cli.run("daemon", "stop")
    damaged: list[Path] = []
    all_files = sorted(cli.files())
    for kind in kinds:
        mine = sorted(owned[kind])
        for path in mine:
            if not path.exists():
                continue
            other = None
            if kind == "swapped":
                candidates = [p for p in all_files if p not in owned[kind]]
                other = _other_blob(path, candidates, damaged)
            _damage(kind, path, other)
            damaged.append(path)
    placed = cli.files()  # what the daemon will find (a renamed file has a new name)
    cli.run("daemon", "start")
    answers: dict[str, str | None] = {}
    notices: dict[str, str] = {}
    for kind in kinds:
        proc = cli.turn(f"l3-{kind}-a", "And item 5?", max_tokens)
        answers[kind] = _text(proc)
        notices[kind] = proc.stderr
    stats = json.loads(cli.run("cache", "stats", "--json").stdout)
    # Per file, from the daemon's log: "cache: discarding NAME: reason". (A file
    # gone from disk alone proves nothing: a newer state supersedes it anyway.)
    log = (state_dir / "logs" / "daemon.log").read_text(errors="replace")
    detected = {path for path in placed if f"discarding {path.name}:" in log}
    left = cli.files()
    turns_correct = 0
    references: dict[str, str | None] = {}
    for kind in kinds:
        cli.run("cache", "clear")  # the twin answers cold
        references[kind] = _text(cli.turn(f"l3-{kind}-b", "And item 5?", max_tokens))
        if answers[kind] and answers[kind] == references[kind]:
            turns_correct += 1
    cli.run("daemon", "stop")
    return {
        "files": len(placed),
        "detected": len(detected),
        "discarded": len(detected - left),
        "discardedCounter": int(stats.get("discarded", 0)),
        "turns": len(kinds),
        "turns_correct": turns_correct,
        "problems": stats.get("problems", []),
        "answers": answers,
        "references": references,
        "stderr": notices,
    }


if __name__ == "__main__":
    import tempfile

    print(json.dumps(run(Path(tempfile.mkdtemp(prefix="oc-l3-", dir="/tmp"))), indent=2))
