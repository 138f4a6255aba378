"""End to end: ``openclaw models list`` reads upstream providers from OpenClaw's own
``openclaw.json`` (JSON5, ``${VAR}`` keys) and probes each one: a real
llama-cpp-python server on 127.0.0.1 is up and serves its model, a closed port is
down with a reason, and a broken config file is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Cli
from tests.upstream_server import SERVED_ALIAS, free_port


def _write_config(cli: Cli, up_url: str, down_url: str) -> None:
    (cli.state_dir / "openclaw.json").write_text(
        f"""// OpenClaw's own format: comments and trailing commas are JSON5
{{
  models: {{ providers: {{
    local: {{ baseUrl: "{up_url}", apiKey: "${{TEST_UPSTREAM_KEY}}", api: "openai-completions",
             models: [{{ id: "{SERVED_ALIAS}", contextWindow: 4096, maxTokens: 512 }},
                      {{ id: "not-served" }}] }},
    gone: {{ baseUrl: "{down_url}", models: [{{ id: "x" }}] }},
  }} }},
  agents: {{ defaults: {{ model: {{ primary: "local/{SERVED_ALIAS}", fallbacks: ["gone/x"] }} }} }},
}}
"""
    )


def test_models_list_probes_configured_upstreams(cli: Cli, upstream_url: str) -> None:
    down_url = f"http://127.0.0.1:{free_port()}/v1"
    _write_config(cli, upstream_url, down_url)
    cli.extra_env["TEST_UPSTREAM_KEY"] = "sk-test"
    listed = json.loads(cli.run("models", "list", "--json").stdout)["models"]
    by_name = {m["name"]: m for m in listed}
    assert by_name["smollm2-135m-instruct-q4_1"]["source"] == "embedded"
    served = by_name[f"local/{SERVED_ALIAS}"]
    assert (served["source"], served["reachable"], served["problem"]) == ("upstream", True, None)
    assert (served["contextWindow"], served["maxTokens"], served["path"]) == (
        4096,
        512,
        upstream_url,
    )
    missing = by_name["local/not-served"]
    assert missing["reachable"] is True and "does not list 'not-served'" in missing["problem"]
    gone = by_name["gone/x"]
    assert gone["reachable"] is False and "cannot connect" in gone["problem"]
    # The upstream primary answers turns that name no model: it is the default.
    assert served["default"] and not by_name["smollm2-135m-instruct-q4_1"]["default"]

    text = cli.run("models", "list").stdout
    assert f"local/{SERVED_ALIAS}" in text and "upstream (up)" in text
    assert "upstream (down)" in text and "cannot connect" in text


def test_unset_key_variable_is_named(cli: Cli, upstream_url: str) -> None:
    _write_config(cli, upstream_url, upstream_url)
    listed = json.loads(cli.run("models", "list", "--json").stdout)["models"]
    local = next(m for m in listed if m["name"] == f"local/{SERVED_ALIAS}")
    assert local["reachable"] is None  # not probed: the config is what is wrong
    assert "${TEST_UPSTREAM_KEY}" in local["problem"] and "not set" in local["problem"]


def test_broken_config_is_a_clear_error(cli: Cli) -> None:
    path = cli.state_dir / "openclaw.json"
    # A broken provider is that provider's problem: the rest still lists.
    path.write_text("{ models: { providers: { a: { baseUrl: 'ftp://x', models: ['m'] } } } }")
    listed = json.loads(cli.run("models", "list", "--json").stdout)["models"]
    assert [m["source"] for m in listed] == ["embedded", "upstream"]
    assert "must be an http(s) URL" in listed[1]["problem"] and listed[1]["reachable"] is None
    assert "upstream (not probed)" in cli.run("models", "list").stdout
    # A file that is not JSON5 at all is the file's problem, named, and left as it was.
    path.write_text("{ not json5 ")
    proc = cli.run("models", "list", check=False)
    assert proc.returncode == 2 and "is not valid JSON5" in proc.stderr and str(path) in proc.stderr
    assert path.read_text() == "{ not json5 "


def test_config_path_override(cli: Cli, upstream_url: str, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.json"
    other.write_text(
        json.dumps(
            {
                "models": {
                    "providers": {"p": {"baseUrl": upstream_url, "models": [{"id": SERVED_ALIAS}]}}
                }
            }
        )
    )
    cli.extra_env["OPENCLAW_CONFIG_PATH"] = str(other)
    listed = json.loads(cli.run("models", "list", "--json").stdout)["models"]
    assert [m["reachable"] for m in listed if m["name"] == f"p/{SERVED_ALIAS}"] == [True]


def test_agent_on_an_unknown_upstream_model_says_which_exist(cli: Cli, upstream_url: str) -> None:
    _write_config(cli, upstream_url, upstream_url)
    proc = cli.run("agent", "--local", "-m", "hi", "--model", "local/nope", check=False)
    assert proc.returncode == 2 and "has no model 'nope'" in proc.stderr
    assert not (cli.state_dir / "run" / "daemon.json").exists()  # nothing was started
