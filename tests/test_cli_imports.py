"""The CLI stays thin: importing it never loads llama_cpp (or numpy)."""

from __future__ import annotations

import subprocess
import sys


def test_cli_import_does_not_load_the_engine() -> None:
    code = (
        "import sys, openclaw_cli.main, openclaw_cli.agent_cmd, openclaw_cli.daemon_cmd, "
        "openclaw_cli.sessions_cmd; "
        "print(sorted(m for m in ('llama_cpp', 'numpy', 'jinja2', 'rich', 'psutil') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
