"""A request's token ids, tokenizing only the messages not seen before.

Counting a request (its size against ``contextWindow``, the append-only check) asked
the server to tokenize the whole conversation every call: ~20 ms on llama-server for
a 6.6k-token session, on the turn's path. Messages are append-only, so each rendered
message is tokenized once and remembered; a call tokenizes only what is new (the
user's message, the previous reply). A BOS the server's tokenizer puts before every
text (llama-cpp-python's does) is kept once, at the start. Exact for BPE vocabularies:
every message ends with its template's end marker and newline, and the next starts
with a special token, where tokenizers split anyway (llama.cpp and Hugging Face split
text on special tokens before BPE; tiktoken's pre-tokens never join a newline to the
``<`` after it). SentencePiece vocabularies may differ by a token per message (a
leading space piece): a count, never ids sent anywhere.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from openclaw_daemon.upstream.native_tools import counted_content
from openclaw_daemon.upstream.tokens import UpstreamTokenizer
from openclaw_daemon.wire.errors import UpstreamError

# ChatML, only to count a request's tokens and compare it with the previous one:
# the server renders the real prompt with its own template, which for the chat
# templates in use today adds a few markers per message and changes no content.
_COUNTING_TEMPLATE = "<|im_start|>{role}\n{content}<|im_end|>\n"
# Rendered messages kept per tokenizer (a few long sessions' worth; oldest go first).
MAX_MESSAGES = 4096


def message_text(message: dict[str, Any]) -> str:
    # A native message's calls count too (``content`` is then often null).
    content = counted_content(message) if "tool_calls" in message else message["content"]
    return _COUNTING_TEMPLATE.format(role=message["role"], content=content)


def request_text(messages: Sequence[dict[str, Any]]) -> str:
    return "".join(message_text(m) for m in messages)


class RequestTokens:
    """Per tokenizer (one per upstream model), the ids of the messages it has seen.
    Thread-safe: turns of several sessions count at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: weakref.WeakKeyDictionary[Any, OrderedDict[str, list[int]]] = (
            weakref.WeakKeyDictionary()
        )
        self._leads: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()

    def tokenize(
        self, tokenizer: UpstreamTokenizer, messages: Sequence[dict[str, Any]]
    ) -> list[int]:
        with self._lock:
            known = self._known.setdefault(tokenizer, OrderedDict())
        lead = self._lead(tokenizer)
        ids: list[int] = list(lead)
        for message in messages:
            text = message_text(message)
            with self._lock:
                found = known.get(text)
                if found is not None:
                    known.move_to_end(text)
            if found is None:
                found = tokenizer.tokenize(text)  # a round trip, outside the lock
                if lead and found[: len(lead)] == lead:
                    found = found[len(lead) :]  # the BOS goes once, before the request
                with self._lock:
                    known[text] = found
                    while len(known) > MAX_MESSAGES:
                        known.popitem(last=False)
            ids.extend(found)
        return ids

    def _lead(self, tokenizer: UpstreamTokenizer) -> list[int]:
        """What the tokenizer puts before any text (llama-cpp-python's tokenize adds
        the model's BOS to each call): asked once, by tokenizing nothing."""
        with self._lock:
            found = self._leads.get(tokenizer)
        if found is None:
            try:
                found = tokenizer.tokenize("")
            except UpstreamError:  # a server that refuses an empty text adds nothing
                found = []
            with self._lock:
                self._leads[tokenizer] = found
        return found
