"""The figures of one run as a Markdown page (docs/reliability.md) and as
text on stdout: one table row per figure, then the details behind any nonzero
defect count."""

from __future__ import annotations

from typing import Any

Row = tuple[str, str, str]  # figure, measured, goal


def _avail(result: dict[str, Any]) -> str | None:
    if "unavailable" in result:
        return f"{result['unavailable']} ({result.get('module', '')})"
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    if "error" in result:
        return f"the suite crashed: {result['error']}"
    return None


def kill_rows(label: str, summary: dict[str, Any]) -> list[Row]:
    if not summary:
        return [(label, "not run", "")]
    tape = (
        f"{summary['tapeMismatch']} of {summary['tapeChecked']} checked "
        f"(by {_counts(summary.get('tapeMethods', {}))})"
        if summary["tapeChecked"]
        else "not checked (no sessions check-tape, no cache report)"
    )
    where = "every phase" if label.startswith("daemon") else "mid-stream"
    return [
        (
            f"{label}: kills",
            str(summary["kills"]),
            "≥20 daemon" if label.startswith("daemon") else "",
        ),
        (f"{label}: where they landed", _counts(summary["byObserved"]), where),
        (f"{label}: corrupt transcript lines", str(summary["corruptLines"]), "0"),
        (f"{label}: committed turns lost", str(summary["lostTurns"]), "0"),
        (f"{label}: committed turns duplicated", str(summary["duplicatedTurns"]), "0"),
        (f"{label}: sessions whose next turn failed", str(summary["nextTurnFailed"]), "0"),
        (f"{label}: tape disagrees with transcript", tape, "0"),
    ]


def _counts(counts: dict[str, int]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def fuzz_rows(r: dict[str, Any]) -> list[Row]:
    missing = _avail(r)
    if missing:
        return [("wire fuzz", missing, "")]
    get = r.get
    return [
        ("fuzz: malformed inputs", str(get("inputs")), "≥10,000"),
        ("fuzz: answered with an error frame", str(get("error_frames")), ""),
        ("fuzz: answered with a deliberate close", str(get("deliberate_closes")), ""),
        ("fuzz: left unanswered", str(get("unanswered")), "0"),
        ("fuzz: tracebacks in the daemon log", str(get("tracebacks_in_log")), "0"),
        ("fuzz: files created outside the state dir", str(get("files_outside_state")), "0"),
        (
            "fuzz: daemon alive and serving a turn after",
            f"{get('aliveAfter')} / {get('normalTurnAfter')}",
            "True / True",
        ),
    ]


def uid_rows(r: dict[str, Any]) -> list[Row]:
    missing = _avail(r)
    if missing:
        return [("another uid cannot connect", missing, "refused")]
    return [
        (
            "another uid cannot connect",
            f"refused: {r.get('refused')} (user {r.get('user')})",
            "refused: True",
        )
    ]


def client_rows(r: dict[str, Any]) -> list[Row]:
    if not r:
        return [("concurrent clients", "not run", "")]
    shape = f"{r['clients']} clients, {r['turnsExpected']} turns"
    return [
        (
            f"concurrency ({shape}): turns completed",
            f"{r['turnsCompleted']} of {r['turnsExpected']}",
            "all",
        ),
        ("concurrency: turns failed", str(r["turnsFailed"]), "0"),
        (
            "concurrency: turns lost / duplicated in transcripts",
            f"{r['lost']} / {r['duplicated']}",
            "0 / 0",
        ),
        ("concurrency: per-session order violations", str(r["orderViolations"]), "0"),
        ("concurrency: corrupt transcript lines", str(r["corruptLines"]), "0"),
    ]


def l3_rows(r: dict[str, Any]) -> list[Row]:
    missing = _avail(r)
    if missing:
        return [("L3 corruption", missing, "")]
    files = r.get("files")
    return [
        ("L3: damaged files (corrupt, truncated, swapped, foreign model)", str(files), ""),
        ("L3: detected", str(r.get("detected")), f"{files}"),
        ("L3: discarded", str(r.get("discarded")), f"{files}"),
        ("L3: turns still correct", str(r.get("turns_correct")), "all"),
    ]


def tool_rows(r: dict[str, Any]) -> list[Row]:
    missing = _avail(r)
    if missing:
        return [("tool guards", missing, "")]
    return [
        ("tool guards: hostile calls", str(r.get("cases")), ""),
        ("tool guards: refused", str(r.get("refused")), f"{r.get('cases')}"),
        ("tool guards: escapes", str(r.get("escaped")), "0"),
    ]


def table(rows: list[Row]) -> str:
    lines = ["| figure | measured | goal |", "|---|---|---|"]
    lines += [f"| {f} | {m} | {g} |" for f, m, g in rows]
    return "\n".join(lines)


def details(run: dict[str, Any]) -> list[str]:
    """One line per kill or check that found a defect."""
    out = []
    for key in ("daemonKills", "cliKills"):
        for o in (run.get(key) or {}).get("outcomes", []):
            bad = o["corrupt_lines"] or o["lost"] or o["duplicated"] or not o["next_turn_ok"]
            if bad or o["tape_matches"] is False:
                out.append(
                    f"- {key} #{o['index']} ({o['target']}, landed in {o['observed']}, "
                    f"session {o['session']}): {o['detail'].strip()}"
                )
    for key in ("clients", "fuzz", "l3", "tools", "otherUid"):
        result = run.get(key) or {}
        for line in result.get("details", []) or result.get("failures", []) or []:
            out.append(f"- {key}: {line}")
    return out
