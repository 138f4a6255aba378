"""Tracing end to end: real turns through the real CLI and daemon on the embedded model.

The stored trace of each turn covers the wall time the client observed, `trace`
draws it (terminal, JSON, SVG), `stats` aggregates exactly the stored turns,
and `metrics` parses as Prometheus text and counts the turns it served.
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from openclaw_daemon.wire import frames as protocol
from tests.conftest import OPENCLAW, Cli, make_state_dir, wait_for

pytestmark = pytest.mark.e2e

SESSION = "trace-a"
REQUIRED = {
    "cli.boot",
    "request.send",
    "reply.receive",
    "lane.wait",
    "session.load",
    "prompt.render",
    "prompt.tokenize",
    "cache.lookup",
    "cache.restore",
    "model.prefill",
    "model.decode",
    "session.persist",
    "cli.render",
}


@dataclass
class Turn:
    envelope: dict[str, Any]
    elapsed_ms: float  # the test's own clock around the whole CLI process

    @property
    def trace(self) -> dict[str, Any]:
        return dict(self.envelope["meta"]["trace"])


@dataclass
class Traced:
    cli: Cli
    turns: list[Turn]


def timed_turn(cli: Cli, message: str, *args: str) -> Turn:
    started = time.perf_counter()
    envelope = cli.turn(message, "--session-id", SESSION, "--max-tokens", "8", *args)
    return Turn(envelope, (time.perf_counter() - started) * 1000.0)


@pytest.fixture(scope="module")
def traced() -> Iterator[Traced]:
    """A fresh state dir; the first turn starts the daemon, two more are warm."""
    cli = Cli(make_state_dir(), {})
    try:
        turns = [
            timed_turn(cli, "Name a colour."),
            timed_turn(cli, "Name another."),
            timed_turn(cli, "And one more."),
        ]
        yield Traced(cli, turns)
    finally:
        cli.stop()
        shutil.rmtree(cli.state_dir, ignore_errors=True)


def stored(cli: Cli, *args: str) -> Any:
    return json.loads(cli.run("trace", *args, "--json").stdout)


def test_spans_cover_the_wall_time_the_client_observed(traced: Traced) -> None:
    for index, turn in enumerate(traced.turns):
        trace = turn.trace
        spans = trace["spans"]
        names = {s["name"] for s in spans}
        assert names >= REQUIRED, REQUIRED - names
        assert ("daemon.spawn" in names) == (index == 0)
        assert ("cli.connect" in names) == (index > 0)
        wall = trace["wallMs"]
        # No tools, so nothing overlaps: the plain sum is the covered time.
        total = sum(s["durationMs"] for s in spans)
        assert abs(total - wall) <= 0.05 * wall, (total, wall)
        assert trace["coverage"] >= 0.95
        # The trace's wall clock is the process's own: from its real start
        # (10 ms /proc resolution) to the rendered reply. The test's outside
        # view adds the trace report's round trip, exit and reaping; on two
        # busy cores (the daemon parks the KV state then) that has measured
        # 0-45 ms, hence the allowance.
        assert wall <= turn.elapsed_ms + 15
        assert wall >= 0.95 * turn.elapsed_ms - 60, (wall, turn.elapsed_ms)
        decode = next(s for s in spans if s["name"] == "model.decode")
        assert decode["startMs"] <= decode["firstTokenMs"] <= trace["ttftMs"] + 1


def test_stored_record_is_the_turn_the_client_saw(traced: Traced) -> None:
    last = traced.turns[-1].trace
    record = stored(traced.cli, "last")
    assert record["turnId"] == last["turnId"] and record["origin"] == "process start"
    assert [s["name"] for s in record["spans"]] == [s["name"] for s in last["spans"]]
    assert record["wallMs"] == last["wallMs"] and record["ttftMs"] == last["ttftMs"]
    assert record["cache"]["tier"] == "L1" and record["usage"]["cacheRead"] > 0
    shown = stored(traced.cli, "show", traced.turns[0].trace["turnId"][:6])
    assert shown["turnId"] == traced.turns[0].trace["turnId"]
    listed = stored(traced.cli, "list", "--session", SESSION)["turns"]
    assert [t["turnId"] for t in listed] == [t.trace["turnId"] for t in traced.turns]
    assert all("spans" not in t for t in listed)


def test_trace_svg_is_valid_and_has_every_phase(traced: Traced, tmp_path: Path) -> None:
    for turn in (traced.turns[0], traced.turns[-1]):
        path = tmp_path / f"{turn.trace['turnId']}.svg"
        traced.cli.run("trace", "show", turn.trace["turnId"], "--svg", str(path))
        root = ET.parse(path).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        texts = {"".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")}
        for span in turn.trace["spans"]:
            assert span["name"] in texts
    refused = traced.cli.run("trace", "last", "--svg", "/nonexistent/dir/x.svg", check=False)
    assert refused.returncode == 1 and "cannot write the SVG" in refused.stderr
    assert "Traceback" not in refused.stderr
    to_stdout = traced.cli.run("trace", "last", "--svg", "-").stdout
    assert ET.fromstring(to_stdout).tag == "{http://www.w3.org/2000/svg}svg"


def test_trace_draws_a_gantt_chart_in_the_terminal(traced: Traced) -> None:
    out = traced.cli.run("trace", "last").stdout
    for name in REQUIRED:
        assert name in out
    assert "first token" in out and "cache reused" in out


def test_stats_percentiles_match_the_stored_turns(traced: Traced) -> None:
    summary = json.loads(traced.cli.run("stats", "--session", SESSION, "--json").stdout)
    records = [
        stored(traced.cli, "show", row["turnId"])
        for row in stored(traced.cli, "list", "--session", SESSION)["turns"]
    ]
    assert summary["turns"] == len(records) == 3
    for key, field in (("ttftMs", "ttftMs"), ("turnMs", "wallMs"), ("residualMs", "residualMs")):
        values = [r[field] for r in records]
        expected = statistics.quantiles(values, n=100, method="inclusive")
        for q in (50, 90, 99):
            assert summary[key][f"p{q}"] == pytest.approx(expected[q - 1], abs=1e-3)
    prefill = [s for r in records for s in r["spans"] if s["name"] == "model.prefill"]
    rate = sum(s["tokens"] for s in prefill) / sum(s["durationMs"] / 1000 for s in prefill)
    # stats rounds the rate to 0.1 tok/s: under load (< 50 tok/s) that is more than rel=1e-3.
    assert summary["prefillTokPerS"] == pytest.approx(rate, rel=1e-3, abs=0.05)
    tiers = [r["cache"]["tier"] for r in records]
    assert summary["cache"]["lookups"]["L1"] == tiers.count("L1") >= 2
    assert summary["peakRssBytes"] == max(r["peakRssBytes"] for r in records) > 0
    # The first turn started the daemon; stats says what to do about it.
    assert any("start the daemon" in tip for tip in summary["suggestions"])
    recent = json.loads(traced.cli.run("stats", "--since", "1h", "--json").stdout)
    assert recent["turns"] >= 3
    for nonsense in ("yesterday", ""):
        bad = traced.cli.run("stats", "--since", nonsense, check=False)
        assert bad.returncode == 2 and "90s, 15m, 2h" in bad.stderr


def metric_families(cli: Cli) -> dict[str, Any]:
    text = cli.run("metrics").stdout
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], family: str, name: str, **labels: str) -> float:
    for item in families[family].samples:
        if item.name == name and all(item.labels.get(k) == v for k, v in labels.items()):
            return float(item.value)
    raise AssertionError(f"no {name} {labels}")


def test_metrics_parse_as_prometheus_text_and_count_each_turn(traced: Traced) -> None:
    before = metric_families(traced.cli)
    assert sample(before, "openclaw_daemon_up", "openclaw_daemon_up") == 1
    turns = sample(before, "openclaw_turns", "openclaw_turns_total", outcome="ok")
    assert turns >= 3
    prefills = sample(
        before,
        "openclaw_phase_duration_seconds",
        "openclaw_phase_duration_seconds_count",
        phase="model.prefill",
    )
    timed_turn(traced.cli, "Thanks.")
    after = metric_families(traced.cli)
    assert sample(after, "openclaw_turns", "openclaw_turns_total", outcome="ok") == turns + 1
    assert (
        sample(
            after,
            "openclaw_phase_duration_seconds",
            "openclaw_phase_duration_seconds_count",
            phase="model.prefill",
        )
        == prefills + 1
    )
    assert sample(after, "openclaw_ttft_seconds", "openclaw_ttft_seconds_count") == turns + 1
    assert sample(after, "openclaw_resident_memory_bytes", "openclaw_resident_memory_bytes") > 0


def test_metrics_output_file_is_written_whole(traced: Traced, tmp_path: Path) -> None:
    target = tmp_path / "openclaw.prom"
    traced.cli.run("metrics", "--output", str(target))
    families = list(text_string_to_metric_families(target.read_text()))
    assert any(f.name == "openclaw_turns" for f in families)
    assert [p.name for p in tmp_path.iterdir()] == ["openclaw.prom"]
    refused = traced.cli.run("metrics", "--output", str(tmp_path / "no" / "x.prom"), check=False)
    assert refused.returncode == 1 and "cannot write the metrics" in refused.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["openclaw.prom"]  # no temp file left


def test_agent_trace_flag_prints_the_chart_after_the_reply(traced: Traced) -> None:
    proc = traced.cli.run(
        "agent", "--local", "-m", "Bye.", "--session-id", SESSION, "--max-tokens", "8", "--trace"
    )
    assert "model.prefill" not in proc.stdout and proc.stdout.strip()
    assert "model.prefill" in proc.stderr and "first token" in proc.stderr


def test_a_bad_trace_report_is_refused_and_the_turn_still_stored(traced: Traced) -> None:
    """A raw client: a real turn, then a malformed report; the daemon says why and keeps
    the daemon-side record."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(120)
        sock.connect(traced.cli.status()["socket"])
        reader = sock.makefile("rb")

        def read(size: int) -> bytes:
            return reader.read(size)

        sock.sendall(protocol.encode(protocol.hello("test")))
        assert protocol.read_frame(read)["type"] == "hello"  # type: ignore[index]
        turn = {"type": "turn", "message": "Hi.", "sessionId": SESSION, "maxTokens": 4}
        sock.sendall(protocol.encode(turn))
        while True:
            frame = protocol.read_frame(read)
            assert frame is not None
            if frame["type"] == "done":
                turn_id = frame["result"]["turnId"]
                break
        sock.sendall(protocol.encode({"type": "report", "spans": "nonsense"}))
        reply = protocol.read_frame(read)
        assert reply is not None and reply["type"] == "error"
        assert reply["code"] == "bad_request" and "trace report" in reply["message"]
    record = stored(traced.cli, "show", turn_id)
    assert record["origin"] == "request received" and record["spans"][0]["name"] == "lane.wait"


