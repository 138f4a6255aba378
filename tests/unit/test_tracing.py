"""Unit tests of the trace record, its aggregation and its renderings (no model).

The end-to-end tests in test_e2e_trace.py check the same on real turns.
"""

from __future__ import annotations

import json
import statistics
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from openclaw_cli.views import trace_svg, trace_view, turn_stats
from openclaw_daemon.observability import metrics, turn_record
from openclaw_daemon.observability.tracing import Trace, TurnLog, covered_ms, scope_of
from openclaw_daemon.wire.errors import BadRequestError


def span(name: str, start: float, duration: float, **attrs: Any) -> dict[str, Any]:
    scope = scope_of(name)
    return {"name": name, "scope": scope, "startMs": start, "durationMs": duration, **attrs}


def daemon_result(**overrides: Any) -> dict[str, Any]:
    result = {
        "turnId": "abc123def456",
        "at": 1_000_000.0,
        "sessionId": "s-1",
        "sessionKey": "agent:main:work",
        "agentId": "main",
        "model": "tiny",
        "usage": {"input": 10, "output": 5, "cacheRead": 90, "cacheWrite": 0, "total": 105},
        "ttftMs": 46.0,
        "daemonMs": 60.0,
        "stopReason": "stop",
        "cache": {"tier": "L1", "cachedTokens": 90, "promptTokens": 100, "summary": "hit"},
        "steps": [{"toolCalls": [{"name": "read"}, {"name": "search"}]}],
        "spans": [
            span("lane.wait", 0.0, 0.5),
            span("session.load", 0.5, 1.5),
            span("model.prefill", 2.0, 30.0, tokens=10),
            span("tool.read", 32.0, 10.0),
            span("tool.search", 32.0, 12.0),  # parallel with tool.read
            span("model.decode", 44.0, 15.0, tokens=5, firstTokenMs=46.0),
            span("session.persist", 59.0, 1.0),
        ],
    }
    result.update(overrides)
    return result


def client_report(**overrides: Any) -> dict[str, Any]:
    report = {
        "type": "report",
        "turnId": "abc123def456",
        "spans": [
            {"name": "cli.boot", "startMs": 0.0, "durationMs": 50.0},
            {"name": "cli.connect", "startMs": 50.0, "durationMs": 1.0, "helloMs": 0.8},
            {"name": "cli.render", "startMs": 111.5, "durationMs": 0.5},
        ],
        "wallMs": 112.0,
        "ttftMs": 97.5,
        "daemonOffsetMs": 51.5,
    }
    report.update(overrides)
    return report


def test_covered_ms_merges_overlaps_and_nesting() -> None:
    spans = [span("a", 0, 10), span("b", 5, 10), span("c", 20, 5), span("d", 21, 1)]
    assert covered_ms(spans) == 15 + 5
    assert covered_ms([]) == 0


def test_record_puts_daemon_spans_on_the_client_timeline() -> None:
    record = turn_record.build(
        daemon_result(), turn_record.check_report(client_report()), memory={"rss": 1, "peak": 2}
    )
    assert record["schema"] == turn_record.SCHEMA and record["origin"] == "process start"
    starts = {s["name"]: s["startMs"] for s in record["spans"]}
    assert starts["lane.wait"] == 51.5 and starts["model.prefill"] == 53.5
    decode = next(s for s in record["spans"] if s["name"] == "model.decode")
    assert decode["firstTokenMs"] == 97.5  # moved with its span
    assert [s["startMs"] for s in record["spans"]] == sorted(starts.values())
    # Covered: 0-51 (boot, connect), 51.5-111.5 (daemon), 111.5-112 (render).
    assert record["coveredMs"] == pytest.approx(111.5)
    assert record["coverage"] == pytest.approx(111.5 / 112, abs=1e-4)
    # Residual: wall minus model and tool time (the parallel tools count once).
    assert record["residualMs"] == pytest.approx(112 - (30 + 12 + 15))
    assert record["tools"] == ["read", "search"] and record["peakRssBytes"] == 2
    connect = next(s for s in record["spans"] if s["name"] == "cli.connect")
    assert connect["helloMs"] == 0.8 and connect["scope"] == "request"


