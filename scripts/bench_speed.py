"""Decode and prefill speed beside llama-server's, and prompt lookup on a quote.

Part of ``scripts/bench --peers`` (bench_peers.py). Both systems run the same
model on the same cores, alternating call by call, so the machine's noise
falls on both; figures are medians of the rounds.

- **decode and cold prefill at ~5k context**: each round a new ~5000-token
  document (nothing cached anywhere), asked to be rewritten at length, 128
  tokens: our turn through the real CLI (the daemon's prefill and decode spans,
  with the CLI process rendering on the same cores), llama-server's call with
  its own ``timings``. Our decode runs plainly (the default) and with
  ``--prompt-lookup on``.
- **quote/edit**: a file the user read, asked back with a rename: the reply
  copies most of the file. Ours with prompt lookup, ours without (the replies
  must be identical), llama-server's plain decode.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench import Runner, prime_message, workspace_document
from peer_scenarios import SYSTEM, ChatPeer

DECODE_TOKENS = 128
QUOTE_TOKENS = 400
LONG_ASK = "Rewrite every section in full, in detail."


def source_file(functions: int = 12) -> str:
    """A small Python module, the kind of file an agent reads before editing it."""
    parts = []
    for i in range(functions):
        parts.append(
            f"def load_item_{i}(path, retries={i % 3 + 1}):\n"
            f'    """Read item {i} from path."""\n'
            "    with open(path) as handle:\n"
            "        data = handle.read()\n"
            f'    return data.strip().split(",")[{i}]\n'
        )
    return "\n".join(parts)


def quote_message() -> str:
    return (
        f"Here is app.py, which I read:\n\n```python\n{source_file()}```\n\n"
        "Rewrite app.py with every `path` renamed to `filename`. Reply with the whole file."
    )


def long_message(seed: int, tokens: int = 5000) -> str:
    return prime_message(workspace_document(tokens, seed=seed)).replace(
        "Summarise it in one sentence.", LONG_ASK
    )


def our_turn(
    runner: Runner, message: str, session: str, max_tokens: int, *extra: str
) -> dict[str, Any]:
    """One turn through the CLI (bench.describe's row: it keeps the reply's text)."""
    return runner.turn(message, session, max_tokens, extra=extra)


def peer_turn(peer: ChatPeer, message: str, max_tokens: int, name: str) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": message}]
    return peer.call(messages, max_tokens, name=name)


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return round(statistics.median(values), 1) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def speed_suite(
    runner: Runner, peer: ChatPeer, peer_plain: ChatPeer, rounds: int, log: Any = print
) -> dict[str, Any]:
    """``peer`` is llama-server with its defaults; ``peer_plain`` the same with flash
    attention off, as our default (docs/internals.md)."""
    ours: list[dict[str, Any]] = []
    ours_lookup: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    theirs_plain: list[dict[str, Any]] = []
    pad = 0
    for n in range(rounds):
        log(
            f"  speed round {n + 1}/{rounds}: ours, llama-server, llama-server -fa off, "
            "ours with prompt lookup"
        )
        ours.append(our_turn(runner, long_message(100 + 3 * n), f"speed-{n}", DECODE_TOKENS))
        # The same context length for both: our prompt also holds the system prompt
        # and the tool definitions (~630 tokens), so llama-server's document is longer
        # by what the previous round measured.
        theirs.append(
            peer_turn(peer, long_message(101 + 3 * n, 5000 + pad), DECODE_TOKENS, "decode")
        )
        theirs_plain.append(
            peer_turn(peer_plain, long_message(103 + 3 * n, 5000 + pad), DECODE_TOKENS, "decode")
        )
        if isinstance(ours[-1].get("input"), int) and isinstance(theirs[-1].get("input"), int):
            pad += int((ours[-1]["input"] - theirs[-1]["input"]) / 1.1)
        ours_lookup.append(
            our_turn(
                runner,
                long_message(102 + 3 * n),
                f"speed-lookup-{n}",
                DECODE_TOKENS,
                "--prompt-lookup",
                "on",
            )
        )
    log("  quote/edit: ours (lookup on), llama-server, ours (lookup off)")
    quote_on = our_turn(runner, quote_message(), "quote-on", QUOTE_TOKENS, "--prompt-lookup", "on")
    quote_peer = peer_turn(peer, quote_message(), QUOTE_TOKENS, "quote")
    quote_off = our_turn(runner, quote_message(), "quote-off", QUOTE_TOKENS)
    summary = {
        "decodeTokPerS": {
            "ours": _median(ours, "decodeTokPerS"),
            "oursLookup": _median(ours_lookup, "decodeTokPerS"),
            "llamaServer": _median(theirs, "decodeTokPerS"),
            "llamaServerFaOff": _median(theirs_plain, "decodeTokPerS"),
        },
        "coldPrefillTokPerS": {
            "ours": _median(ours + ours_lookup, "prefillTokPerS"),
            "llamaServer": _median(theirs, "prefillTokPerS"),
            "llamaServerFaOff": _median(theirs_plain, "prefillTokPerS"),
        },
        "context": {
            "ours": _median(ours + ours_lookup, "input"),
            "llamaServer": _median(theirs, "input"),
        },
        "quote": {
            "oursTokPerS": quote_on["decodeTokPerS"],
            "oursLookupOffTokPerS": quote_off["decodeTokPerS"],
            "llamaServerTokPerS": quote_peer["decodeTokPerS"],
            "identical": quote_on["text"] == quote_off["text"],
            "tokens": quote_on["decodeTokens"],
            "drafted": quote_on["drafted"],
            "draftAccepted": quote_on["draftAccepted"],
        },
    }
    d, p, q = summary["decodeTokPerS"], summary["coldPrefillTokPerS"], summary["quote"]
    summary["ratios"] = {
        "decodeVsLlamaServer": _ratio(d["ours"], d["llamaServer"]),
        "decodeLookupVsLlamaServer": _ratio(d["oursLookup"], d["llamaServer"]),
        "coldPrefillVsLlamaServer": _ratio(p["ours"], p["llamaServer"]),
        "decodeVsLlamaServerFaOff": _ratio(d["ours"], d.get("llamaServerFaOff")),
        "coldPrefillVsLlamaServerFaOff": _ratio(p["ours"], p.get("llamaServerFaOff")),
        "quoteLookupVsLlamaServer": _ratio(q["oursTokPerS"], q["llamaServerTokPerS"]),
        "quoteLookupVsLookupOff": _ratio(q["oursTokPerS"], q["oursLookupOffTokPerS"]),
    }
    rows = {
        "ours": ours,
        "oursLookup": ours_lookup,
        "llamaServer": theirs,
        "llamaServerFaOff": theirs_plain,
        "quote": {"ours": quote_on, "oursLookupOff": quote_off, "llamaServer": quote_peer},
    }
    return {"summary": summary, "rows": rows}


def speed_markdown(speed: dict[str, Any]) -> list[str]:
    s = speed["summary"]
    d, p, q, r = s["decodeTokPerS"], s["coldPrefillTokPerS"], s["quote"], s["ratios"]

    def mark(value: float | None, bound: float) -> str:
        return "n/a" if value is None else f"{value:.2f} ({'met' if value >= bound else 'short'})"

    return [
        "| measure | ours | llama-server | ratio (target) |",
        "|---|---|---|---|",
        f"| decode tok/s (prompt ~{s['context']['ours'] or 0:.0f} tokens ours, "
        f"~{s['context']['llamaServer'] or 0:.0f} llama-server) "
        f"| {d['ours']} "
        f"| {d['llamaServer']} | {mark(r['decodeVsLlamaServer'], 1.0)} (≥ 1.00) |",
        f"| decode tok/s, `--prompt-lookup on` | {d['oursLookup']} | {d['llamaServer']} "
        f"| {mark(r['decodeLookupVsLlamaServer'], 1.0)} |",
        f"| cold prefill tok/s (the same prompts) | {p['ours']} | {p['llamaServer']} "
        f"| {mark(r['coldPrefillVsLlamaServer'], 1.0)} (≥ 1.00) |",
        f"| decode tok/s, llama-server `-fa off` (exact, as ours) | {d['ours']} "
        f"| {d.get('llamaServerFaOff')} | {mark(r.get('decodeVsLlamaServerFaOff'), 1.0)} |",
        f"| cold prefill tok/s, llama-server `-fa off` | {p['ours']} "
        f"| {p.get('llamaServerFaOff')} | {mark(r.get('coldPrefillVsLlamaServerFaOff'), 1.0)} |",
        f"| quote/edit decode tok/s, prompt lookup | {q['oursTokPerS']} "
        f"| {q['llamaServerTokPerS']} "
        f"| {mark(r['quoteLookupVsLlamaServer'], 1.5)} (≥ 1.50) |",
        f"| quote/edit: reply identical with lookup off | {'yes' if q['identical'] else 'NO'} | | "
        f"{q['draftAccepted']} of {q['tokens']} tokens drafted and kept; off: "
        f"{q['oursLookupOffTokPerS']} tok/s |",
    ]


def write(speed: dict[str, Any], out: Path) -> None:
    out.write_text(json.dumps(speed, indent=2))
