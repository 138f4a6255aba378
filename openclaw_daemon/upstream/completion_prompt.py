"""llama-server's raw ``/completion``: the prompt rendered by us, sent as token ids.

Through ``/v1/chat/completions`` the server renders and tokenizes the prompt itself,
so our count of it is a ChatML approximation and a miss can only be explained
roughly. On a llama.cpp server that shares its chat template (``GET /props``) we
render the messages with that same template, tokenize them on the server's own
``/tokenize`` as the embedded engine does (the template's markup with special tokens
parsed, message content as plain text: a file that spells ``<|im_end|>`` cannot close
a turn), and send the ids. The server then evaluates exactly the tokens we counted:
the request tapes compare what it caches, and ``cache_prompt`` reuses the slot's
prefix token for token.

Each piece of text (a markup run, a message's content) is tokenized once and
remembered, so a warm turn asks the server only for its new message and the last
reply. ``edge.rawCompletion: false`` in openclaw.json keeps chat completions.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from openclaw_daemon.model.chat_template import ChatTemplate
from openclaw_daemon.model.tape import TapeBuilder, TokenTape
from openclaw_daemon.upstream.http_client import UpstreamClient
from openclaw_daemon.wire.errors import ModelError, UpstreamError

log = logging.getLogger("openclawd.upstream")

# Pieces of text remembered per server model (a few long sessions' worth).
MAX_PIECES = 8192


class ServerTokenizer:
    """llama-server's ``/tokenize`` and ``/detokenize`` as the embedded engine's
    ``Tokenizer`` (``model.text_stream``), remembering each piece it tokenized."""

    def __init__(self, client: UpstreamClient) -> None:
        self._client = client
        self._root = client.server_root
        self._lock = threading.Lock()
        self._known: OrderedDict[tuple[str, bool, bool], list[int]] = OrderedDict()

    def tokenize(self, text: str, *, add_bos: bool, special: bool = False) -> list[int]:
        key = (text, add_bos, special)
        with self._lock:
            found = self._known.get(key)
            if found is not None:
                self._known.move_to_end(key)
                return list(found)
        body = {"content": text, "add_special": add_bos, "parse_special": special}
        reply = self._client.post_json(f"{self._root}/tokenize", body)  # outside the lock
        ids = reply.get("tokens")
        if not isinstance(ids, list) or not all(isinstance(t, int) for t in ids):
            raise UpstreamError(
                f"upstream {self._client.provider_id!r}: /tokenize did not answer token ids"
            )
        with self._lock:
            self._known[key] = ids
            while len(self._known) > MAX_PIECES:
                self._known.popitem(last=False)
        return list(ids)

    def detokenize(self, tokens: list[int], *, special: bool = False) -> bytes:
        reply = self._client.post_json(f"{self._root}/detokenize", {"tokens": tokens})
        return str(reply.get("content", "")).encode("utf-8")


class CompletionPrompt:
    """One server model's template and tokenizer: messages in, the prompt's ids out."""

    def __init__(self, client: UpstreamClient, template: ChatTemplate, add_bos: bool) -> None:
        self.url = f"{client.server_root}/completion"
        self.tokenizer = ServerTokenizer(client)
        self._builder = TapeBuilder(template, self.tokenizer, add_bos=add_bos)

    def tokens(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """The ids of the prompt for a reply to ``messages`` (the generation prompt
        included), as the server will evaluate them."""
        plain = [{"role": m["role"], "content": m["content"]} for m in messages]
        return self._builder.plan_turn(TokenTape(), plain).tokens


def detect(client: UpstreamClient) -> CompletionPrompt | None:
    """The raw completion prompt for a llama.cpp server that shares its chat
    template, else None (chat completions, rendered by the server)."""
    try:
        props = client.get_json(f"{client.server_root}/props")
    except UpstreamError as exc:
        log.info("%s: no /props (%s): chat completions", client.provider_id, exc.message)
        return None
    source = props.get("chat_template")
    if not isinstance(source, str) or not source.strip():
        return None
    bos, eos = props.get("bos_token"), props.get("eos_token")
    try:
        template = ChatTemplate(
            source,
            bos_token=bos if isinstance(bos, str) else "",
            eos_token=eos if isinstance(eos, str) else "",
            label=f"upstream {client.provider_id!r}",
        )
        adds_bos = _adds_bos(client)
    except (ModelError, UpstreamError) as exc:
        log.info("%s: raw completion unavailable (%s): chat completions",
                 client.provider_id, exc.message)  # fmt: skip
        return None
    return CompletionPrompt(client, template, adds_bos)


def _adds_bos(client: UpstreamClient) -> bool:
    """Whether the model wants a BOS token before the prompt: its tokenizer puts one
    before a text when asked for its special tokens (an EOS after it is not one)."""
    url = f"{client.server_root}/tokenize"
    plain = client.post_json(url, {"content": "a", "add_special": False}).get("tokens")
    marked = client.post_json(url, {"content": "a", "add_special": True}).get("tokens")
    if not isinstance(plain, list) or not isinstance(marked, list) or not plain:
        return False
    return len(marked) > len(plain) and marked[len(marked) - len(plain) :] == plain
