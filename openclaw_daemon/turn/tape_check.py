"""Does a session's token tape spell exactly its transcript's render?

The tape is what the KV cache holds and the next prompt extends; the
transcript is what a cold start, an eviction or an import rebuilds from. If
the two differ, a warm session and the same session rebuilt are different
prompts. ``compare`` says whether they agree byte for byte and, if not, the
first differing byte offset. The daemon answers it as the ``tape`` request
(``openclaw sessions check-tape``); ``scripts/faults`` and the tests call it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def compare(
    detokenize: Callable[[list[int]], bytes],
    tokens: list[int],
    rendered: str,
    *,
    bos_id: int | None = None,
) -> dict[str, Any]:
    """``detokenize`` must spell special tokens. A leading BOS the tokenizer adds
    (and the template does not write) is not part of the render."""
    if tokens and bos_id is not None and tokens[0] == bos_id:
        spelled = detokenize(tokens[:1])
        if not rendered.encode("utf-8").startswith(spelled):
            tokens = tokens[1:]
    tape = detokenize(tokens)
    text = rendered.encode("utf-8")
    first = None
    if tape != text:
        first = next(
            (i for i, (a, b) in enumerate(zip(tape, text, strict=False)) if a != b),
            min(len(tape), len(text)),
        )
    return {
        "tapeMatchesTranscript": first is None,
        "firstDifference": first,
        "tapeBytes": len(tape),
        "transcriptBytes": len(text),
        "tapeTokens": len(tokens),
        # Some context either side of the first difference, to read it.
        "tapeAt": None
        if first is None
        else tape[max(0, first - 40) : first + 40].decode("utf-8", errors="replace"),
        "transcriptAt": None
        if first is None
        else text[max(0, first - 40) : first + 40].decode("utf-8", errors="replace"),
    }
