"""openclaw.json parsing: OpenClaw's schema, its short forms, ${VAR} keys, and
errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from openclaw_daemon.upstream import config_file
from openclaw_daemon.wire.errors import ConfigError


def _load(tmp_path: Path, text: str) -> config_file.OpenClawConfig:
    path = tmp_path / "openclaw.json"
    path.write_text(text)
    return config_file.load(path)


def test_missing_file_is_an_empty_config(tmp_path: Path) -> None:
    cfg = config_file.load(tmp_path / "none.json")
    assert (cfg.exists, cfg.providers, cfg.primary, cfg.fallbacks) == (False, {}, None, ())


def test_full_openclaw_config_with_unknown_keys(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        """{
      gateway: { port: 18789 },  // OpenClaw's other sections are ignored
      models: { mode: "merge", providers: { vllm: {
        baseUrl: "http://gpu:8000/v1/", apiKey: "${VLLM_KEY}", headers: { "X-A": "b" },
        timeoutSeconds: 30, models: [{ id: "Qwen/Qwen3-8B", contextWindow: 32768, name: "Q" }],
      } } },
      agents: { defaults: { model: { primary: "vllm/Qwen/Qwen3-8B", fallbacks: ["a/b"] } } },
    }""",
    )
    provider = cfg.providers["vllm"]
    assert provider.base_url == "http://gpu:8000/v1"  # one trailing slash dropped
    assert (provider.api, provider.timeout_seconds, provider.headers()) == (
        "openai-completions",
        30.0,
        {"X-A": "b"},
    )
    assert cfg.primary == "vllm/Qwen/Qwen3-8B" and cfg.fallbacks == ("a/b",)
    found = cfg.find("vllm/Qwen/Qwen3-8B")  # the model id itself holds a slash
    assert found is not None and found[1].context_window == 32768
    assert found[1].ref == "vllm/Qwen/Qwen3-8B"
    assert cfg.find("/some/file.gguf") is None and cfg.find("smollm2") is None
    with pytest.raises(ConfigError, match="has no model 'other'"):
        cfg.find("vllm/other")


def test_api_key_expands_at_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _load(
        tmp_path,
        '{models: {providers: {p: {baseUrl: "http://h", apiKey: "k-${K1}-${K2}", models: ["m"]}}}}',
    )
    provider = cfg.providers["p"]
    monkeypatch.setenv("K1", "one")
    assert "${K2}" in (provider.problem() or "")
    monkeypatch.setenv("K2", "two")
    assert provider.api_key() == "k-one-two" and provider.problem() is None


def test_short_forms_and_unsupported_api(tmp_path: Path) -> None:
    # agents.defaults.model as a string is OpenClaw's; a bare model id string is ours.
    cfg = _load(
        tmp_path,
        '{agents: {defaults: {model: "p/m"}}, models: {providers: '
        '{p: {baseUrl: "https://h", api: "anthropic-messages", models: ["m"]}}}}',
    )
    assert cfg.primary == "p/m" and cfg.fallbacks == ()
    assert "not supported" in (cfg.providers["p"].problem() or "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", "object at the top level"),
        ("{models: 3}", "models must be an object"),
        ("{agents: {defaults: {model: {fallbacks: [1]}}}}", "fallbacks must be a list"),
        ("{oops", "not valid JSON5"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        _load(tmp_path, text)
    assert str(tmp_path) in info.value.message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ('{baseUrl: "h", models: ["m"]}', "baseUrl must be an http"),
        ("{models: ['m']}", "has no baseUrl"),
        ('{baseUrl: "http://h", timeoutSeconds: 0}', "timeoutSeconds must be a positive"),
        ('{baseUrl: "http://h", timeoutSeconds: Infinity}', "timeoutSeconds must be a positive"),
        ('{baseUrl: "http://h", models: [{}]}', 'needs an "id"'),
        ('{baseUrl: "http://h", models: [{id: "m", contextWindow: -1}]}', "contextWindow must"),
        ('{baseUrl: "http://h", apiKey: {source: "file", id: "x"}}', "'file' is not supported"),
        ("3", "must be an object"),
    ],
)
def test_a_bad_provider_is_its_own_problem(tmp_path: Path, spec: str, message: str) -> None:
    cfg = _load(
        tmp_path, f'{{models: {{providers: {{bad: {spec}, good: {{baseUrl: "http://g"}}}}}}}}'
    )
    assert message in (cfg.providers["bad"].problem() or "")
    assert cfg.providers["good"].problem() is None  # the file still loads


def test_openclaw_env_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _load(
        tmp_path,
        """{models: {providers: {p: {
          baseUrl: "${HOST_URL}/v1", apiKey: {source: "env", provider: "default", id: "KEY"},
          headers: {"X-Auth": "Bearer ${TOKEN}", "X-Lit": "$${TOKEN}", "X-low": "${lower}"},
          contextWindow: 8192, maxTokens: 100, models: [{id: "m"}, {id: "n", maxTokens: 7}],
        }}}}""",
    )
    provider = cfg.providers["p"]
    monkeypatch.setenv("HOST_URL", "HTTP://box:8000")
    monkeypatch.setenv("KEY", "")
    assert "${KEY}" in (provider.problem() or "")  # empty counts as unset, as in OpenClaw
    monkeypatch.setenv("KEY", "sk")
    monkeypatch.setenv("TOKEN", "t0k")
    assert provider.problem() is None and provider.url() == "HTTP://box:8000/v1"
    assert provider.api_key() == "sk"
    assert provider.headers() == {"X-Auth": "Bearer t0k", "X-Lit": "${TOKEN}", "X-low": "${lower}"}
    assert [(m.context_window, m.max_tokens) for m in provider.models] == [(8192, 100), (8192, 7)]


def test_plain_json_skips_the_json5_parser(tmp_path: Path) -> None:
    import sys

    sys.modules.pop("json5", None)
    cfg = _load(tmp_path, '{"models": {"providers": {"p": {"baseUrl": "http://h"}}}}')
    assert "p" in cfg.providers and "json5" not in sys.modules


def test_config_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLAW_STATE_DIR", str(tmp_path / "state"))
    assert config_file.config_path() == tmp_path / "state" / "openclaw.json"
    monkeypatch.setenv("OPENCLAW_CONFIG_PATH", str(tmp_path / "x.json"))
    assert config_file.config_path() == tmp_path / "x.json"
