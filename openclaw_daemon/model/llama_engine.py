"""The model engine: the ONLY module that imports llama_cpp.

One ``Engine`` holds one loaded model and one llama context (L1, the live KV
cache) and the ids it holds, so a prompt prefills only what follows the longest
common prefix. Prefill runs in batches (progress per batch); a cancel stops the
batch in flight too (the abort callback, ~6 ms; llama.cpp then drops that
batch's positions). Decode yields one token at a time. Sliding-window and
recurrent memory cannot be cut back freely: ``trim_floor`` (docs/internals.md).

Pinned to llama-cpp-python 0.3.36: ``Llama._ctx``, ``Llama._init_sampler`` and
``Llama.input_ids`` are internal there (moved in 0.3.10, 0.3.17 and 0.3.23).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

from openclaw_daemon.config import check_gguf
from openclaw_daemon.model.base import (
    FULL_MEMORY,
    HYBRID,
    RECURRENT,
    SLIDING_WINDOW,
    Checkpoint,
    DecodeStats,
    KVEngine,
    ModelInfo,
    ProgressCallback,
    SamplingParams,
    batches,
    check_prefill,
)
from openclaw_daemon.model.builtin_templates import choose_template, load_template
from openclaw_daemon.model.catalog import model_id
from openclaw_daemon.model.prompt_lookup import drafted_decode
from openclaw_daemon.wire.errors import CancelledError, KvSlotError, ModelError

log = logging.getLogger("openclawd.engine")


class Engine:
    """A loaded model with one live sequence (a ``base.KVEngine``). Not thread-safe:
    one worker drives it."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int,
        n_threads: int = 0,
        chat_template: str | None = None,
        n_gpu_layers: int | None = None,
        flash_attn: bool = False,
    ) -> None:
        check_gguf(model_path)
        threads = n_threads or os.cpu_count() or 1
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        if n_gpu_layers is None or not gpu:
            n_gpu_layers = -1 if gpu else 0  # a CPU build offloads nothing, whatever asked
        try:
            self.llama = llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=threads,
                n_threads_batch=threads,
                # Every layer keeps all n_ctx positions (llama.cpp's default,
                # set here so it is a decision): a sliding-window cache of only
                # the window could not be trimmed back past it at all.
                swa_full=True,
                n_gpu_layers=n_gpu_layers,
                flash_attn=flash_attn,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp could not load {model_path}: {exc}") from exc
        model = self.llama._model
        metadata = self.llama.metadata
        name = metadata.get("general.name") or model_path.stem
        choice = choose_template(metadata, has_token=self._has_token, override=chat_template)
        self.template, choice = load_template(
            choice, name, self._token_text(model.token_bos()), self._token_text(model.token_eos())
        )
        n_layers = int(llama_cpp.llama_model_n_layer(model.model))
        self.info = ModelInfo(
            path=str(model_path),
            name=name,
            n_ctx=self.llama.n_ctx(),
            n_ctx_train=model.n_ctx_train(),
            n_params=model.n_params(),
            size_bytes=model_path.stat().st_size,
            gpu_offload=gpu,
            chat_template=choice.source,
            n_vocab=self.llama.n_vocab(),
            bos_id=model.token_bos(),
            memory=_memory_kind(model.model),
            n_swa=max(0, int(llama_cpp.llama_model_n_swa(model.model))),
            template_family=choice.family,
            template_source=choice.origin,
            model_id=model_id(model_path, metadata),
            n_layers=n_layers,
            n_gpu_layers=n_layers + 1 if n_gpu_layers < 0 else min(n_gpu_layers, n_layers + 1),
            gpu_backend=_gpu_backend() if gpu else "cpu",
        )
        # Flash attention off by default: its CPU kernels differ by batch shape, so
        # a warm turn would not be computed as the same turn cold (docs/internals.md).
        self.flash_attn = flash_attn
        self._vocab = model.vocab
        self.add_bos = bool(model.add_bos_token())
        self.lock = threading.Lock()
        self._grammars: dict[str, LlamaGrammar] = {}
        # While a prefill runs, its cancel predicate; the callback below polls it
        # from llama.cpp's compute thread (the worker, which released the GIL).
        # It is installed only during prefill: llama.cpp calls it at every graph
        # node (~600 a batch), and each call takes the GIL.
        self._abort_when: Callable[[], bool] | None = None
        self._aborted = False
        self._abort_callback = llama_cpp.ggml_abort_callback(self._should_abort)
        self._no_abort_callback = llama_cpp.ggml_abort_callback(0)  # NULL: never called

    def _should_abort(self, _data: ctypes.c_void_p) -> bool:
        when = self._abort_when
        try:
            self._aborted = bool(when is not None and when())
        except Exception:  # an exception must not cross into C: keep computing
            log.exception("abort check failed")
            self._aborted = False
        return self._aborted

    def _has_token(self, text: str) -> bool:
        """Whether ``text`` is one special token of the vocabulary."""
        return len(self.llama.tokenize(text.encode(), add_bos=False, special=True)) == 1

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llama._model.token_get_text(token)

    # -- tokens ----------------------------------------------------------------
    def tokenize(self, text: str, *, add_bos: bool, special: bool = False) -> list[int]:
        """Ids of ``text``. Only the chat template's own markup may pass ``special``:
        otherwise a file or web page spelling ``<|im_end|>`` would become the real
        control token and could forge a turn (docs/recovery.md)."""
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def detokenize(self, tokens: list[int], *, special: bool = False) -> bytes:
        """Bytes of ``tokens``; ``special`` also spells control tokens like <|im_end|>."""
        return bytes(self.llama.detokenize(tokens, special=special))

    @staticmethod
    def schema_to_gbnf(schema: str, prop_order: list[str]) -> str:
        """llama.cpp's JSON-schema-to-GBNF converter (pure Python, in llama-cpp-python)."""
        return str(json_schema_to_gbnf(schema, prop_order=prop_order))

    def _grammar(self, gbnf: str) -> LlamaGrammar:
        """A compiled GBNF grammar (cached: the same tool set compiles to the same text)."""
        compiled = self._grammars.get(gbnf)
        if compiled is None:
            try:
                compiled = LlamaGrammar.from_string(gbnf, verbose=False)
            except ValueError as exc:
                raise ModelError(f"llama.cpp rejected the tool-call grammar: {exc}") from exc
            self._grammars[gbnf] = compiled
        return compiled

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    # -- the live sequence (L1) -------------------------------------------------
    @property
    def live_tokens(self) -> list[int]:
        return [int(t) for t in self.llama.input_ids[: self.llama.n_tokens]]

    def cached_prefix(self, tokens: list[int]) -> int:
        """How many leading ``tokens`` the live KV cache already holds."""
        live = self.llama.input_ids[: self.llama.n_tokens]
        count = 0
        for cached, wanted in zip(live, tokens, strict=False):
            if cached != wanted:
                break
            count += 1
        return count

    def prefill(
        self,
        tokens: list[int],
        *,
        batch_size: int,
        on_progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        checkpoint: Checkpoint | None = None,
    ) -> int:
        """Make the KV cache hold exactly ``tokens``; returns the tokens reused.

        The last prompt token is always evaluated so its logits exist to sample
        from, even when the whole prompt was cached.
        """
        check_prefill(tokens, self.info.n_ctx)
        reused = self.truncate(min(self.cached_prefix(tokens), len(tokens) - 1))
        todo = tokens[reused:]
        done = 0
        self._abort_when = cancelled
        ctx = self.llama._ctx.ctx
        llama_cpp.llama_set_abort_callback(ctx, self._abort_callback, None)
        try:
            for stop in batches(reused, len(tokens), batch_size, checkpoint):
                if cancelled():
                    raise CancelledError("the turn was cancelled during prefill")
                chunk = tokens[reused + done : stop]
                self._eval(chunk)
                done += len(chunk)
                if checkpoint is not None and stop == checkpoint[0]:
                    checkpoint[1]()
                if on_progress is not None:
                    on_progress(done, len(todo))
        finally:
            llama_cpp.llama_set_abort_callback(ctx, self._no_abort_callback, None)
            self._abort_when = None
        return reused

    @property
    def trim_floor(self) -> int:
        live = self.llama.n_tokens
        if live == 0 or self.info.memory == FULL_MEMORY:
            return 0
        if self.info.memory != SLIDING_WINDOW:
            return live  # recurrent or hybrid: only the whole state
        lowest = llama_cpp.llama_memory_seq_pos_min(self._memory(), 0)
        # llama-server's test (server-context.cpp): cutting to ``keep`` needs the
        # positions from keep - n_swa on.
        return 0 if lowest <= 0 else min(live, lowest + self.info.n_swa)

    def truncate(self, keep: int) -> int:
        live = self.llama.n_tokens
        if keep >= live:
            return live
        if 0 < keep < self.trim_floor or not llama_cpp.llama_memory_seq_rm(
            self._memory(), 0, keep, -1
        ):
            # Keeping more would leave positions the window no longer holds
            # (or memory that refuses a partial cut): start the sequence over.
            log.info("cannot cut the live state back to %d of %d tokens: cleared", keep, live)
            self.reset()
            return 0
        self.llama.n_tokens = keep
        return keep

    def _memory(self) -> llama_cpp.llama_memory_t:
        return llama_cpp.llama_get_memory(self.llama._ctx.ctx)

    def next_logits(self) -> np.ndarray:
        """The logits the next token is sampled from (a copy), for the reuse
        equivalence test: the sampler reads the same row."""
        row = llama_cpp.llama_get_logits_ith(self.llama._ctx.ctx, -1)
        return np.ctypeslib.as_array(row, shape=(self.info.n_vocab,)).copy()

    # -- parking and restoring the sequence (L2/L3 blobs) ------------------------
    def fingerprint(self) -> dict[str, object]:
        """What a saved KV blob depends on: the same model file, context and KV type."""
        stat = Path(self.info.path).stat()
        return {
            "modelPath": self.info.path,
            "modelBytes": stat.st_size,
            "modelMtimeNs": stat.st_mtime_ns,
            "nCtx": self.info.n_ctx,
            "kvType": "f16",
            "flashAttn": self.flash_attn,  # it lays the V cache out differently
            "llamaCpp": llama_cpp.__version__,
            **({"stateLayout": "context"} if self._whole_context_state else {}),
        }

    @property
    def _whole_context_state(self) -> bool:
        """Snapshots of the whole context, not of sequence 0: a sequence save
        drops the positions a sliding window masks (llama_kv_cache::state_write),
        so a restored one could not be cut back at all."""
        return self.info.memory == SLIDING_WINDOW

    def snapshot(self, allocate: Callable[[int], memoryview]) -> tuple[tuple[int, ...], memoryview]:
        """The live tokens and their KV state, copied into a writable buffer of
        the given size from ``allocate``."""
        ctx, whole = self.llama._ctx.ctx, self._whole_context_state
        size = (llama_cpp.llama_state_get_size(ctx) if whole else
                llama_cpp.llama_state_seq_get_size(ctx, 0))  # fmt: skip
        blob = allocate(size)
        out = np.frombuffer(blob, dtype=np.uint8).ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
        written = (llama_cpp.llama_state_get_data(ctx, out, size) if whole else
                   llama_cpp.llama_state_seq_get_data(ctx, out, size, 0))  # fmt: skip
        if written != size:
            raise ModelError(f"llama.cpp saved {written} of {size} bytes of the KV state")
        return tuple(self.live_tokens), blob

    def restore(self, tokens: tuple[int, ...], blob: bytes | memoryview, *, keep: int) -> None:
        """Load a snapshot, then trim it to its first ``keep`` tokens."""
        self.reset()
        # A pointer into the blob's own memory: no copy, even for immutable bytes.
        data, ctx = np.frombuffer(blob, dtype=np.uint8), self.llama._ctx.ctx
        src = data.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
        loaded = (llama_cpp.llama_state_set_data(ctx, src, data.size) if self._whole_context_state
                  else llama_cpp.llama_state_seq_set_data(ctx, src, data.size, 0))  # fmt: skip
        if loaded == 0:
            self.reset()
            raise ModelError("llama.cpp refused the saved KV state")
        # A blob can load cleanly yet hold other cells than its header lists
        # tokens: trusting the header then fails every later decode of the
        # session (positions past the cells). The cells must end at len-1 and,
        # for full attention, start at 0 (a window's may start later).
        memory = self._memory()
        cells = llama_cpp.llama_memory_seq_pos_max(memory, 0) + 1
        first = llama_cpp.llama_memory_seq_pos_min(memory, 0)
        if cells != len(tokens) or (cells and self.info.memory == FULL_MEMORY and first != 0):
            self.reset()
            raise ModelError(
                f"the saved KV state holds {max(cells, 0)} cells but its header lists "
                f"{len(tokens)} tokens"
            )
        self.llama.input_ids[: len(tokens)] = tokens
        self.llama.n_tokens = len(tokens)
        floor = self.trim_floor
        if self.truncate(keep) != min(keep, len(tokens)):
            raise ModelError(
                f"the saved KV state cannot be cut back to {keep} tokens "
                f"({self.info.memory} memory: it holds {len(tokens)}, reusable from {floor})"
            )

    def _eval(self, tokens: list[int]) -> None:
        self._aborted = False
        try:
            self.llama.eval(tokens)
        except RuntimeError as exc:
            if self._aborted:
                # llama.cpp removed the batch's positions and ``n_tokens`` did not
                # move: the cache holds what it held before this batch.
                self.llama._ctx.kv_cache_seq_rm(-1, self.llama.n_tokens, -1)
                raise CancelledError("the turn was cancelled during prefill") from exc
            if str(exc) == "llama_decode returned 1":
                # No KV slot for the batch: the window is full. llama.cpp applied
                # none of it, so the cache keeps the prefix before it (a fork
                # of that prefix, as a compaction makes, still reuses it).
                self.llama._ctx.kv_cache_seq_rm(-1, self.llama.n_tokens, -1)
                raise KvSlotError(
                    f"the context window is full: no KV slot for {len(tokens)} more tokens "
                    f"after {self.llama.n_tokens} of {self.info.n_ctx}"
                ) from exc
            # A failed decode leaves the cache in an unknown state; start clean.
            self.reset()
            raise ModelError(f"llama.cpp failed to evaluate the prompt: {exc}") from exc

    def reset(self) -> None:
        with contextlib.suppress(Exception):
            self.llama._ctx.kv_cache_clear()
        self.llama.n_tokens = 0

    def generate(
        self,
        params: SamplingParams,
        *,
        max_tokens: int,
        cancelled: Callable[[], bool] = lambda: False,
        grammar: str | None = None,
        stats: DecodeStats | None = None,
    ) -> Iterator[int]:
        """Sample up to ``max_tokens`` ids after a ``prefill``.

        Each yielded id is evaluated just before the next is sampled, so when
        the generator ends (end of generation, ``max_tokens``, or the consumer
        stopping on a stop string) the cache holds every yielded id but the last.
        Greedy sampling verifies prompt-lookup drafts in batches (prompt_lookup.py).
        """
        if params.seed is not None:
            self.llama.set_seed(params.seed)
        sampler = self.llama._init_sampler(
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            temp=params.temperature,
            repeat_penalty=params.repeat_penalty,
            grammar=self._grammar(grammar) if grammar else None,
        )
        budget = min(max_tokens, self.llama.n_ctx() - self.llama.n_tokens)
        stats = stats if stats is not None else DecodeStats()
        stats.lookup = self._drafts_allowed(params, grammar)
        if stats.lookup:
            seq = _LiveSequence(self, sampler)
            yield from drafted_decode(
                seq,
                self.live_tokens,
                budget=budget,
                is_end=self.is_end_of_generation,
                cancelled=cancelled,
                stats=stats,
            )
            return
        pending: int | None = None
        for _ in range(budget):
            # Evaluate the previous id only when another is wanted: the last id
            # of a reply never needs its logits.
            if pending is not None:
                self._eval([pending])
            if cancelled():
                raise CancelledError("the turn was cancelled during decode")
            token = int(sampler.sample(self.llama._ctx, -1))
            yield token
            if self.is_end_of_generation(token):
                return
            pending = token

    def _drafts_allowed(self, params: SamplingParams, grammar: str | None) -> bool:
        """Drafts need a stateless greedy sampler (nothing a rejected draft could
        have changed) and a sequence that can be cut back by a few tokens."""
        return (
            params.prompt_lookup
            and params.temperature == 0
            and params.repeat_penalty == 1.0
            and grammar is None
            and self.info.memory in (FULL_MEMORY, SLIDING_WINDOW)
        )

    def _eval_rows(self, tokens: list[int]) -> None:
        """Like ``_eval`` (one batch), keeping the logits of every token."""
        llama = self.llama
        llama._ctx.kv_cache_seq_rm(-1, llama.n_tokens, -1)
        llama._batch.set_batch(batch=tokens, n_past=llama.n_tokens, logits_all=True)
        try:
            llama._ctx.decode(llama._batch)
        except RuntimeError as exc:
            llama._ctx.kv_cache_seq_rm(-1, llama.n_tokens, -1)
            if str(exc) == "llama_decode returned 1":
                raise KvSlotError(
                    f"the context window is full: no KV slot for {len(tokens)} more tokens"
                ) from exc
            self.reset()
            raise ModelError(f"llama.cpp failed to evaluate a draft: {exc}") from exc
        llama.input_ids[llama.n_tokens : llama.n_tokens + len(tokens)] = tokens
        llama.n_tokens += len(tokens)


