"""openclaw.json as the agent's defaults (OpenClaw's own keys) and ``openclaw config
get|set|unset|file``, through the real CLI and daemon. A flag beats the file, the
file beats the built-in default; a bad value is refused and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli

pytestmark = pytest.mark.e2e

LONG = "Write a long story about the sea."


def _config(cli: Cli) -> Path:
    return cli.state_dir / "openclaw.json"


def _output_tokens(envelope: dict) -> int:
    return int(envelope["meta"]["agentMeta"]["usage"]["output"])


def test_set_get_unset_and_file(warm_cli: Cli) -> None:
    assert warm_cli.run("config", "file").stdout.strip() == str(_config(warm_cli))
    warm_cli.run("config", "set", "agents.defaults.params.maxTokens", "5")
    assert warm_cli.run("config", "get", "agents.defaults.params.maxTokens").stdout == "5\n"
    warm_cli.run("config", "set", "tools.allow", '["read", "write"]')
    shown = json.loads(warm_cli.run("config", "get", "tools.allow", "--json").stdout)
    assert shown == ["read", "write"]
    stored = json.loads(_config(warm_cli).read_text())
    assert stored["agents"]["defaults"]["params"]["maxTokens"] == 5
    warm_cli.run("config", "unset", "tools.allow")
    missing = warm_cli.run("config", "get", "tools.allow", check=False)
    assert missing.returncode == 1 and "not set" in missing.stderr
    before = _config(warm_cli).read_bytes()
    bad = warm_cli.run("config", "set", "agents.defaults.params.maxTokens", "lots", check=False)
    assert bad.returncode != 0 and "maxTokens must be" in bad.stderr
    assert "Nothing was written" in bad.stderr and _config(warm_cli).read_bytes() == before
    warm_cli.run("config", "unset", "agents.defaults.params.maxTokens")


def test_the_file_sets_the_agents_defaults_below_the_flags(warm_cli: Cli, tmp_path: Path) -> None:
    warm_cli.run("config", "set", "agents.defaults.params.maxTokens", "3")
    try:
        from_file = warm_cli.turn(LONG, "--session-id", "cfg-a")
        assert _output_tokens(from_file) == 3
        from_flag = warm_cli.turn(LONG, "--session-id", "cfg-b", "--max-tokens", "7")
        assert _output_tokens(from_flag) == 7
        # The tools' workspace: a read runs there, not in the current directory.
        workspace = tmp_path / "ws"
        workspace.mkdir()
        (workspace / "notes.txt").write_text("The meeting is on Tuesday.\n")
        warm_cli.run("config", "set", "agents.defaults.workspace", str(workspace))
        warm_cli.run("config", "set", "agents.defaults.params.maxTokens", "40")
        read = warm_cli.turn(
            "Read notes.txt.", "--session-id", "cfg-ws", "--tool-choice", "read", cwd=tmp_path
        )
        results = [s for s in read["meta"]["steps"] if s.get("toolResults") or s.get("tools")]
        assert "Tuesday" in json.dumps(read["meta"]["steps"]), results
        # tools.allow grants a permission the way --allow does.
        refused = warm_cli.run("agent", "-m", "hi", "--tool-choice", "write", check=False)
        assert refused.returncode == 2 and "--allow write" in refused.stderr
        warm_cli.run("config", "set", "tools.allow", '["write"]')
        accepted = warm_cli.run(
            "agent", "-m", "Write ok to out.txt.", "--session-id", "cfg-w",
            "--tool-choice", "write", "--max-tokens", "40", cwd=tmp_path,
        )  # fmt: skip
        assert accepted.returncode == 0
    finally:
        for key in ("agents", "tools"):
            warm_cli.run("config", "unset", key, check=False)


def test_a_broken_file_is_named_and_kept(warm_cli: Cli) -> None:
    _config(warm_cli).write_text("{ agents: { defaults: ")  # not JSON5 either
    try:
        proc = warm_cli.run("agent", "-m", "hi", "--max-tokens", "2", check=False)
        assert proc.returncode != 0 and str(_config(warm_cli)) in proc.stderr
        assert _config(warm_cli).read_text() == "{ agents: { defaults: "
    finally:
        _config(warm_cli).unlink()
