"""The Gemma tool-call format: Hermes tags, results back as a user turn.

Gemma's template (2 and 3) knows only ``user`` and ``model`` turns, strictly
alternating, and no tool syntax of its own; Google's guidance is to describe
the functions in the prompt and read a JSON call back. So calls are Hermes
``<tool_call>`` blocks (a shape small models follow well), and a step's
results go back as one user message wrapped in ``<tool_response>`` tags, which
keeps the roles alternating.
"""

from __future__ import annotations

from openclaw_daemon.tools.formats.hermes import HermesFormat

FORMAT = HermesFormat(wrap_results=True, result_role="user", name="gemma")