def test_trace_and_metrics_without_turns_or_daemon(cli: Cli) -> None:
    last = cli.run("trace", "last", check=False)
    assert last.returncode == 1 and "no turns recorded yet" in last.stderr
    assert "openclaw agent" in last.stderr
    missing = cli.run("trace", "show", "feedface", check=False)
    assert missing.returncode == 1 and "trace list" in missing.stderr
    down = cli.run("metrics")
    families = {f.name: f for f in text_string_to_metric_families(down.stdout)}
    assert families["openclaw_daemon_up"].samples[0].value == 0
    assert list(families) == ["openclaw_daemon_up"]  # no counters that would read as resets
    assert "not running" in down.stderr
    assert json.loads(cli.run("stats", "--json").stdout)["turns"] == 0


def test_a_closed_stdout_stops_the_turn_quietly(traced: Traced) -> None:
    """``openclaw agent ... | head -c1``: the CLI stops the turn, exits as SIGPIPE
    would (141), prints no traceback, and the daemon keeps the turn's trace."""
    proc = subprocess.Popen(
        [str(OPENCLAW), "agent", "--local", "-m", "Count from 1 to 50, separated by spaces."]
        + ["--session-id", "pipe", "--max-tokens", "64"],
        env=traced.cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1)
    proc.stdout.close()  # the reader is gone
    returncode = proc.wait(timeout=60)
    stderr = proc.stderr.read().decode()
    assert returncode == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    # The daemon stores the cancelled turn once its worker has stopped it.
    assert wait_for(lambda: stored(traced.cli, "list", "--session", "pipe")["turns"], 30)
    [record] = stored(traced.cli, "list", "--session", "pipe")["turns"]
    assert record["status"] == "cancelled"
    decode = next(
        s
        for s in stored(traced.cli, "show", record["turnId"])["spans"]
        if s["name"] == "model.decode"
    )
    assert decode["interrupted"] == "cancelled" and decode["tokens"] < 64


def test_trace_json_and_svg_to_stdout_are_refused_together(traced: Traced) -> None:
    both = traced.cli.run("trace", "last", "--json", "--svg", "-", check=False)
    assert both.returncode == 2 and "both write to stdout" in both.stderr
    # With --json every failure is one JSON document on stdout, and no SVG.
    failure = json.loads(both.stdout)
    assert failure["ok"] is False and failure["error"]["type"] == "bad_request"


def test_metrics_output_dash_is_stdout(traced: Traced, tmp_path: Path) -> None:
    proc = traced.cli.run("metrics", "-o", "-", cwd=tmp_path)
    assert any(f.name == "openclaw_turns" for f in text_string_to_metric_families(proc.stdout))
    assert list(tmp_path.iterdir()) == []  # no file named "-"
