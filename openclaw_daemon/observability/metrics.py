"""The daemon's counters and histograms, in Prometheus text exposition format 0.0.4.

Fed one stored turn record at a time (``observe_turn``), so ``openclaw
metrics`` and ``openclaw stats`` count the same things: turn and first-token
times, the framework residual, each phase, tokens by source, cache lookups by
tier and tool calls. Gauges (memory, cache sizes, uptime) are read when the
metrics are rendered. Counters start at zero with the daemon, as Prometheus
expects of a process; the turn log keeps the history.

Written by hand rather than with prometheus_client: it is a few dozen lines
and keeps the daemon's dependencies down; the tests parse the output with
prometheus_client's parser.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openclaw_daemon.wire.messages import TIERS

Labels = tuple[tuple[str, str], ...]

# Seconds; spans from a sub-millisecond tokenize to a cold multi-minute prefill.
TIME_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip

FAMILIES: dict[str, tuple[str, str]] = {
    "openclaw_turns_total": ("counter", "Turns finished, by outcome (ok or the error code)."),
    "openclaw_turn_duration_seconds": (
        "histogram",
        "Client-observed wall time of a turn, from CLI process start to the rendered reply.",
    ),
    "openclaw_ttft_seconds": (
        "histogram",
        "Time to first token as the client saw it, from CLI process start.",
    ),
    "openclaw_framework_residual_seconds": (
        "histogram",
        "Wall time of a turn not spent in the model or in tools.",
    ),
    "openclaw_phase_duration_seconds": ("histogram", "Duration of each traced phase."),
    "openclaw_prompt_tokens_total": (
        "counter",
        "Prompt tokens, by source: read from the KV cache or prefilled.",
    ),
    "openclaw_generated_tokens_total": ("counter", "Tokens decoded."),
    "openclaw_prefill_seconds_total": ("counter", "Seconds spent prefilling."),
    "openclaw_decode_seconds_total": ("counter", "Seconds spent decoding."),
    "openclaw_cache_lookups_total": (
        "counter",
        "Prefix-cache lookups at the start of a turn, by the tier that served them (none: miss).",
    ),
    "openclaw_tool_calls_total": ("counter", "Tool calls, by tool."),
    "openclaw_daemon_up": ("gauge", "1 while the daemon serves."),
    "openclaw_daemon_start_time_seconds": ("gauge", "Unix time the daemon started."),
    "openclaw_resident_memory_bytes": ("gauge", "Daemon resident set size."),
    "openclaw_peak_resident_memory_bytes": ("gauge", "Daemon peak resident set size."),
    "openclaw_cache_bytes": ("gauge", "Bytes held by a prefix-cache tier."),
    "openclaw_cache_entries": ("gauge", "Entries held by a prefix-cache tier."),
    "openclaw_compactions_total": ("counter", "Session compactions since the daemon started."),
    "openclaw_live_sessions": ("gauge", "Sessions with a token tape in memory."),
    "openclaw_model_info": ("gauge", "The model being served (value 1)."),
}


@dataclass
class Histogram:
    buckets: tuple[float, ...] = TIME_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * len(TIME_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1
        self.total += value
        self.count += 1


def _labels(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


class Metrics:
    def __init__(self, tool_names: frozenset[str] = frozenset()) -> None:
        self._lock = threading.Lock()
        self.tool_names = tool_names
        self.counters: dict[tuple[str, Labels], float] = {}
        self.histograms: dict[tuple[str, Labels], Histogram] = {}
        # Series that exist from the start, so rate() and alerts see zeros.
        self.inc("openclaw_turns_total", 0, outcome="ok")
        for tier in TIERS:
            self.inc("openclaw_cache_lookups_total", 0, tier=tier)
        for source in ("cache", "prefill"):
            self.inc("openclaw_prompt_tokens_total", 0, source=source)
        for name in (
            "openclaw_generated_tokens_total",
            "openclaw_prefill_seconds_total",
            "openclaw_decode_seconds_total",
        ):
            self.inc(name, 0)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, _labels(**labels))
        with self._lock:
            self.counters[key] = self.counters.get(key, 0.0) + amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = (name, _labels(**labels))
        with self._lock:
            self.histograms.setdefault(key, Histogram()).observe(value)

    def observe_turn(self, record: Mapping[str, Any]) -> None:
        """Count one stored turn record (see ``turn_record``).

        The client-side histograms (turn time, first token, residual) take only
        turns the CLI reported on, so they all mean what their HELP says; the
        phases count every turn, failed ones included.
        """
        self.inc("openclaw_turns_total", outcome=str(record.get("status", "ok")))
        if record.get("status", "ok") == "ok" and record.get("origin") == "process start":
            self.observe("openclaw_turn_duration_seconds", record["wallMs"] / 1000.0)
            if record.get("ttftMs") is not None:
                self.observe("openclaw_ttft_seconds", record["ttftMs"] / 1000.0)
            self.observe("openclaw_framework_residual_seconds", record["residualMs"] / 1000.0)
        usage = record.get("usage") or {}
        self.inc("openclaw_prompt_tokens_total", usage.get("cacheRead", 0), source="cache")
        self.inc("openclaw_prompt_tokens_total", usage.get("input", 0), source="prefill")
        self.inc("openclaw_generated_tokens_total", usage.get("output", 0))
        tier = (record.get("cache") or {}).get("tier")
        if tier in TIERS:
            self.inc("openclaw_cache_lookups_total", tier=tier)
        for span in record["spans"]:
            seconds = span["durationMs"] / 1000.0
            name = span["name"]
            if name.startswith("tool."):
                # Tool names come from the model's output: unknown ones are
                # pooled, so a chatty model cannot grow the label set.
                tool = name[len("tool.") :]
                tool = tool if tool in self.tool_names else "other"
                name = f"tool.{tool}"
                self.inc("openclaw_tool_calls_total", tool=tool)
            self.observe("openclaw_phase_duration_seconds", seconds, phase=name)
            if name == "model.prefill":
                self.inc("openclaw_prefill_seconds_total", seconds)
            elif name == "model.decode":
                self.inc("openclaw_decode_seconds_total", seconds)

    def turn_failed(self, code: str) -> None:
        self.inc("openclaw_turns_total", outcome=code)

    def render(self, gauges: list[tuple[str, float, dict[str, str]]]) -> str:
        """The exposition text: every family with samples, HELP and TYPE first."""
        with self._lock:
            counters = dict(self.counters)
            histograms = {
                key: Histogram(h.buckets, list(h.counts), h.total, h.count)
                for key, h in self.histograms.items()
            }
        samples: dict[str, list[str]] = {}
        for (name, labels), value in sorted(counters.items()):
            samples.setdefault(name, []).append(_sample(name, labels, value))
        for (name, labels), histogram in sorted(histograms.items()):
            lines = samples.setdefault(name, [])
            for bound, count in zip(histogram.buckets, histogram.counts, strict=True):
                lines.append(_sample(f"{name}_bucket", labels + (("le", _float(bound)),), count))
            lines.append(_sample(f"{name}_bucket", labels + (("le", "+Inf"),), histogram.count))
            lines.append(_sample(f"{name}_sum", labels, histogram.total))
            lines.append(_sample(f"{name}_count", labels, histogram.count))
        for name, value, gauge_labels in gauges:
            samples.setdefault(name, []).append(_sample(name, _labels(**gauge_labels), value))
        out = []
        for name, (kind, help_text) in FAMILIES.items():
            if name not in samples:
                continue
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(samples[name])
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _float(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _sample(name: str, labels: Labels, value: float) -> str:
    if labels:
        inner = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels)
        return f"{name}{{{inner}}} {_float(value)}"
    return f"{name} {_float(value)}"


def down() -> str:
    """What ``openclaw metrics`` prints when no daemon is running: ``openclaw_daemon_up 0``
    alone. Zeros for the counters would read as a reset to a scraper, and a textfile
    collector would record them as data."""
    name = "openclaw_daemon_up"
    kind, help_text = FAMILIES[name]
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n{_sample(name, (), 0.0)}\n"