def test_record_without_a_client_report_keeps_the_daemon_timeline() -> None:
    record = turn_record.build(daemon_result(), None, memory={})
    assert record["origin"] == "request received"
    assert record["wallMs"] == 60.0 and record["ttftMs"] == 46.0
    assert record["spans"][0]["startMs"] == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        {"spans": "no"},
        {"spans": [{"name": "model.prefill", "startMs": 0, "durationMs": 1}]},
        {"spans": [{"name": "cli.boot", "startMs": "0", "durationMs": 1}]},
        {"wallMs": float("nan")},
        {"wallMs": True},
        {"daemonOffsetMs": None},
        {"spans": [{"name": "cli.boot", "startMs": 0, "durationMs": 1}] * 17},
        {"spans": [{"name": ["cli.boot"], "startMs": 0, "durationMs": 1}]},
        {"spans": [{"name": "cli.boot", "startMs": 0, "durationMs": -5}]},
        {"wallMs": 0},
        {"wallMs": 1e300},
        {"turnId": "someone-else"},
        {"type": "turn"},
    ],
)
def test_a_bad_report_is_refused_with_what_is_wrong(bad: dict[str, Any]) -> None:
    with pytest.raises(BadRequestError, match="trace report"):
        turn_record.check_report(client_report(**bad), turn_id="abc123def456")


def test_turn_log_reads_across_rotation_and_skips_damaged_lines(tmp_path: Any) -> None:
    log = TurnLog(tmp_path / "turns.jsonl", max_bytes=200)
    for index in range(6):
        log.append({"turnId": str(index), "pad": "x" * 60})
    with log.path.open("ab") as handle:
        handle.write(b"\xff\xfe not utf-8\n[1, 2]\n")
        handle.write(b'{"turnId": "torn')
    assert log.rotated.exists()
    # Rotation keeps one older file: the newest records are all there, in order.
    ids = [r["turnId"] for r in log.read(limit=None)]
    assert ids == [str(i) for i in range(6 - len(ids), 6)] and len(ids) >= 3
    assert [r["turnId"] for r in log.read(limit=2)] == ["4", "5"]


def test_a_failed_turn_keeps_its_daemon_spans() -> None:
    clock = iter([0.0, 0.6]).__next__  # the trace's origin, then the failure
    trace = Trace(clock=clock)
    trace.add("lane.wait", 0.0, 0.010)
    trace.add("cache.lookup", 0.010, 0.011, cachedTokens=600, tier="L2")
    trace.add("cache.restore", 0.011, 0.012, tier="L2", tokens=590)  # the applied prefix
    trace.add("model.prefill", 0.012, 0.5, tokens=40, cachedTokens=590, interrupted="cancelled")
    record = turn_record.build_failed(
        trace,
        turn_id="feed00000000",
        session_id="work",
        session_key="agent:main:explicit:work",
        agent_id="main",
        status="timeout",
        error="took too long",
        model="tiny",
        memory={},
    )
    assert record["status"] == "timeout" and record["error"] == "took too long"
    assert record["origin"] == "request received" and record["wallMs"] == 600.0
    assert record["sessionKey"] == "agent:main:explicit:work"
    names = ["lane.wait", "cache.lookup", "cache.restore", "model.prefill"]
    assert [s["name"] for s in record["spans"]] == names
    assert record["spans"][-1]["interrupted"] == "timeout"  # why the turn ended
    # What it did before it stopped: 590 tokens from L2, 40 prefilled, none decoded.
    assert record["usage"] == {
        "input": 40,
        "output": 0,
        "cacheRead": 590,
        "cacheWrite": 0,
        "total": 630,
    }
    assert record["cache"] == {"tier": "L2", "cachedTokens": 590}
    registry = metrics.Metrics()
    registry.observe_turn(record)
    families = {f.name: f for f in text_string_to_metric_families(registry.render([]))}
    outcomes = {s.labels["outcome"]: s.value for s in families["openclaw_turns"].samples}
    assert outcomes == {"ok": 0.0, "timeout": 1.0}
    assert "openclaw_turn_duration_seconds" not in families  # not a client-observed turn


