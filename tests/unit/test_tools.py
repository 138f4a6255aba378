"""Tools without a model: grammar, confinement, permissions, parallel steps, limits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from openclaw_daemon.model.llama_engine import Engine
from openclaw_daemon.tools import web_fetch, workspace
from openclaw_daemon.tools.formats.hermes import HermesFormat
from openclaw_daemon.tools.grammar import check_choice, constrains, grammar_for, sanitize, urls_in
from openclaw_daemon.tools.runner import ToolContext, ToolRunner
from openclaw_daemon.tools.spec import TOOLS_BY_NAME, ToolCall
from openclaw_daemon.wire.errors import BadRequestError, ToolError


def runner(**kwargs: object) -> ToolRunner:
    return ToolRunner(
        tokenize=lambda text: list(text.encode()),
        detokenize=lambda ids: bytes(ids).decode(errors="replace"),
        **kwargs,  # type: ignore[arg-type]
    )


def test_grammar_choices_and_constraints() -> None:
    hermes = HermesFormat()
    assert grammar_for("auto", Engine.schema_to_gbnf, tool_format=hermes) is None
    assert grammar_for("none", Engine.schema_to_gbnf, tool_format=hermes) is None
    named = grammar_for("read", Engine.schema_to_gbnf, ["a.txt", "b.txt"], tool_format=hermes)
    assert named is not None and '"\\"a.txt\\""' in named and "exec" not in named
    required = grammar_for(
        "required", Engine.schema_to_gbnf, urls=["http://h/x"], tool_format=hermes
    )
    assert required is not None and "{0,3}" in required and "http://h/x" in required
    # A search query is bounded in the grammar (a looping model must close it),
    # while the schema the model reads in the cached head is left as it is.
    searched = grammar_for("search", Engine.schema_to_gbnf, tool_format=hermes)
    assert searched is not None
    query_rule = next(line for line in searched.splitlines() if line.startswith("arguments-query"))
    assert "bounded-char{0,80}" in query_rule
    assert "maxLength" not in str(TOOLS_BY_NAME["search"].parameters)
    assert constrains("read", 0, 6) and not constrains("read", 1, 6)
    assert constrains("required", 4, 6) and not constrains("required", 5, 6)
    with pytest.raises(BadRequestError, match="unknown --tool-choice"):
        check_choice("sometimes")
    assert urls_in("see https://a.b/c, and http://x/y.") == ["http://x/y", "https://a.b/c"]
    schema = sanitize({"type": "string", "pattern": "a+", "maxLength": 10**6, "format": "uri"})
    assert schema == {"type": "string"}
    assert sanitize({"pattern": "^a+$", "maxLength": 5}) == {"pattern": "^a+$", "maxLength": 5}


def test_paths_outside_the_workspace_are_refused(tmp_path: Path) -> None:
    (tmp_path / "inside.txt").write_text("ok")
    outside = tmp_path.parent / f"{tmp_path.name}-secret.txt"
    outside.write_text("secret")
    (tmp_path / "link").symlink_to(outside)
    assert workspace.read(tmp_path, {"path": "inside.txt"}) == "ok"
    for bad in ("../" + outside.name, str(outside), "link"):
        with pytest.raises(ToolError, match="outside the workspace"):
            workspace.read(tmp_path, {"path": bad})
    with pytest.raises(ToolError, match="outside the workspace"):
        workspace.write(tmp_path, {"path": "../x.txt", "content": "no"})


def test_edit_replaces_exactly_one_occurrence(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text("a = 1\nb = 1\n")
    assert "replaced 1" in workspace.edit(
        tmp_path, {"path": "f.py", "old": "a = 1", "new": "a = 2"}
    )
    assert (tmp_path / "f.py").read_text() == "a = 2\nb = 1\n"
    with pytest.raises(ToolError, match="occurs 2 times"):
        workspace.edit(tmp_path, {"path": "f.py", "old": " = ", "new": "="})


def test_search_and_read_with_offset(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "n.txt").write_text("one\nTwo alpha\nthree\n")
    assert workspace.search(tmp_path, {"query": "ALPHA"}) == "sub/n.txt:2: Two alpha"
    assert workspace.read(tmp_path, {"path": "sub/n.txt", "offset": 2, "limit": 1}) == "Two alpha\n"


def test_a_step_runs_its_calls_in_parallel_with_permissions(tmp_path: Path) -> None:
    context = ToolContext(tmp_path, {"PATH": "/usr/bin:/bin"}, frozenset({"exec"}))
    calls = [ToolCall(f"c{i}", "exec", {"command": "sleep 1; echo done"}) for i in range(2)]
    calls.append(ToolCall("w", "write", {"path": "x", "content": "y"}))
    started = time.perf_counter()
    outcomes = runner().run_step(calls, context)
    elapsed = time.perf_counter() - started
    assert [o.content.strip() for o in outcomes[:2]] == ["done", "done"]
    assert elapsed < 1.8  # two 1 s commands side by side (one after the other: >= 2 s)
    assert outcomes[2].is_error and "--allow write" in outcomes[2].content
    assert not (tmp_path / "x").exists()


def test_exec_timeout_cap_output_cap_and_exit_codes(tmp_path: Path) -> None:
    context = ToolContext(tmp_path, {"PATH": "/usr/bin:/bin"}, frozenset({"exec"}), 0.5)
    [slow, loud, failing] = runner(token_budget=10**6).run_step(
        [
            ToolCall("a", "exec", {"command": "sleep 20", "timeout": 60}),
            ToolCall("b", "exec", {"command": "yes | head -c 200000"}),
            ToolCall("c", "exec", {"command": "echo oops; exit 3"}),
        ],
        context,
    )
    assert slow.is_error and "timed out after 0.5 s" in slow.content
    assert slow.ended - slow.started < 5
    assert "bytes omitted" in loud.content and len(loud.content) < 70_000
    assert failing.is_error and "exit code 3" in failing.content and "oops" in failing.content


def test_results_are_truncated_head_and_tail_and_idempotent_ones_cached(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("H" * 300 + "T" * 300)
    context = ToolContext(tmp_path, {}, frozenset())
    tools = runner(token_budget=100, ttl_s=60)
    [first] = tools.run_step([ToolCall("a", "read", {"path": "big.txt"})], context)
    assert (
        first.truncated and first.content.startswith("H" * 50) and first.content.endswith("T" * 50)
    )
    assert "[... 500 tokens omitted ...]" in first.content and not first.cached
    (tmp_path / "big.txt").write_text("changed")
    [again] = tools.run_step([ToolCall("b", "read", {"path": "big.txt"})], context)
    assert again.cached and again.content == first.content
    [fresh] = runner(ttl_s=0).run_step([ToolCall("c", "read", {"path": "big.txt"})], context)
    assert fresh.content == "changed" and not fresh.cached


def test_web_fetch_refuses_other_schemes_and_extracts_text() -> None:
    for url in ("file:///etc/passwd", "ftp://x/y", "javascript:alert(1)", 42):
        with pytest.raises(ToolError, match="http"):
            web_fetch.fetch({"url": url})
    html = (
        "<html><head><style>p{}</style></head><body><p>One  two</p><script>x</script>Three</body>"
    )
    assert web_fetch.html_text(html) == "One two\nThree"


def test_the_clis_tool_names_match_the_daemons() -> None:
    from openclaw_cli.agent_args import ALLOW_VALUES as CLI_PERMISSIONS
    from openclaw_cli.agent_args import TOOL_NAMES
    from openclaw_daemon.tools.spec import PERMISSIONS, TOOLS_BY_NAME

    assert set(TOOL_NAMES) == set(TOOLS_BY_NAME)
    assert set(CLI_PERMISSIONS) == set(PERMISSIONS)


def test_the_cli_knows_the_daemons_thinking_levels() -> None:
    from openclaw_cli.agent_args import THINKING_LEVELS as CLI_LEVELS
    from openclaw_daemon.upstream.thinking import reasoning_effort
    from openclaw_daemon.wire.requests import THINKING_LEVELS

    assert CLI_LEVELS == THINKING_LEVELS
    efforts = {level: reasoning_effort(level) for level in THINKING_LEVELS if level != "off"}
    assert set(efforts.values()) == {"minimal", "low", "medium", "high"}
    assert efforts["xhigh"] == efforts["max"] == efforts["ultra"] == "high"
