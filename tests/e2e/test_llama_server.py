"""End to end against llama.cpp's own llama-server (fixture ``llama_server_url``,
built once by scripts/test), through the real CLI and daemon: the daemon finds the
server's ``/tokenize``, and a session's second turn is served from the server's
prefix cache, by the server's own report (``timings``: ``usage.cacheRead`` against
``usage.input``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Cli
from tests.upstream_server import SERVED_ALIAS

pytestmark = pytest.mark.e2e

REF = f"ls/{SERVED_ALIAS}"


def _config(cli: Cli, base_url: str) -> None:
    provider = {
        "baseUrl": base_url,
        "api": "openai-completions",
        "timeoutSeconds": 120,
        "models": [{"id": SERVED_ALIAS, "contextWindow": 8192}],
    }
    raw = {"models": {"providers": {"ls": provider}}}
    (cli.state_dir / "openclaw.json").write_text(json.dumps(raw))


def _turn(cli: Cli, message: str) -> dict[str, Any]:
    return cli.turn(
        message, "--model", REF, "--session-id", "ls1", "--max-tokens", "8",
        "--temperature", "0", "--seed", "1",
    )  # fmt: skip


def _span(reply: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in reply["meta"]["trace"]["spans"] if s["name"] == name)


def test_two_turns_on_llama_server_reuse_its_prefix_cache(cli: Cli, llama_server_url: str) -> None:
    _config(cli, llama_server_url)
    first = _turn(cli, "Say hi.")
    assert first["payloads"][0]["text"].strip()
    meta = first["meta"]["agentMeta"]
    assert (meta["provider"], meta["model"]) == ("ls", SERVED_ALIAS)
    assert first["meta"]["engine"] == f"upstream:{REF}"
    tokenize = _span(first, "prompt.tokenize")
    assert (tokenize["tokenizer"], tokenize["estimate"]) == ("llama-server", False)
    prefill = _span(first, "model.prefill")
    assert prefill["engine"] == f"upstream:{REF}" and prefill["usageSource"] == "timings"
    # The server counts the prompt it rendered with its own template; ours is the
    # request in ChatML, tokenized by its /tokenize: the same model, nearly the same.
    usage = meta["usage"]
    assert abs(usage["input"] + usage["cacheRead"] - tokenize["tokens"]) <= 8, (usage, tokenize)

    second = _turn(cli, "And again.")
    assert second["payloads"][0]["text"].strip()
    assert second["meta"]["engine"] == f"upstream:{REF}"
    usage = second["meta"]["agentMeta"]["usage"]
    cached, prefilled = usage["cacheRead"], usage["input"]
    # Only the new message is prefilled (15 of 686 tokens here): the rest is cached.
    assert cached / (cached + prefilled) >= 0.9, usage
    prefill = _span(second, "model.prefill")
    assert prefill["cachedTokens"] == cached and prefill["tokens"] == prefilled
    cache = second["meta"]["trace"]["cache"]
    assert cache["cachedKnown"] is True and cache["usageSource"] == "timings"
    assert cache["request"]["appendOnly"] is True
    assert f"reused {cached:,} of {cached + prefilled:,}" in cache["summary"]
