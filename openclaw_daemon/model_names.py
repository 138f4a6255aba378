"""Model names and ids: the stable id rule, the user's registry of GGUF files,
and turning ``--model NAME|PATH`` into a file.

- **Id**: ``smollm2-135m-instruct-q4_1``, the form the real OpenClaw recognises in
  a transcript's ``model`` field: lower case, ``[a-z0-9._-]``, no spaces. It comes
  from the file name (``SmolLM2-135M-Instruct.Q4_1.gguf``); a file name without a
  quantization in it gets the one the caller read from the GGUF header.
- **Registry**: ``$STATE/models.json``, the files ``openclaw models add`` named.
  Written to a temp file and renamed, so a crash leaves the old list or the new
  one, never half of one; a refused ``add`` or ``remove`` writes nothing.
- **Resolution**: a value with a ``/``, a ``.gguf`` suffix or naming an existing
  file is a path; anything else is a name: the embedded model's, or a registered
  one (by name, then by id).

Layer 1, beside ``config`` (which calls ``resolve``): standard library only, and it
imports nothing of ``config`` (the registry file is passed in), so the two never
form a cycle.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from openclaw_daemon.wire.errors import BadRequestError, ModelError

# The id of the embedded model's file (SmolLM2-135M-Instruct.Q4_1.gguf), so a name
# resolves without reading its header; a unit test checks it against ``model_id``.
EMBEDDED_MODEL_NAME = "smollm2-135m-instruct-q4_1"
NAME_RULE = "1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}", re.ASCII)
# A quantization spelled in a file name: Q4_1, Q4_K_M, IQ2_XS, F16, BF16, ...
_QUANT = re.compile(r"(?:^|[-_.])(i?q\d[a-z0-9_]*|bf16|f16|f32)(?:$|[-.])", re.IGNORECASE)
_REGISTRY_VERSION = 1


def slug(text: str) -> str:
    """Lower case, runs of anything but ``[a-z0-9_]`` as one ``-``, trimmed."""
    return re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-_")


def model_id(file_name: str, *, general_name: str = "", quantization: str = "") -> str:
    """The stable id of a GGUF file: its stem as a slug (with the quantization
    appended when the stem names none); ``general_name`` stands in for a stem
    that says nothing (``model.gguf``)."""
    stem = file_name.removesuffix(".gguf")
    base = slug(stem)
    if base in ("", "model", "ggml-model", "gguf") and general_name:
        base = slug(general_name)
    if quantization and not _QUANT.search(stem):
        base = f"{base}-{slug(quantization)}"
    return base or "model"


def looks_like_path(raw: str) -> bool:
    """Whether ``--model`` or OPENCLAW_MODEL names a file rather than a model."""
    return "/" in raw or os.sep in raw or raw.endswith(".gguf") or Path(raw).expanduser().is_file()


class Entry(NamedTuple):
    name: str
    path: str
    id: str


def load(registry_file: Path) -> list[Entry]:
    """The registered models, in the order they were added ([] with no file)."""
    try:
        data = json.loads(registry_file.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read the model registry {registry_file}: {exc}",
            hint="Fix or delete the file; `openclaw models add` recreates it.",
        ) from exc
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise ModelError(f"the model registry {registry_file} has no 'models' list")
    return [
        Entry(str(m["name"]), str(m["path"]), str(m.get("id") or m["name"]))
        for m in models
        if isinstance(m, dict) and "name" in m and "path" in m
    ]


def _save(registry_file: Path, entries: list[Entry]) -> None:
    data: dict[str, Any] = {
        "version": _REGISTRY_VERSION,
        "models": [e._asdict() for e in entries],
    }
    tmp = registry_file.with_name(f".{registry_file.name}.{os.getpid()}.tmp")
    with tmp.open("w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, registry_file)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name.endswith(".gguf"):
        raise BadRequestError(
            f"invalid model name {name!r:.80}: use {NAME_RULE} (and no .gguf suffix)"
        )
    return name


def add(registry_file: Path, entry: Entry) -> None:
    """Register ``entry``; a taken name or an already registered file is refused."""
    check_name(entry.name)
    entries = load(registry_file)
    if entry.name == EMBEDDED_MODEL_NAME:
        raise BadRequestError(f"the name {entry.name!r} is the embedded model's")
    for known in entries:
        if known.name == entry.name:
            raise BadRequestError(
                f"a model named {entry.name!r} is already registered ({known.path})",
                hint="Pick another name with --name, or `openclaw models remove` it first.",
            )
        if known.path == entry.path:
            raise BadRequestError(f"{entry.path} is already registered as {known.name!r}")
    _save(registry_file, [*entries, entry])


def remove(registry_file: Path, name: str) -> Entry:
    """Unregister ``name`` (the file itself is left alone); the removed entry."""
    entries = load(registry_file)
    if name == EMBEDDED_MODEL_NAME:
        raise BadRequestError("the embedded model cannot be removed")
    kept = [e for e in entries if e.name != name]
    if len(kept) == len(entries):
        raise _unknown(name, entries)
    _save(registry_file, kept)
    return next(e for e in entries if e.name == name)


def _unknown(name: str, entries: list[Entry]) -> ModelError:
    names = ", ".join([EMBEDDED_MODEL_NAME, *(e.name for e in entries)])
    return ModelError(
        f"unknown model {name!r:.80}: not a file, and no model has that name (known: {names})",
        hint="`openclaw models list` shows them; `openclaw models add PATH` registers one.",
    )


def resolve(raw: str, *, registry_file: Path) -> Path:
    """The file ``raw`` names: a path as given (made absolute), or a registered
    model's name or id (the embedded model's name is the caller's: ``config``)."""
    if looks_like_path(raw):
        return Path(raw).expanduser().resolve()
    entries = load(registry_file)
    by_name = [e for e in entries if e.name == raw]  # names are unique (``add``)
    by_id = [e for e in entries if e.id == raw]
    if by_name or len(by_id) == 1:
        return Path((by_name or by_id)[0].path)
    if by_id:  # two files with the same name in different directories
        raise ModelError(
            f"{len(by_id)} registered models have the id {raw!r}: "
            + ", ".join(e.name for e in by_id),
            hint="Pass one of those names instead.",
        )
    raise _unknown(raw, entries)
