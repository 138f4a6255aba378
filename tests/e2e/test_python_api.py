"""The Python API (``openclaw_cli.Client`` / ``AsyncClient``) on the real daemon and
model: every example of docs/python-api.md runs as written, and the calls keep
their promises (the CLI's envelope, ordered events, cancel, auto-start, errors)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from openclaw_cli import AsyncClient, Client
from openclaw_cli.client import Done, OpenClawError, Token
from tests.conftest import Cli, make_state_dir

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def state() -> Iterator[Path]:
    root = make_state_dir()
    yield root
    Cli(root, {}).stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("number", range(len(EXAMPLES)))
def test_every_example_of_the_doc_runs(state: Path, tmp_path: Path, number: int) -> None:
    assert len(EXAMPLES) >= 6
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    env["OPENCLAW_STATE_DIR"] = str(state)
    proc = subprocess.run(
        [sys.executable, "-c", EXAMPLES[number]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), "the example printed nothing"
    if "ask=ask" in EXAMPLES[number]:
        # Asked, answered no: the write was refused and nothing was written.
        assert "write wants write" in proc.stdout and "refused" in proc.stdout, proc.stdout
        assert not any(tmp_path.iterdir())
    elif "tools=" in EXAMPLES[number]:
        assert "calling read" in proc.stdout and "Tuesday" in proc.stdout, proc.stdout
    if "OpenClawError" in EXAMPLES[number]:
        assert "refused: invalid session" in proc.stdout


def test_turn_gives_the_clis_envelope_and_a_stored_trace(state: Path) -> None:
    client = Client(state_dir=state)
    envelope = client.turn("Say OK.", session="api-env", max_tokens=4)
    cli = Cli(state, {}).turn("Say OK.", "--session-id", "api-env-cli", "--max-tokens", "4")
    assert envelope.keys() == cli.keys()
    assert envelope["meta"].keys() == cli["meta"].keys()
    assert envelope["payloads"][0]["text"] == cli["payloads"][0]["text"]
    turn_id = envelope["meta"]["trace"]["turnId"]
    record = client.trace(turn_id[:8])
    assert record["turnId"] == turn_id
    assert "api.connect" in {span["name"] for span in record["spans"]}
    assert 0 < record["wallMs"] < 120_000  # from the call, not from the process start
    assert client.status()["pid"] > 0  # type: ignore[index]


def test_stream_orders_its_events_and_cancel_stops_the_turn(state: Path) -> None:
    client = Client(state_dir=state)
    events = list(client.stream("Name two animals.", session="api-stream", max_tokens=12))
    assert isinstance(events[-1], Done) and not any(isinstance(e, Done) for e in events[:-1])
    text = "".join(e.text for e in events if isinstance(e, Token))
    assert text and text == events[-1].text
    assert any(e.name == "model.decode" for e in events if type(e).__name__ == "Phase")

    cancel = threading.Event()
    tokens = 0
    with pytest.raises(OpenClawError) as stopped:
        for event in client.stream(
            "Write a long story about the sea.", session="api-cancel", max_tokens=400,
            cancel=cancel,
        ):  # fmt: skip
            tokens += isinstance(event, Token)
            if tokens == 3:
                cancel.set()
    assert stopped.value.code == "cancelled"
    assert tokens < 100
    # The session is usable after the cancel.
    assert client.turn("Say yes.", session="api-cancel", max_tokens=4)["payloads"]


def test_async_client_runs_turns_and_streams(state: Path) -> None:
    async def run() -> tuple[list[str], str]:
        client = AsyncClient(state_dir=state)
        both = await asyncio.gather(
            client.turn("Say one.", session="api-async-a", max_tokens=4),
            client.turn("Say two.", session="api-async-b", max_tokens=4),
        )
        pieces = [
            e.text async for e in client.stream("Say three.", max_tokens=6) if isinstance(e, Token)
        ]
        return [b["meta"]["agentMeta"]["sessionId"] for b in both], "".join(pieces)

    sessions, streamed = asyncio.run(run())
    assert sessions == ["api-async-a", "api-async-b"] and streamed


def test_a_client_starts_the_daemon_and_bad_input_raises() -> None:
    root = make_state_dir()
    try:
        client = Client(state_dir=root)
        assert client.status() is None
        assert client.turn("Say hi.", max_tokens=4)["payloads"][0]["text"]
        assert client.status() is not None
        rows = client.sessions.list()
        assert [r["key"] for r in rows] == ["agent:main:main"]
        with pytest.raises(OpenClawError, match="invalid session"):
            client.turn("hi", session="../escape")
        with pytest.raises(OpenClawError, match="no turns|match"):
            client.trace("ffffffffff")
        assert json.loads(Cli(root, {}).run("sessions", "--json").stdout)["totalCount"] == 1
        assert client.stop_daemon() and client.status() is None
    finally:
        Cli(root, {}).stop()
        shutil.rmtree(root, ignore_errors=True)
