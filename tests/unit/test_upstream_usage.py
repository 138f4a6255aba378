"""The upstream's own usage report, from each server's field, unknown kept unknown."""

from __future__ import annotations

from openclaw_daemon.upstream.usage import ServerUsage, from_response, tier_name


def test_llama_server_timings() -> None:
    body = {"content": "x", "timings": {"cache_n": 950, "prompt_n": 50, "predicted_n": 7}}
    usage = from_response(body)
    assert usage == ServerUsage(1000, 950, 7, "timings") and usage.cached_share == 0.95


def test_openai_style_cached_tokens() -> None:
    body = {
        "usage": {
            "prompt_tokens": 400,
            "completion_tokens": 9,
            "prompt_tokens_details": {"cached_tokens": 384},
        }
    }
    assert from_response(body) == ServerUsage(400, 384, 9, "usage.details")


def test_usage_without_cache_detail_is_unknown_not_zero() -> None:
    usage = from_response({"usage": {"prompt_tokens": 31, "completion_tokens": 8}})
    assert usage == ServerUsage(31, None, 8, "usage") and usage.cached_share is None
    assert from_response({"choices": []}) == ServerUsage(None, None, None, "none")
    bad = {"timings": {"cache_n": -1}, "usage": {"prompt_tokens": True}}
    assert from_response(bad) == ServerUsage(None, None, None, "usage")


def test_tier_is_named_after_the_upstream() -> None:
    assert tier_name("gpu") == "upstream:gpu"
