"""Where ``openclaw agent`` gets what its flags leave open: the message (``-m``,
``-m -``, a piped stdin, ``--message-file``) and openclaw.json's agent defaults."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

if TYPE_CHECKING:
    from openclaw_cli.config_defaults import AgentDefaults

MAX_MESSAGE_BYTES = 4 << 20  # --message-file and stdin, as the real OpenClaw CLI


def _read_limited(handle: BinaryIO, what: str, parser: argparse.ArgumentParser) -> str:
    data = handle.read(MAX_MESSAGE_BYTES + 1)
    if len(data) > MAX_MESSAGE_BYTES:
        parser.error(f"{what} is larger than 4 MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        parser.error(f"{what} is not UTF-8 text (byte {exc.start})")


def message(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The message from -m, --message-file or stdin (``-m -``, or piped with no -m)."""
    if args.message_file is not None:
        try:
            with open(args.message_file, "rb") as handle:
                return _read_limited(handle, f"--message-file {args.message_file}", parser)
        except OSError as exc:
            parser.error(f"--message-file {args.message_file}: {exc.strerror or exc}")
    if args.message is not None and args.message != "-":
        return str(args.message)
    wanted = "give the message: -m TEXT, --message-file PATH, or pipe it on stdin"
    if args.message is None and sys.stdin.isatty():
        parser.error(wanted)
    text = _read_limited(sys.stdin.buffer, "the message on stdin", parser)
    if args.message is None and not text:
        parser.error(wanted)  # nothing piped: a script that forgot -m, not an empty turn
    return text


class _NoDefaults(NamedTuple):
    """What no config file sets (``config_defaults.AgentDefaults``' fields), without
    importing that module on every turn."""

    max_tokens: int | None = None
    temperature: float | None = None
    timeout: float | None = None
    thinking: str | None = None
    workspace: str | None = None
    allow: tuple[str, ...] = ()


def config_defaults() -> AgentDefaults | _NoDefaults:
    """openclaw.json's agent defaults (below a flag, above a built-in default); a
    stat when there is no file, the parser only when there is one."""
    from openclaw_daemon import config

    path = config.openclaw_config_path()
    if not path.exists():
        return _NoDefaults()
    from openclaw_cli import config_defaults

    return config_defaults.defaults(config_defaults.read_raw(path), path)
