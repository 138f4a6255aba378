"""Tool-call formats, one module per model family, and the one place a model's
format is chosen (``format_for``).

Families: hermes (Qwen, SmolLM2), llama3, mistral, gemma. To add one: write
``<family>.py`` beside ``hermes.py`` implementing
``base.ToolFormat`` (tests in tests/unit/test_tool_formats.py show what it must
do), and add its test on the template to ``choose.format_for``, above the fallback.
"""

from __future__ import annotations

from openclaw_daemon.tools.formats.base import CallTags, ToolFormat
from openclaw_daemon.tools.formats.choose import format_for

__all__ = ["CallTags", "ToolFormat", "format_for"]
