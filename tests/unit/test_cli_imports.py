"""The CLI stays thin: importing it never loads llama_cpp, and ``agent`` skips typer."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(imports: str, candidates: tuple[str, ...]) -> list[str]:
    code = (
        f"import sys, {imports}; "
        f"print(','.join(sorted(m for m in {candidates!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_cli_import_does_not_load_the_engine() -> None:
    every_command = (
        "openclaw_cli.main, openclaw_cli.commands.registry, openclaw_cli.commands.agent, "
        "openclaw_cli.commands.daemon, openclaw_cli.commands.sessions, "
        "openclaw_cli.commands.models"
    )
    # httpx, json5 and tiktoken belong to the upstream commands, imported inside them.
    heavy = ("llama_cpp", "numpy", "jinja2", "rich", "psutil", "httpx", "json5", "tiktoken")
    assert loaded_after(every_command, heavy) == []


def test_agent_fast_path_does_not_import_typer() -> None:
    agent_path = "openclaw_cli.main, openclaw_cli.agent_args, openclaw_cli.commands.agent"
    assert loaded_after(agent_path, ("typer", "click", "dataclasses", "rich")) == []
