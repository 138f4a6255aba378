"""End to end: lifecycle and bad input. Every failure is a clear error, nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import time
from pathlib import Path

import msgpack
import pytest

from openclaw_daemon.observability.turn_record import prompt_tokens
from openclaw_daemon.wire import frames as protocol
from tests.conftest import Cli, read_frame, transcript, wait_for

pytestmark = pytest.mark.e2e


def raw_connection(cli: Cli) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(cli.state_dir / "run" / "daemon.sock"))
    return sock


def test_restart_then_continue_the_session(cli: Cli) -> None:
    first = cli.turn("Remember the colour teal.", "--session-id", "keep", "--max-tokens", "12")
    pid = cli.status()["pid"]
    cli.run("daemon", "restart")
    assert cli.status()["pid"] != pid
    second = cli.turn("Which colour?", "--session-id", "keep", "--max-tokens", "12")
    usage = second["meta"]["agentMeta"]["usage"]
    # history reloaded
    assert prompt_tokens(usage) > prompt_tokens(first["meta"]["agentMeta"]["usage"])
    roles = [
        e["message"]["role"]
        for e in transcript(second["meta"]["agentMeta"]["sessionFile"])
        if e["type"] == "message"
    ]
    assert roles == ["user", "assistant", "user", "assistant"]
    cli.run("daemon", "stop")
    assert cli.status()["running"] is False
    # The next turn starts the daemon again by itself, and says so in the trace.
    third = cli.turn("And again?", "--session-id", "keep", "--max-tokens", "4")
    assert "daemon.spawn" in [s["name"] for s in third["meta"]["trace"]["spans"]]


def test_killed_daemon_leaves_nothing_that_blocks_the_next_turn(cli: Cli) -> None:
    cli.turn("Hi.", "--max-tokens", "2")
    pid = cli.status()["pid"]
    os.kill(pid, signal.SIGKILL)
    assert wait_for(
        lambda: (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )
    )
    assert (cli.state_dir / "run" / "daemon.sock").exists()  # stale socket left behind
    status = cli.status()
    assert status["running"] is False and status["cleanedStalePid"] == pid
    envelope = cli.turn("Hi again.", "--max-tokens", "2")
    assert envelope["payloads"][0]["text"]
    assert cli.status()["pid"] != pid


def test_client_disconnect_mid_stream_cancels_and_daemon_keeps_serving(cli: Cli) -> None:
    cli.run("daemon", "start")
    served = cli.status()["turnsServed"]
    sock = raw_connection(cli)
    sock.sendall(protocol.encode(protocol.hello("test")))
    assert read_frame(sock)["type"] == "hello"
    sock.sendall(
        protocol.encode(
            {
                "type": "turn",
                "message": "Write a very long story about the sea.",
                "sessionId": "cut",
                "maxTokens": 4000,
            }
        )
    )
    kinds = []
    while "token" not in kinds:
        kinds.append(read_frame(sock)["type"])
    sock.close()
    # The daemon answers the next turn at once; the cancelled one is not
    # counted as served, but what it streamed is kept, marked aborted.
    assert wait_for(lambda: cli.status()["queued"] == 0)
    envelope = cli.turn("Say hi.", "--session-id", "cut", "--max-tokens", "4", timeout=60)
    assert envelope["payloads"][0]["text"]
    assert cli.status()["turnsServed"] == served + 1
    entries = transcript(envelope["meta"]["agentMeta"]["sessionFile"])
    messages = [e["message"] for e in entries if e["type"] == "message"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["stopReason"] == "aborted"


def test_malformed_frames_get_errors_and_the_daemon_survives(cli: Cli) -> None:
    cli.run("daemon", "start")
    cases = [
        struct.pack(">I", protocol.MAX_FRAME_BYTES + 1),  # too large
        struct.pack(">I", 1) + b"\xc1",  # not msgpack
        protocol.encode({"type": "hello", "version": 999, "client": "old"}),
    ]
    expected = ["protocol", "protocol", "version_mismatch"]
    for data, code in zip(cases, expected, strict=True):
        sock = raw_connection(cli)
        sock.sendall(data)
        frame = read_frame(sock)
        assert frame["type"] == "error" and frame["code"] == code, frame
        sock.close()
    sock = raw_connection(cli)
    sock.sendall(protocol.encode(protocol.hello("test")))
    read_frame(sock)
    sock.sendall(struct.pack(">I", 3) + msgpack.packb({"type": 1})[:3])
    sock.close()
    assert cli.status()["running"] is True
    assert cli.turn("Say ok.", "--max-tokens", "3")["payloads"][0]["text"]


def test_missing_and_non_gguf_model_paths_are_clear_errors(cli: Cli, tmp_path: Path) -> None:
    missing = cli.run("agent", "-m", "hi", "--model", str(tmp_path / "nope.gguf"), check=False)
    assert missing.returncode == 1
    assert "model file not found" in missing.stderr and "Traceback" not in missing.stderr
    text_file = tmp_path / "notes.gguf"
    text_file.write_text("hello")
    wrong = cli.run("agent", "-m", "hi", "--model", str(text_file), check=False)
    assert wrong.returncode == 1 and "not a GGUF model file" in wrong.stderr
    assert not (cli.state_dir / "run" / "daemon.sock").exists()  # no daemon was started


def test_daemon_that_fails_to_start_shows_its_log_tail(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(64))  # right magic, garbage inside
    cli.extra_env["OPENCLAW_MODEL"] = str(bad)
    proc = cli.run("agent", "-m", "hi", check=False)
    assert proc.returncode == 1
    assert "daemon exited with code" in proc.stderr
    assert "Log tail" in proc.stderr and "could not load" in proc.stderr


def test_prompt_longer_than_the_context_window(cli: Cli) -> None:
    # The head (tool definitions and system prompt) is ~660 tokens: it fits in
    # 1024, the message does not.
    cli.extra_env["OPENCLAW_N_CTX"] = "1024"
    proc = cli.run("agent", "-m", "word " * 1500, "--session-id", "big", check=False)
    assert proc.returncode == 1
    assert "context window holds 1024" in proc.stderr and "the prompt is" in proc.stderr
    listing = json.loads(cli.run("sessions", "show", "big", "--json").stdout)
    assert [e["type"] for e in listing["entries"]] == ["session"]  # nothing half-written
    assert cli.turn("Hi.", "--session-id", "big", "--max-tokens", "2")["payloads"][0]["text"]


def test_timeout_stops_the_turn_and_exits_124(cli: Cli) -> None:
    cli.run("daemon", "start")
    started = time.monotonic()
    proc = cli.run(
        "agent",
        "-m",
        "lorem ipsum dolor " * 600,
        "--session-id",
        "slow",
        "--timeout",
        "1",
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 124, proc.stderr
    assert "--timeout 1" in proc.stderr
    assert elapsed < 8, f"took {elapsed:.1f}s; the prefill should have been cancelled"
    # The timed-out turn keeps its trace: where its second went.
    [record] = json.loads(cli.run("trace", "list", "--session", "slow", "--json").stdout)["turns"]
    shown = json.loads(cli.run("trace", "show", record["turnId"], "--json").stdout)
    assert shown["status"] == "timeout" and "--timeout" in shown["error"]
    prefill = next(s for s in shown["spans"] if s["name"] == "model.prefill")
    assert prefill["interrupted"] == "timeout" and prefill["durationMs"] > 500
    # The record names its session and counts what was prefilled before the stop.
    assert shown["sessionKey"] == "agent:main:explicit:slow"
    usage = shown["usage"]
    prompt = next(s for s in shown["spans"] if s["name"] == "prompt.tokenize")["tokens"]
    # Cut short: whole 256-token batches done before the stop, fewer than the prompt.
    assert usage["input"] % 256 == 0 and prompt_tokens(usage) < prompt
    assert usage["output"] == 0 and shown["cache"]["tier"] in ("none", "L1")
    assert "ended: timeout" in cli.run("trace", "show", record["turnId"]).stdout
    assert cli.turn("Hi.", "--max-tokens", "2", timeout=30)["payloads"][0]["text"]


def test_a_timed_out_turn_still_answers_json_and_trace(cli: Cli) -> None:
    """Scripts get an envelope saying the turn was aborted, and --trace its chart."""
    cli.run("daemon", "start")
    proc = cli.run(
        "agent",
        "-m",
        "lorem ipsum dolor " * 600,
        "--session-id",
        "slow-json",
        "--timeout",
        "1",
        "--json",
        "--trace",
        check=False,
    )
    assert proc.returncode == 124, proc.stderr
    envelope = json.loads(proc.stdout)
    meta = envelope["meta"]
    assert meta["aborted"] is True and meta["stopReason"] == "timeout"
    assert meta["error"]["code"] == "timeout" and "--timeout 1" in meta["error"]["message"]
    assert meta["agentMeta"]["sessionKey"] == "agent:main:explicit:slow-json"
    [listed] = json.loads(cli.run("trace", "list", "--session", "slow-json", "--json").stdout)[
        "turns"
    ]
    assert meta["trace"]["turnId"] == listed["turnId"]
    assert "model.prefill" in {s["name"] for s in meta["trace"]["spans"]}
    assert "ended: timeout" in proc.stderr and "model.prefill" in proc.stderr  # the chart
    assert "--timeout 1" in proc.stderr  # and the error, as without --json


def test_refuses_a_socket_owned_by_another_user(cli: Cli) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to chown a socket to another uid")
    run_dir = cli.state_dir / "run"
    run_dir.mkdir(mode=0o700)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(run_dir / "daemon.sock"))
    sock.listen(1)
    os.chown(run_dir / "daemon.sock", 4242, 4242)
    proc = cli.run("agent", "-m", "hi", check=False)
    sock.close()
    assert proc.returncode == 1
    assert "belongs to uid 4242" in proc.stderr


def test_empty_message_and_bad_options(cli: Cli) -> None:
    empty = cli.run("agent", "-m", "   ", check=False)
    assert empty.returncode == 2 and "message is empty" in empty.stderr
    bogus = cli.run("agent", "-m", "hi", "--tool-choice", "bogus", check=False)
    assert bogus.returncode == 2 and "--tool-choice must be one of" in bogus.stderr
    unallowed = cli.run("agent", "-m", "hi", "--tool-choice", "write", check=False)
    assert unallowed.returncode == 2 and "add --allow write" in unallowed.stderr
    assert not (cli.state_dir / "run" / "daemon.json").exists()  # rejected before starting it
    verbose = cli.run("agent", "-m", "hi", "--verbose", "loud", check=False)
    assert verbose.returncode == 2 and "--verbose" in verbose.stderr


def test_daemon_ignores_a_stray_package_in_the_working_directory(cli: Cli, tmp_path: Path) -> None:
    # `python -m openclaw_daemon.serve.server` would import this one if the daemon
    # were spawned in the user's working directory.
    stray = tmp_path / "openclaw_daemon"
    stray.mkdir()
    (stray / "__init__.py").write_text("")
    (stray / "server.py").write_text("raise SystemExit('imported the stray package')\n")
    envelope = cli.turn("Say hi", "--max-tokens", "3", cwd=tmp_path)
    assert envelope["payloads"][0]["text"].strip()
