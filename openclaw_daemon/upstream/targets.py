"""Which upstream engines a turn may run on, in order, and their pooled clients.

A turn names a model (``--model provider/model-id``) or leaves it to
``agents.defaults.model.primary``; ``agents.defaults.model.fallbacks`` follow, in
order, for errors that warrant one. openclaw.json is read again when it changes,
so an edit applies from the next turn without a restart. One ``UpstreamClient``
per provider lives as long as the provider's settings do, so consecutive turns
reuse its keep-alive connection; the tokenizer is detected once per model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from openclaw_daemon.upstream import completion_prompt, config_file, tokens
from openclaw_daemon.upstream.completion_prompt import CompletionPrompt
from openclaw_daemon.upstream.config_file import OpenClawConfig, Provider, UpstreamModel
from openclaw_daemon.upstream.http_client import UpstreamClient
from openclaw_daemon.upstream.probe import request_headers
from openclaw_daemon.upstream.request_tokens import RequestTokens
from openclaw_daemon.upstream.tokens import UpstreamTokenizer
from openclaw_daemon.wire.errors import ConfigError, UpstreamError

log = logging.getLogger("openclawd.upstream")

PROPS_RECHECK_S = 30.0  # how stale our view of a llama-server's model may get


class Target(NamedTuple):
    provider: Provider
    model: UpstreamModel
    client: UpstreamClient

    @property
    def ref(self) -> str:
        return self.model.ref

    @property
    def engine(self) -> str:
        """How traces and results name this engine."""
        return f"upstream:{self.model.ref}"


class UpstreamTargets:
    """The daemon's view of openclaw.json's upstreams. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._config: OpenClawConfig | None = None
        self._stamp: tuple[float, int] | None = None
        self._clients: dict[str, tuple[tuple[object, ...], UpstreamClient]] = {}
        self._tokenizers: dict[str, UpstreamTokenizer] = {}
        # Per model: when /props was last asked, its fingerprint, the prompt it gave.
        self._completions: dict[str, tuple[float, str, CompletionPrompt | None]] = {}
        self._estimate: UpstreamTokenizer | None = None
        # Each rendered message tokenized once per model (requests are append-only).
        self.request_tokens = RequestTokens()

    def config(self) -> OpenClawConfig:
        path = config_file.config_path()
        try:
            stat = path.stat()
            stamp: tuple[float, int] | None = (stat.st_mtime, stat.st_size)
        except OSError:
            stamp = None
        with self._lock:
            if self._config is None or self._config.path != path or stamp != self._stamp:
                self._config, self._stamp = config_file.load(path), stamp
            return self._config

    def chain(self, ref: str | None) -> list[Target]:
        """The engine ``ref`` names (or the primary), then each upstream fallback.
        ConfigError when the named one is not usable as configured."""
        cfg = self.config()
        first = ref or cfg.primary
        if not first:
            raise ConfigError("no upstream model named and no agents.defaults.model.primary")
        chain = [self._target(cfg, first, required=True)]
        for fallback in cfg.fallbacks:
            if fallback == first or cfg.providers.get(fallback.partition("/")[0]) is None:
                continue  # the embedded model or a GGUF is not an upstream fallback
            try:
                target = self._target(cfg, fallback, required=False)
            except ConfigError as exc:
                log.warning("fallback %s skipped: %s", fallback, exc.message)
                continue
            if target is not None:
                chain.append(target)
        return [t for t in chain if t is not None]

    def _target(self, cfg: OpenClawConfig, ref: str, *, required: bool) -> Target | None:
        found = cfg.find(ref)
        if found is None:
            if required:
                raise ConfigError(f"{ref} is not a model of a provider in {cfg.path}")
            return None
        provider, model = found
        problem = provider.problem()
        if problem:
            raise ConfigError(
                f"provider {provider.id!r} in {cfg.path} cannot be used: {problem}",
                hint=f"Fix models.providers.{provider.id} in {cfg.path}.",
            )
        return Target(provider, model, self._client(provider))

    def _client(self, provider: Provider) -> UpstreamClient:
        settings = (provider.url(), tuple(sorted(request_headers(provider).items())),
                    provider.timeout_seconds)  # fmt: skip
        with self._lock:
            known = self._clients.get(provider.id)
            if known is not None and known[0] == settings:
                return known[1]
            client = UpstreamClient(
                provider.id,
                provider.url(),
                headers=request_headers(provider),
                timeout_seconds=provider.timeout_seconds,
                # timeoutSeconds bounds each wait: the first byte (a long prefill
                # on a CPU server) and every gap between chunks.
                first_byte_timeout=provider.timeout_seconds,
                chunk_timeout=provider.timeout_seconds,
            )
            self._clients[provider.id] = (settings, client)
            # The old client is not closed here: a turn may still be streaming on it
            # (it is closed when collected). Its models' tokenizers go with it.
            prefix = f"{provider.id}/"
            self._tokenizers = {
                k: v for k, v in self._tokenizers.items() if not k.startswith(prefix)
            }
            self._completions = {
                k: v for k, v in self._completions.items() if not k.startswith(prefix)
            }
            return client

    def tokenizer(self, target: Target) -> UpstreamTokenizer:
        """The server's tokenizer when it has one, else the offline estimate; an
        unreachable server gets the estimate for now and is asked again next turn."""
        with self._lock:
            known = self._tokenizers.get(target.ref)  # per model: a router serves several
        if known is not None:
            return known
        try:
            found = tokens.detect(target.client, target.model.id)
        except UpstreamError as exc:
            log.info("tokenizer of %s not detected (%s): estimating", target.ref, exc.message)
            return self.estimate()
        with self._lock:
            self._tokenizers[target.ref] = found
        return found

    def completion_prompt(self, target: Target) -> CompletionPrompt | None:
        """Our own prompt ids for llama-server's raw ``/completion``, on a llama-server
        that shares a usable chat template; None: chat completions (another server,
        ``edge.rawCompletion: false``, a model in ``edge.nativeTools``, whose tools the
        server's chat template renders, or ``/props`` unanswered right now). ``/props``
        is asked again every PROPS_RECHECK_S: a server restarted on another model
        (or template) gets a new prompt and tokenizer, never the old vocabulary's ids."""
        cfg = self.config()
        if not cfg.raw_completion or target.ref in cfg.native_tools:
            return None
        if self.tokenizer(target).source != "llama-server":
            return None
        now = time.monotonic()
        with self._lock:
            known = self._completions.get(target.ref)
        if known is not None and now - known[0] < PROPS_RECHECK_S:
            return known[2]
        try:
            found = completion_prompt.props(target.client)
            stamp = completion_prompt.fingerprint(found)
            if known is not None and known[1] == stamp:
                prompt = known[2]
            else:
                prompt = completion_prompt.detect(target.client, found)
        except UpstreamError as exc:  # asked again next call; this one goes by chat
            log.info("%s: /props unanswered (%s): chat completions", target.ref, exc.message)
            return None
        with self._lock:
            if known is not None and known[1] != stamp:
                # Another model behind the same URL: its tokenizer is detected afresh.
                self._tokenizers.pop(target.ref, None)
            self._completions[target.ref] = (now, stamp, prompt)
        return prompt

    def prompt_ids(
        self,
        target: Target,
        messages: Sequence[dict[str, Any]],
        *,
        generation_prompt: bool = True,
    ) -> tuple[list[int], CompletionPrompt | None]:
        """A request's tokens as we count them, and the raw completion prompt they
        were made for: exactly the ids to send, or (None) the messages in ChatML on
        the server's tokenizer, for a chat request. Decided once, so a call never
        sends ids counted for the other path."""
        completion = self.completion_prompt(target)
        if completion is not None:
            ids = completion.tokens(messages, generation_prompt=generation_prompt)
            if ids is not None:
                return ids, completion
        return self.request_tokens.tokenize(self.tokenizer(target), messages), None

    def request_ids(
        self, target: Target, messages: Sequence[dict[str, Any]], *, generation_prompt: bool = True
    ) -> list[int]:
        return self.prompt_ids(target, messages, generation_prompt=generation_prompt)[0]

    def estimate(self) -> UpstreamTokenizer:
        """The offline estimate, loaded once (its ranks take ~0.3 s)."""
        if self._estimate is None:
            self._estimate = tokens.EstimateTokenizer()
        return self._estimate

    def close(self) -> None:
        with self._lock:
            for _, client in self._clients.values():
                client.close()
            self._clients.clear()