class _LiveSequence:
    """The engine's live sequence as the drafting loop sees it (prompt_lookup.Sequence)."""

    def __init__(self, engine: Engine, sampler: Any) -> None:
        self.engine, self.sampler = engine, sampler

    def live(self) -> int:
        return int(self.engine.llama.n_tokens)

    def evaluate(self, tokens: list[int]) -> None:
        self.engine._eval_rows(tokens)

    def sample(self, row: int) -> int:
        return int(self.sampler.sample(self.engine.llama._ctx, row))

    def cut(self, keep: int) -> None:
        self.engine.truncate(keep)


def _memory_kind(model: llama_cpp.llama_model_p) -> str:
    if llama_cpp.llama_model_is_hybrid(model):
        return HYBRID
    if llama_cpp.llama_model_is_recurrent(model):
        return RECURRENT
    return SLIDING_WINDOW if llama_cpp.llama_model_n_swa(model) > 0 else FULL_MEMORY


def _gpu_backend() -> str:
    """The GPU backend this llama.cpp was built with, from its system info line."""
    info = llama_cpp.llama_print_system_info().decode(errors="replace").lower()
    found = [name for name in ("metal", "cuda", "vulkan", "hip", "sycl") if name in info]
    return ",".join(found) or "gpu"


def _implements(engine: Engine) -> KVEngine:
    """mypy checks here that ``Engine`` implements the engine interface."""
    return engine


__all__ = ["Engine", "ModelInfo", "SamplingParams"]  # the last two re-exported from ``base``
