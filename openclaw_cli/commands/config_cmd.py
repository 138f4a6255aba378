"""``openclaw config get|set|unset|file``: read and edit openclaw.json by dotted
path, as OpenClaw's own ``config`` helpers do. A change is checked (the agent
defaults and the upstream providers must still parse) before it replaces the
file, atomically; the previous file is kept as ``openclaw.json.bak``. Comments of
a JSON5 file are not kept by a write: the notice says so."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from openclaw_cli import config_defaults
from openclaw_cli.views import render
from openclaw_daemon.wire.errors import BadRequestError, ConfigError


def _parts(dotted: str) -> list[str]:
    parts = dotted.split(".")
    if not dotted or not all(parts):
        raise BadRequestError(f"bad config path {dotted!r}: use dotted keys like tools.allow")
    return parts


def file() -> None:
    sys.stdout.write(f"{config_defaults.config_path()}\n")


def get(dotted: str, *, json_out: bool) -> int:
    path = config_defaults.config_path()
    _parts(dotted)
    value = config_defaults.lookup(config_defaults.read_raw(path), dotted)
    if value is None:
        render.notice(f"{dotted} is not set in {path}")
        return 1
    if json_out or not isinstance(value, str):
        sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(value + "\n")
    return 0


def _parse_value(text: str) -> Any:
    """JSON where it is JSON (numbers, true, lists, objects, "quoted"), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def set_value(dotted: str, text: str) -> None:
    _edit(dotted, _parse_value(text), unset=False)


def unset(dotted: str) -> None:
    _edit(dotted, None, unset=True)


def _edit(dotted: str, value: Any, *, unset: bool) -> None:
    parts = _parts(dotted)
    path = config_defaults.config_path()
    raw = config_defaults.read_raw(path)
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None and unset:
            render.notice(f"{dotted} was not set")
            return
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise BadRequestError(f"{dotted}: {part} holds a value, not an object")
        node = child
    if unset:
        if parts[-1] not in node:
            render.notice(f"{dotted} was not set")
            return
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    _check(raw, path)
    _write(path, raw)
    render.notice(f"{'unset' if unset else 'set'} {dotted} in {path}")


def _check(raw: dict[str, Any], path: Path) -> None:
    """Refuse a change that leaves the file unusable (nothing is written)."""
    from openclaw_daemon.upstream import config_file

    try:
        config_defaults.defaults(raw, path)
    except ConfigError as exc:
        raise ConfigError(exc.message, hint="Nothing was written.") from None
    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch) / "openclaw.json"
        probe.write_text(json.dumps(raw))
        try:
            config_file.load(probe)
        except ConfigError as exc:
            raise ConfigError(
                exc.message.replace(str(probe), str(path)), hint="Nothing was written."
            ) from None


def _write(path: Path, raw: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        old = path.read_bytes()
        try:
            json.loads(old)
        except ValueError:
            render.notice("the file was JSON5: its comments are not kept (see openclaw.json.bak)")
        path.with_name(path.name + ".bak").write_bytes(old)
    fd, tmp = tempfile.mkstemp(prefix=".openclaw.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(raw, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    os.replace(tmp, path)