def test_metrics_parse_as_prometheus_text_and_count_turns() -> None:
    registry = metrics.Metrics(tool_names=frozenset({"read"}))
    report = turn_record.check_report(client_report())
    record = turn_record.build(daemon_result(), report, memory={})
    registry.observe_turn(record)
    registry.observe_turn(record)
    registry.turn_failed("timeout")
    text = registry.render([("openclaw_model_info", 1.0, {"model": 'we"ird\\name\n'})])
    families = {f.name: f for f in text_string_to_metric_families(text)}
    turns = {s.labels["outcome"]: s.value for s in families["openclaw_turns"].samples}
    assert turns == {"ok": 2.0, "timeout": 1.0}
    ttft = families["openclaw_ttft_seconds"].samples
    count = next(s.value for s in ttft if s.name.endswith("_count"))
    total = next(s.value for s in ttft if s.name.endswith("_sum"))
    assert count == 2 and total == pytest.approx(2 * 0.0975)
    buckets = [s.value for s in ttft if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == 2  # cumulative, +Inf = count
    phases = {s.labels["phase"] for s in families["openclaw_phase_duration_seconds"].samples}
    assert {"cli.boot", "model.prefill", "tool.read"} <= phases
    tools = {s.labels["tool"]: s.value for s in families["openclaw_tool_calls"].samples}
    assert tools == {"read": 2.0, "other": 2.0}  # a name the daemon does not know is pooled
    lookups = {s.labels["tier"]: s.value for s in families["openclaw_cache_lookups"].samples}
    assert lookups == {"L1": 2.0, "L2": 0.0, "L3": 0.0, "none": 0.0}
    info = families["openclaw_model_info"].samples[0]
    assert info.labels["model"] == 'we"ird\\name\n'
    down = {f.name: f for f in text_string_to_metric_families(metrics.down())}
    assert down["openclaw_daemon_up"].samples[0].value == 0


def test_percentile_matches_the_inclusive_method() -> None:
    values = [5.0, 1.0, 9.0, 3.0, 7.5, 2.25, 11.0]
    reference = statistics.quantiles(values, n=100, method="inclusive")
    for q in (50, 90, 99):
        assert turn_stats.percentile(values, q) == pytest.approx(reference[q - 1])
    assert turn_stats.percentile([], 50) is None
    assert turn_stats.percentile([4.0], 99) == 4.0


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("1.5d", 129600), ("30", 30)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert turn_stats.parse_duration(text) == seconds


def test_parse_duration_refuses_nonsense() -> None:
    with pytest.raises(BadRequestError, match="duration"):
        turn_stats.parse_duration("yesterday")


def _records(n: int, **cache: Any) -> list[dict[str, Any]]:
    out = []
    for index in range(n):
        result = daemon_result(turnId=f"t{index}", at=1000.0 + index)
        if cache:
            result["cache"] = {**result["cache"], **cache}
        out.append(turn_record.build(result, turn_record.check_report(client_report()), memory={}))
    return out


def test_stats_summary_and_suggestions_come_from_the_data() -> None:
    clean = _records(4)
    summary = turn_stats.summarize(clean)
    assert summary["turns"] == 4 and summary["cache"]["lookups"]["L1"] == 4
    assert summary["cache"]["tokenHitRate"] == 0.9
    assert summary["prefillTokPerS"] == pytest.approx(10 / 0.030, rel=1e-3)
    assert summary["suggestions"] == []
    changed = _records(3, tier="L1", divergence={"segment": "system message"})
    summary = turn_stats.summarize(clean + changed)
    assert any("system prompt changed in 3 of 7 turns" in tip for tip in summary["suggestions"])
    selected = turn_stats.select(clean + changed, since_s=2.5, now=1003.0)
    assert [r["turnId"] for r in selected] == ["t1", "t2", "t3", "t1", "t2"]


def _waited(behind: list[str], ms: float) -> dict[str, Any]:
    spans = [span("lane.wait", 0.0, ms, behind=behind), span("model.prefill", ms, 30.0, tokens=10)]
    result = daemon_result(spans=spans)
    return turn_record.build(result, turn_record.check_report(client_report()), memory={})


def test_lane_waits_are_explained_by_what_the_turn_waited_behind() -> None:
    behind_job = _waited(["park", "prefill-ahead:agent:main:work"], 800.0)
    chart_notes = trace_view.cache_line(behind_job)
    assert "lane.wait: 800.0 ms behind park, prefill-ahead:agent:main:work" in chart_notes
    assert "lane.wait: 800.0 ms behind park" in trace_svg.render(behind_job)
    [tip] = [t for t in turn_stats.summarize([behind_job])["suggestions"] if "lane.wait" in t]
    assert "behind background work" in tip and "OPENCLAW_PREFILL_AHEAD=0" in tip
    behind_turn = _waited(["turn:main/other"], 800.0)
    [tip] = [t for t in turn_stats.summarize([behind_turn])["suggestions"] if "lane.wait" in t]
    assert "one at a time" in tip and "--parallel" in tip and "background" not in tip
    # No wait worth a line: nothing said.
    assert "lane.wait" not in trace_view.cache_line(_records(1)[0])


def test_a_decode_that_shared_steps_with_other_turns_says_so() -> None:
    spans = [span("model.decode", 0.0, 500.0, tokens=40, steps=40, sharedSteps=31, mostSequences=4)]
    record = turn_record.build(
        daemon_result(spans=spans), turn_record.check_report(client_report()), memory={}
    )
    notes = trace_view.cache_line(record)
    assert "model.decode: 31 of 40 steps shared with other turns (up to 4 sequences" in notes
    alone = turn_record.build(
        daemon_result(spans=[span("model.decode", 0.0, 500.0, tokens=40)]),
        turn_record.check_report(client_report()),
        memory={},
    )
    assert "shared" not in trace_view.cache_line(alone)


def test_session_filter_accepts_id_key_or_short_name() -> None:
    record = _records(1)[0]
    for name in ("s-1", "agent:main:work", "work"):
        assert turn_stats.matches_session(record, name)
    assert not turn_stats.matches_session(record, "ork")


def test_svg_is_valid_and_names_every_phase() -> None:
    record = _records(1)[0]
    record["spans"].append(span("tool.o'<b>\"", 100, 1))  # names come from model output
    svg = trace_svg.render(record)
    root = ET.fromstring(svg)
    texts = {"".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")}
    for item in record["spans"]:
        assert item["name"] in texts
    assert any("first token" in t for t in texts)


def test_terminal_chart_draws_every_phase_and_marks_the_first_token() -> None:
    record = _records(1)[0]
    console = Console(record=True, width=110, color_system=None)
    trace_view.print_chart(record, console=console)
    text = console.export_text()
    for item in record["spans"]:
        assert item["name"] in text
    decode_row = next(line for line in text.splitlines() if line.startswith("model.decode"))
    assert trace_view.FIRST_TOKEN_MARK in decode_row
    render_row = next(line for line in text.splitlines() if line.startswith("cli.render"))
    assert "▏" in render_row  # a half-millisecond span still shows


def test_stored_record_round_trips_as_json() -> None:
    record = _records(1)[0]
    assert json.loads(json.dumps(record)) == record
