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

Chat completions stay where exactness cannot be had: a template that will not render
our conversation, one that transforms content (``| trim``: markup and content could
not be told apart, and guessing would send a turn's markers as text), a reasoning
template (the server's chat path takes the thinking out of the reply). ``/props`` is
asked again from time to time (``targets``): a server restarted on another model gets
a new template and tokenizer, never the old vocabulary's ids.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from openclaw_daemon.model import markup
from openclaw_daemon.model.chat_template import ChatTemplate
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

    def __init__(
        self, client: UpstreamClient, template: ChatTemplate, add_bos: bool, fingerprint: str
    ) -> None:
        self.url = f"{client.server_root}/completion"
        self.tokenizer = ServerTokenizer(client)
        self.template = template
        self.add_bos = add_bos
        self.fingerprint = fingerprint  # what /props said: another model means another one

    def tokens(
        self, messages: Sequence[dict[str, Any]], *, generation_prompt: bool = True
    ) -> list[int] | None:
        """The ids of the prompt for a reply to ``messages`` (the generation prompt
        included unless told), as the server will evaluate them; None when this
        request cannot be rendered exactly (the template refuses it, or transforms a
        content so markup and content cannot be told apart): it goes by chat."""
        plain = [{"role": m["role"], "content": m["content"]} for m in messages]
        try:
            text = self.template.render(plain, add_generation_prompt=generation_prompt)
        except Exception as exc:  # noqa: BLE001 - any template failure: the server renders
            log.info("raw completion: the template refused the request (%s): chat", exc)
            return None
        pieces = markup.exact_spans(
            self.template, plain, text, add_generation_prompt=generation_prompt
        )
        if pieces is None:
            return None  # guessing would send markup as text (or content as markup)
        bos = self.add_bos and not (self.template.bos_token and text.startswith(
            self.template.bos_token))  # fmt: skip
        ids: list[int] = []
        for begin, end, special in pieces:
            ids += self.tokenizer.tokenize(text[begin:end], add_bos=bos, special=special)
            bos = False
        return ids


# Templates that write a reasoning block: llama-server's chat path takes the thinking
# out of the reply (reasoning_content); the raw path would show and store it.
_REASONING_MARKERS = ("<think>", "reasoning_content", "enable_thinking")


def fingerprint(props: dict[str, Any]) -> str:
    """What identifies the model and template a llama-server serves."""
    keys = ("model_path", "build_info", "chat_template", "bos_token", "eos_token")
    return "\0".join(str(props.get(k, "")) for k in keys)


def props(client: UpstreamClient) -> dict[str, Any]:
    """``GET /props``; UpstreamError when the server cannot be asked right now."""
    return client.get_json(f"{client.server_root}/props")


def detect(client: UpstreamClient, found: dict[str, Any]) -> CompletionPrompt | None:
    """The raw completion prompt for the llama.cpp server whose ``/props`` are
    ``found``, or None (chat completions, rendered by the server) when it shares no
    usable template. UpstreamError when the server could not be asked."""
    source = found.get("chat_template")
    if not isinstance(source, str) or not source.strip():
        return None
    if any(marker in source for marker in _REASONING_MARKERS):
        log.info("%s: a reasoning template: chat completions", client.provider_id)
        return None
    bos, eos = found.get("bos_token"), found.get("eos_token")
    try:
        template = ChatTemplate(
            source,
            bos_token=bos if isinstance(bos, str) else "",
            eos_token=eos if isinstance(eos, str) else "",
            label=f"upstream {client.provider_id!r}",
        )
    except ModelError as exc:
        log.info("%s: the template does not compile (%s): chat", client.provider_id, exc.message)
        return None
    prompt = CompletionPrompt(client, template, _adds_bos(client), fingerprint(found))
    # A conversation as ours look (a system message first, tool results as user turns):
    # a template that refuses it, or cannot be split exactly, is left to the server.
    trial = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "u"},
    ]
    if prompt.tokens(trial) is None:
        return None
    return prompt


def _adds_bos(client: UpstreamClient) -> bool:
    """Whether the model wants a BOS token before the prompt: its tokenizer puts one
    before a text when asked for its special tokens (an EOS after it is not one)."""
    url = f"{client.server_root}/tokenize"
    plain = client.post_json(url, {"content": "a", "add_special": False}).get("tokens")
    marked = client.post_json(url, {"content": "a", "add_special": True}).get("tokens")
    if not isinstance(plain, list) or not isinstance(marked, list) or not plain:
        return False
    return len(marked) > len(plain) and marked[1 : 1 + len(plain)] == plain
