"""``openclaw serve`` on the real daemon and model, driven by the official ``openai``
SDK: models, chat (plain, streamed, with tools), plain completions, cached-token
usage on warm follow-ups and after a daemon restart, errors in OpenAI's shape,
the bearer token, and a client that hangs up mid-stream."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import OPENCLAW, Cli, make_state_dir, wait_for

pytestmark = pytest.mark.e2e

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SYSTEM = {"role": "system", "content": "You are a terse assistant."}


@dataclass
class Front:
    process: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)

    def client(self, api_key: str = "unused") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=api_key, max_retries=0, timeout=120)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_front(cli: Cli, *args: str) -> Front:
    """``openclaw serve --port 0 ...``; its URL from the line it prints when ready."""
    process = subprocess.Popen(
        [str(OPENCLAW), "serve", "--port", "0", *args],
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:  # keeps the pipe drained: one log line per request
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "OpenAI-compatible API on" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(300):
        process.kill()
        raise AssertionError("openclaw serve did not start:\n" + "".join(lines))
    url = re.search(r"(http://\S+/v1)", "".join(lines))
    assert url, lines
    return Front(process, url.group(1), lines)


@pytest.fixture(scope="module")
def cli() -> Iterator[Cli]:
    runner = Cli(make_state_dir(), {})
    yield runner
    runner.stop()
    shutil.rmtree(runner.state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def front(cli: Cli) -> Iterator[Front]:
    served = start_front(cli)
    yield served
    served.stop()


def test_models_lists_the_daemons_model(front: Front, cli: Cli) -> None:
    models = front.client().models.list()
    assert [m.id for m in models.data] == [cli.status()["model"]]


def test_a_warm_follow_up_reads_its_prefix_from_the_cache(front: Front) -> None:
    client = front.client()
    first_messages: Any = [SYSTEM, {"role": "user", "content": "Name a colour."}]
    first = client.chat.completions.create(
        model="local", messages=first_messages, max_tokens=16, temperature=0
    )
    reply = first.choices[0].message.content
    assert reply and first.choices[0].finish_reason in ("stop", "length")
    assert first.usage is not None and first.usage.prompt_tokens > 10
    follow_up: Any = [
        *first_messages,
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "Another one?"},
    ]
    second = client.chat.completions.create(
        model="local", messages=follow_up, max_tokens=16, temperature=0
    )
    usage = second.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    cached = usage.prompt_tokens_details.cached_tokens or 0
    # Everything up to the reply came from the cache: only the new user turn
    # (and the reply's trailer) was prefilled.
    assert cached >= first.usage.prompt_tokens + first.usage.completion_tokens
    assert usage.prompt_tokens - cached < 20


def test_a_stream_says_what_the_plain_reply_says_and_ends_with_usage(front: Front) -> None:
    client = front.client()
    messages: Any = [SYSTEM, {"role": "user", "content": "Count from one to five."}]
    plain = client.chat.completions.create(
        model="local", messages=messages, max_tokens=24, temperature=0
    )
    chunks = list(
        client.chat.completions.create(
            model="local",
            messages=messages,
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == plain.choices[0].finish_reason
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    # The same prompt again: all of it but the last token is reused.
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == last.usage.prompt_tokens - 1


def test_tools_calls_come_back_and_the_result_continues_warm(front: Front) -> None:
    client = front.client()
    messages: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(
        model="local",
        messages=messages,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,  # one call, then the end of the reply: all of it in the tape
        max_tokens=128,
        temperature=0,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    calls = choice.message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    arguments = json.loads(calls[0].function.arguments)
    assert isinstance(arguments.get("city"), str)
    follow_up: Any = [
        *messages,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny, 24 C."},
    ]
    second = client.chat.completions.create(
        model="local", messages=follow_up, tools=[WEATHER], max_tokens=32, temperature=0
    )
    # What a 135M model says after a tool result is its own affair (it may well
    # imitate the result, which ends its reply); the round trip is the point.
    assert second.choices[0].finish_reason in ("stop", "length", "tool_calls")
    usage = second.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert first.usage is not None
    # The reply's own tape was continued: its tokens came from the cache too (the
    # prefix cache alone would stop at the first prompt, whose reply it re-renders).
    cached = usage.prompt_tokens_details.cached_tokens or 0
    assert cached >= first.usage.prompt_tokens + first.usage.completion_tokens - 1


def test_a_streamed_tool_call_arrives_as_a_tool_calls_delta(front: Front) -> None:
    chunks = list(
        front.client().chat.completions.create(
            model="local",
            messages=[{"role": "user", "content": "Weather in Rome?"}],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_tokens=64,
            temperature=0,
            stream=True,
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [call for d in deltas for call in (d.tool_calls or [])]
    assert calls and calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    assert "city" in json.loads(calls[0].function.arguments or "{}")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_plain_completion(front: Front) -> None:
    done = front.client().completions.create(
        model="local", prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert done.choices[0].text.strip()
    assert done.usage is not None and done.usage.completion_tokens > 0


def test_bad_input_gets_a_400_naming_the_field_and_nothing_is_lost(front: Front) -> None:
    client = front.client()
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="local",
            messages=[{"role": "wizard", "content": "hi"}],  # type: ignore[misc, list-item]
        )
    assert "messages[0].role" in str(raised.value)
    request = urllib.request.Request(
        front.url + "/chat/completions", data=b"{not json", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(request, timeout=30)
    assert http.value.code == 400
    assert "not JSON" in json.loads(http.value.read())["error"]["message"]
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(front.url + "/nowhere", timeout=30)
    assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as wrong_method:
        urllib.request.urlopen(front.url + "/chat/completions", timeout=30)
    assert wrong_method.value.code == 405
    assert "takes POST" in json.loads(wrong_method.value.read())["error"]["message"]
    with pytest.raises(openai.BadRequestError) as too_many:
        client.chat.completions.create(
            model="local", messages=[{"role": "user", "content": "hi"}], max_tokens=0
        )
    assert too_many.value.param == "max_tokens"
    # The server still answers.
    ok = client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert ok.choices[0].message.content is not None


def test_a_client_hanging_up_mid_stream_stops_the_generation(front: Front) -> None:
    stream = front.client().chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
        max_tokens=2000,
        stream=True,
    )
    for index, _chunk in enumerate(stream):
        if index == 3:
            break
    stream.close()
    started = time.monotonic()
    after = front.client().chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert after.choices[0].message.content is not None
    # Not queued behind 2000 tokens of an abandoned story (~40 s on 2 cores).
    assert time.monotonic() - started < 20
    assert "client went away" in "".join(front.lines), front.lines[-5:]


def test_a_client_that_gives_up_waiting_stops_a_plain_request(front: Front) -> None:
    impatient = openai.OpenAI(base_url=front.url, api_key="x", max_retries=0, timeout=1.5)
    with pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(
            model="local",
            messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
            max_tokens=2000,
        )
    started = time.monotonic()
    after = front.client().chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert after.choices[0].message.content is not None
    assert time.monotonic() - started < 20  # the abandoned request was stopped


def test_web_pages_and_rebound_names_are_refused_without_a_key(front: Front) -> None:
    for headers in ({"Origin": "https://evil.example"}, {"Host": "evil.example:11435"}):
        request = urllib.request.Request(front.url + "/models", headers=headers, method="GET")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 403
    local = urllib.request.Request(
        front.url + "/models", headers={"Origin": "http://localhost:3000"}
    )
    with urllib.request.urlopen(local, timeout=30) as ok:
        assert ok.status == 200


def test_an_error_never_desyncs_a_kept_alive_connection(front: Front) -> None:
    host, port = front.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"model": "x", "input": "hi"})
    connection.request("POST", "/v1/responses", body=body)  # not a route here: 404
    response = connection.getresponse()
    assert response.status == 404 and response.getheader("Connection") == "close"
    response.read()
    connection.close()
    connection.request("GET", "/health")  # a new connection: answered, not garbled
    assert connection.getresponse().status == 200


def test_the_api_key_is_required_when_set(cli: Cli) -> None:
    guarded = start_front(cli, "--api-key", "s3cret")
    try:
        with pytest.raises(openai.AuthenticationError):
            guarded.client("wrong").models.list()
        assert guarded.client("s3cret").models.list().data
        assert "bearer token required" in "".join(guarded.lines)
    finally:
        guarded.stop()


def test_serving_off_loopback_needs_an_api_key(cli: Cli) -> None:
    proc = cli.run("serve", "--host", "0.0.0.0", "--port", "0", check=False, timeout=60)
    assert proc.returncode == 2
    assert "without an API key" in proc.stderr and "--api-key" in proc.stderr


def test_a_conversation_stays_warm_across_a_daemon_restart(front: Front, cli: Cli) -> None:
    client = front.client()
    saved = cli.state_dir / "cache" / "front-tapes"
    before = len(list(saved.glob("*.json")))
    messages: Any = [SYSTEM, {"role": "user", "content": "Name a fruit."}]
    first = client.chat.completions.create(
        model="local", messages=messages, max_tokens=12, temperature=0
    )
    # The reply's tape and the KV state are saved once the daemon is idle.
    assert wait_for(lambda: len(list(saved.glob("*.json"))) > before, timeout=30), "not saved"
    cli.run("daemon", "stop", timeout=60)
    follow_up: Any = [
        *messages,
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And a vegetable?"},
    ]
    # The front starts the daemon again; the prefix comes back from disk (L3).
    second = client.chat.completions.create(
        model="local", messages=follow_up, max_tokens=12, temperature=0
    )
    usage = second.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert first.usage is not None
    assert (usage.prompt_tokens_details.cached_tokens or 0) >= first.usage.prompt_tokens
    timings = second.model_extra["timings"] if second.model_extra else {}
    assert timings.get("cache_tier") == "L3", timings


def test_the_front_lists_in_help(cli: Cli) -> None:
    out = cli.run("--help").stdout
    assert re.search(r"serve\s+Serve an OpenAI-compatible API", out)
    serve_help = cli.run("serve", "--help").stdout
    for option in ("--host", "--port", "--api-key", "--model"):
        assert option in serve_help


def test_gemma_through_the_front_stays_warm_and_calls_tools(gemma_gguf: Path) -> None:
    """The second model family (Gemma 3, sliding window 512, its own template and
    tool-call format) behind the front: a follow-up past the window still reads its
    prefix from the cache, and a forced call comes back as tool_calls."""
    runner = Cli(make_state_dir(), {})
    served = start_front(runner, "--model", str(gemma_gguf))
    try:
        client = served.client()
        long_question = "Here is a list: " + ", ".join(f"item {n}" for n in range(300))
        messages: Any = [{"role": "user", "content": long_question + ". How many items?"}]
        first = client.chat.completions.create(
            model="gemma", messages=messages, max_tokens=12, temperature=0
        )
        assert first.usage is not None and first.usage.prompt_tokens > 600  # past the window
        follow_up: Any = [
            *messages,
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "And the last one?"},
        ]
        second = client.chat.completions.create(
            model="gemma", messages=follow_up, max_tokens=12, temperature=0
        )
        usage = second.usage
        assert usage is not None and usage.prompt_tokens_details is not None
        assert (usage.prompt_tokens_details.cached_tokens or 0) >= first.usage.prompt_tokens
        called = client.chat.completions.create(
            model="gemma",
            messages=[{"role": "user", "content": "What is the weather in Oslo?"}],
            tools=[WEATHER],
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=96,
            temperature=0,
        )
        calls = called.choices[0].message.tool_calls
        assert called.choices[0].finish_reason == "tool_calls" and calls
        assert calls[0].function.name == "get_weather"
        assert isinstance(json.loads(calls[0].function.arguments).get("city"), str)
    finally:
        served.stop()
        runner.stop()
        shutil.rmtree(runner.state_dir, ignore_errors=True)


def test_completions_are_traced_like_turns(front: Front, cli: Cli) -> None:
    front.client().chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Trace me."}], max_tokens=4
    )
    record: dict[str, Any] = {}

    def stored() -> bool:
        record.update(json.loads(cli.run("trace", "last", "--json").stdout))
        return record.get("sessionKey") == "openai-front"

    assert wait_for(stored, timeout=30), record
    assert {"model.prefill", "model.decode"} <= {s["name"] for s in record["spans"]}
    chart = cli.run("trace", "last").stdout
    assert "model.decode" in chart
    assert cli.run("stats").returncode == 0
    assert cli.run("doctor").returncode == 0
