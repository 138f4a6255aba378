"""The model engine: the ONLY module that imports llama_cpp.

One ``Engine`` holds one loaded model and one llama context (L1, the live KV
cache) with one or more sequences and the ids each holds, so a prompt prefills
only what follows the longest common prefix. Prefill runs in batches (progress
per batch); a cancel stops the batch in flight too (the abort callback, ~6 ms;
llama.cpp then drops that batch's positions). Decode yields one token at a
time. Turns running at once on several sequences share each step's
``llama_decode`` (``step_batcher``). Sliding-window and recurrent memory cannot
be cut back freely: ``trim_floor`` (docs/internals.md).

Pinned to llama-cpp-python 0.3.36: ``Llama._ctx``, ``Llama._batch``,
``Llama._init_sampler`` and ``_internals.LlamaContext`` are internal there.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import _internals as llama_internals
from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

from openclaw_daemon.config import check_gguf
from openclaw_daemon.model.base import (
    BATCH_MIN_ROWS,
    FULL_MEMORY,
    HYBRID,
    RECURRENT,
    SLIDING_WINDOW,
    Checkpoint,
    DecodeStats,
    DroppedState,
    KeepDropped,
    KVEngine,
    LiveMatch,
    ModelInfo,
    ProgressCallback,
    SamplingParams,
    batches,
    best_live_match,
    check_prefill,
    common_prefix,
)
from openclaw_daemon.model.builtin_templates import choose_template, load_template
from openclaw_daemon.model.catalog import model_id
from openclaw_daemon.model.prompt_lookup import MAX_DRAFT, drafted_decode
from openclaw_daemon.model.sequences import LiveSequence, SequencePool
from openclaw_daemon.model.step_batcher import StepBatcher, StepCounters, StepRequest
from openclaw_daemon.wire.errors import CancelledError, DaemonBusyError, KvSlotError, ModelError

log = logging.getLogger("openclawd.engine")

# The draft probe at load: a whole draft after the last accepted id, after a short
# text (any will do, as long as it has more than _PROBED_ROWS tokens).
_PROBED_ROWS = MAX_DRAFT + 1
_PROBE_TEXT = "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun."


class Engine:
    """A loaded model with its live sequences (a ``base.KVEngine``): one, or with
    ``parallel`` N, one per running turn (``sequences``); each thread's calls act
    on the sequence it bound, and concurrent evaluations share steps."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int,
        n_threads: int = 0,
        chat_template: str | None = None,
        n_gpu_layers: int | None = None,
        flash_attn: bool = False,
        parallel: int | None = None,
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
        if parallel is None:
            # Not asked: 4 where the model runs on a GPU, which reads the weights
            # once for a step of four sequences; 1 on a CPU, where a step of four
            # costs 3.1-3.5 times one (docs/internals.md, "Concurrent sessions").
            parallel = 4 if gpu and self.info.n_gpu_layers > 0 else 1
        if parallel > 1 and self.info.memory != FULL_MEMORY:
            # Their snapshots are of the whole context (``_whole_context_state``).
            log.warning("%s memory runs one sequence: --parallel %d ignored", self.info.memory,
                        parallel)  # fmt: skip
            parallel = 1
        if parallel > 1:
            self._open_sequences(parallel)
        self.sequences = SequencePool(parallel)
        # Every call into the context holds this: the step's decode, a sample, a cut.
        self._ctx_lock = threading.RLock()
        self._batcher = StepBatcher(self._run_step, max_rows=self.llama.n_batch)
        self._step_no = 0
        self.borrowed_tokens = 0  # prompt tokens a sequence took from another's cells
        self.evicted = 0  # idle sequences dropped to make room
        self.keep_dropped: KeepDropped | None = None
        self._dropped: list[DroppedState] = []  # copied out for the prefix cache; _ctx_lock
        exact = _on_a_thread_of_its_own(self._probe_drafts_exact)
        # ``auto`` drafts where they are exact, and with one sequence: beside other
        # sequences a draft can share a step of 10 rows or more, which takes the
        # many-row kernels (docs/internals.md).
        by_default = exact and self.sequences.parallel == 1
        self.info = dataclasses.replace(self.info, drafts_exact=exact, drafts_by_default=by_default)

    def _probe_drafts_exact(self) -> bool:
        """Whether a draft's rows come out exactly as the same tokens evaluated one
        at a time, on this build, backend and model: every draft batch size, 2 to
        MAX_DRAFT + 1 rows, compared bit for bit with single steps (0.32 s at load,
        on the empty cache; the step counters start after it).

        llama.cpp picks its kernels by batch size: stock CPU builds send a batch of
        two rows or more to tinyBLAS and one row to ggml's dot product, which add in
        another order (scripts/llama_build.py patches that); GPU backends and the
        weight types llama.cpp repacks have one-row and many-row kernels of their
        own. Flash attention's kernels part past 512 positions, further than this
        probe reaches, so with it on drafts are never called exact."""
        if self.flash_attn or self.info.memory not in (FULL_MEMORY, SLIDING_WINDOW):
            return False
        ids = self.tokenize(_PROBE_TEXT, add_bos=self.add_bos)
        head, tail = ids[:-_PROBED_ROWS], ids[-_PROBED_ROWS:]
        try:
            self._eval(head)
            alone = []
            for token in tail:
                self._eval([token])
                alone.append(self._row_logits(-1))
            # Every size: some CPUs have two-row kernels (ARM's i8mm) for even counts.
            for rows in range(2, _PROBED_ROWS + 1):
                self.truncate(len(head))
                self._eval(tail[:rows], all_logits=True)
                if not all(np.array_equal(alone[i], self._row_logits(i)) for i in range(rows)):
                    return False
            return True
        except Exception:  # noqa: BLE001 - a failed probe only leaves drafts off by default
            log.warning("could not probe whether drafts are exact: left off", exc_info=True)
            return False
        finally:
            self.reset()
            self._batcher.counters = StepCounters()

    def _row_logits(self, row: int) -> np.ndarray:
        """A copy of row ``row`` of this sequence's last evaluation (-1: its last)."""
        seq = self._seq
        if seq.saved is not None:
            return np.array(seq.saved[row])
        return self._copy_rows([seq.batch_rows[row]])[0]

    def _open_sequences(self, parallel: int) -> None:
        """Replace the context with one holding ``parallel`` sequences in one unified
        KV cache (the same n_ctx cells, shared), as llama-server's ``-np N --kv-unified``.
        ``Llama`` has no parameter for it, so its context is made again."""
        params = self.llama.context_params
        params.n_seq_max = parallel
        params.kv_unified = True
        self.llama._ctx.close()  # first: two contexts at once would need twice the KV memory
        self.llama._ctx = self.llama._stack.enter_context(
            contextlib.closing(
                llama_internals.LlamaContext(model=self.llama._model, params=params, verbose=False)
            )
        )

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

    # -- the live sequences (L1) ------------------------------------------------
    @property
    def _seq(self) -> LiveSequence:
        """The calling thread's sequence (``sequences.SequencePool``)."""
        return self.sequences.current

    @property
    def sequence_id(self) -> int:
        return self._seq.seq_id

    @property
    def live_tokens(self) -> list[int]:
        return list(self._seq.ids)

    def each_sequence(self) -> Iterator[int]:
        for seq in self.sequences.each_idle():
            yield seq.seq_id

    def cached_prefix(self, tokens: list[int]) -> int:
        """How many leading ``tokens`` the live KV cache already holds: in this
        sequence, or in another one ``prefill`` can copy them from (no compute)."""
        return max(common_prefix(seq.ids, tokens) for seq in self._donors())

    def borrowable_prefix(self, tokens: list[int]) -> int:
        """Of ``cached_prefix``, how far another sequence's cells reach past this
        one's own (0 with one sequence)."""
        best = self.cached_prefix(tokens)
        return best if best > common_prefix(self._seq.ids, tokens) else 0

    def live_match(self, tokens: list[int]) -> LiveMatch:
        # One copy of each sequence's ids (atomic under the GIL): a step or a
        # trim on another thread between two reads cannot make them disagree.
        own, *others = ((s.seq_id, tuple(s.ids)) for s in self._donors())
        return best_live_match(own, others, tokens)

    def _donors(self) -> list[LiveSequence]:
        """The sequences whose cells a prefill of this one may reuse: itself first."""
        own = self._seq
        return [own, *(s for s in self.sequences.sequences if s is not own)]

    def _borrow_prefix(self, tokens: list[int]) -> None:
        """Share another sequence's cells for a longer common prefix than this
        sequence holds (``llama_memory_seq_cp``: the shared head every session
        starts with is computed once)."""
        own, limit = self._seq, len(tokens) - 1
        with self._ctx_lock:  # the donor's ids must stay its cells while copied
            best, donor = min(common_prefix(own.ids, tokens), limit), None
            for other in self._donors()[1:]:
                shared = min(common_prefix(other.ids, tokens), limit)
                if shared > best:
                    best, donor = shared, other
            if donor is None:
                return
            memory = self._memory()
            llama_cpp.llama_memory_seq_rm(memory, own.seq_id, -1, -1)
            llama_cpp.llama_memory_seq_cp(memory, donor.seq_id, own.seq_id, 0, best)
            own.ids = donor.ids[:best]
            own.saved, own.step = None, -1
        self.borrowed_tokens += best

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
        from, even when the whole prompt was cached. While other sequences are
        decoding, the batches are short (``StepBatcher.chunk``).
        """
        check_prefill(tokens, self.info.n_ctx)
        with self._batcher.in_model_call():
            if self.sequences.parallel > 1:
                self._borrow_prefix(tokens)
            reused = self.truncate(min(common_prefix(self._seq.ids, tokens), len(tokens) - 1))
            # A tail shorter than a batch's minimum is evaluated with cached rows
            # before it (recomputed to the same values), so it goes through the
            # kernels a cold prefill uses (base.BATCH_MIN_ROWS). ``reused`` stays
            # what the cache supplied.
            begin = max(len(tokens) - BATCH_MIN_ROWS, self.trim_floor, 0)
            if begin < reused:
                cut = self.truncate(begin)
                if cut < begin:  # the cut had to clear the sequence: nothing was reused
                    reused = cut
                begin = cut
            else:
                begin = reused
            done, todo = 0, len(tokens) - begin
            while begin + done < len(tokens):
                if cancelled():
                    raise CancelledError("the turn was cancelled during prefill")
                start = begin + done
                # At most n_batch rows: the batch's arrays hold no more.
                size = min(self._batcher.chunk(batch_size), self.llama.n_batch)
                stop = batches(start, len(tokens), size, checkpoint)[0]
                self._eval(tokens[start:stop], cancelled=cancelled)
                done = stop - begin
                if checkpoint is not None and stop == checkpoint[0]:
                    checkpoint[1]()
                if on_progress is not None:
                    on_progress(done, todo)
        return reused

    @property
    def trim_floor(self) -> int:
        live = len(self._seq.ids)
        if live == 0 or self.info.memory == FULL_MEMORY:
            return 0
        if self.info.memory != SLIDING_WINDOW:
            return live  # recurrent or hybrid: only the whole state
        lowest = llama_cpp.llama_memory_seq_pos_min(self._memory(), self._seq.seq_id)
        # llama-server's test (server-context.cpp): cutting to ``keep`` needs the
        # positions from keep - n_swa on.
        return 0 if lowest <= 0 else min(live, lowest + self.info.n_swa)

    def truncate(self, keep: int) -> int:
        seq = self._seq
        live = len(seq.ids)
        if keep >= live:
            return live
        with self._ctx_lock:
            if 0 < keep < self.trim_floor or not llama_cpp.llama_memory_seq_rm(
                self._memory(), seq.seq_id, keep, -1
            ):
                # Keeping more would leave positions the window no longer holds
                # (or memory that refuses a partial cut): start the sequence over.
                log.info("cannot cut the live state back to %d of %d tokens: cleared", keep, live)
                self.reset()
                return 0
            del seq.ids[keep:]
        return keep

    def _memory(self) -> llama_cpp.llama_memory_t:
        return llama_cpp.llama_get_memory(self.llama._ctx.ctx)

    def next_logits(self) -> np.ndarray:
        """The logits the next token is sampled from (a copy), for the reuse
        equivalence test: the sampler reads the same row."""
        return self._row_logits(-1)

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
            # A stock build computes a batch's rows otherwise (scripts/llama_build.py):
            # its blobs would not restore as our cold prefill computes.
            "llamaPatch": _build_patch(),
            **({"stateLayout": "context"} if self._whole_context_state else {}),
        }

    @property
    def _whole_context_state(self) -> bool:
        """Snapshots of the whole context, not of sequence 0: a sequence save
        drops the positions a sliding window masks (llama_kv_cache::state_write),
        so a restored one could not be cut back at all. (Such models run one
        sequence: see ``__init__``.)"""
        return self.info.memory == SLIDING_WINDOW

    def snapshot(self, allocate: Callable[[int], memoryview]) -> tuple[tuple[int, ...], memoryview]:
        """The live tokens and their KV state, copied into a writable buffer of
        the given size from ``allocate``."""
        ctx, whole, seq = self.llama._ctx.ctx, self._whole_context_state, self._seq

        def state_size() -> int:
            return int(llama_cpp.llama_state_get_size(ctx) if whole else
                       llama_cpp.llama_state_seq_get_size(ctx, seq.seq_id))  # fmt: skip

        with self._ctx_lock:
            size = state_size()
        # The buffer is found or mapped outside the lock: a fresh one is pre-faulted
        # (138 MB for 6000 tokens), tens of ms other sequences' steps would wait.
        # The size still holds when the lock is taken again: a turn's sequence is
        # busy (no eviction, no rebinding), and parking runs with no turn running.
        blob = allocate(size)
        with self._ctx_lock:
            if state_size() != size:
                raise ModelError("the KV state changed size while its buffer was allocated")
            out = np.frombuffer(blob, dtype=np.uint8).ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
            written = (llama_cpp.llama_state_get_data(ctx, out, size) if whole else
                       llama_cpp.llama_state_seq_get_data(ctx, out, size, seq.seq_id))  # fmt: skip
        if written != size:
            raise ModelError(f"llama.cpp saved {written} of {size} bytes of the KV state")
        return tuple(seq.ids), blob

    def restore(self, tokens: tuple[int, ...], blob: bytes | memoryview, *, keep: int) -> None:
        """Load a snapshot, then trim it to its first ``keep`` tokens."""
        self.reset()
        seq = self._seq
        # A pointer into the blob's own memory: no copy, even for immutable bytes.
        data, ctx = np.frombuffer(blob, dtype=np.uint8), self.llama._ctx.ctx
        src = data.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
        with self._ctx_lock:
            if self._whole_context_state:
                loaded = llama_cpp.llama_state_set_data(ctx, src, data.size)
            else:
                loaded = llama_cpp.llama_state_seq_set_data(ctx, src, data.size, seq.seq_id)
            if loaded == 0 and self.sequences.parallel > 1 and self._evict_idle([]):
                loaded = llama_cpp.llama_state_seq_set_data(ctx, src, data.size, seq.seq_id)
            if loaded == 0:
                self.reset()
                if self.sequences.parallel > 1:  # no room beside the running turns
                    raise DaemonBusyError(
                        "no room in the KV cache to restore this session beside the turns "
                        "running now",
                        hint="Retry when they end, or lower --parallel.",
                    )
                raise ModelError("llama.cpp refused the saved KV state")
            # A blob can load cleanly yet hold other cells than its header lists
            # tokens: trusting the header then fails every later decode of the
            # session (positions past the cells). The cells must end at len-1 and,
            # for full attention, start at 0 (a window's may start later).
            memory = self._memory()
            cells = llama_cpp.llama_memory_seq_pos_max(memory, seq.seq_id) + 1
            first = llama_cpp.llama_memory_seq_pos_min(memory, seq.seq_id)
        if cells != len(tokens) or (cells and self.info.memory == FULL_MEMORY and first != 0):
            self.reset()
            raise ModelError(
                f"the saved KV state holds {max(cells, 0)} cells but its header lists "
                f"{len(tokens)} tokens"
            )
        seq.ids = list(tokens)
        floor = self.trim_floor
        if self.truncate(keep) != min(keep, len(tokens)):
            raise ModelError(
                f"the saved KV state cannot be cut back to {keep} tokens "
                f"({self.info.memory} memory: it holds {len(tokens)}, reusable from {floor})"
            )

    # -- evaluation: one step, shared by the sequences evaluating at once --------
    def _eval(
        self,
        tokens: list[int],
        *,
        cancelled: Callable[[], bool] | None = None,
        all_logits: bool = False,
    ) -> None:
        """Evaluate ``tokens`` after this sequence's ids, in the next step."""
        seq = self._seq
        request = StepRequest(seq, tokens, all_logits=all_logits, cancelled=cancelled)
        self._batcher.evaluate(request)
        stats = seq.stats
        if stats is not None:
            stats.steps += 1
            if request.shared_with:
                stats.shared_steps += 1
                stats.most_sequences = max(stats.most_sequences, request.shared_with + 1)

    def _run_step(self, step: list[StepRequest]) -> None:
        """One ``llama_decode`` of every request's rows (``StepBatcher``'s callback)."""
        with self._ctx_lock:
            try:
                self._decode(step)
            except KvSlotError:
                if len(step) == 1:
                    raise
                # Together they do not fit: each alone may (or fails alone).
                for request in step:
                    try:
                        self._decode([request])
                    except Exception as exc:  # noqa: BLE001 - it belongs to that request
                        request.error = exc

    def _decode(self, step: list[StepRequest]) -> None:
        ctx, memory, batch = self.llama._ctx.ctx, self._memory(), self.llama._batch.batch
        rows: list[list[int]] = []
        n = 0
        for request in step:
            seq = request.seq
            llama_cpp.llama_memory_seq_rm(memory, seq.seq_id, len(seq.ids), -1)
            wanted: list[int] = []
            last = len(request.tokens) - 1
            for i, token in enumerate(request.tokens):
                batch.token[n] = token
                batch.pos[n] = len(seq.ids) + i
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq.seq_id
                keep = request.all_logits or i == last
                batch.logits[n] = keep
                if keep:
                    wanted.append(n)
                n += 1
            rows.append(wanted)
        batch.n_tokens = n
        alone = step[0].cancelled if len(step) == 1 else None
        code = self._decode_batch(ctx, batch, alone)
        if code == 1 and self._evict_idle(step):
            code = self._decode_batch(ctx, batch, alone)
        if code != 0:
            for request in step:  # llama.cpp applied none of it
                seq = request.seq
                llama_cpp.llama_memory_seq_rm(memory, seq.seq_id, len(seq.ids), -1)
            self._decode_failed(code, step)
        keep_copies = self.sequences.parallel > 1
        for request, wanted in zip(step, rows, strict=True):
            seq = request.seq
            seq.ids.extend(request.tokens)
            seq.step, seq.batch_rows = self._step_no, wanted
            seq.saved = self._copy_rows(wanted) if keep_copies else None

    def _decode_batch(
        self, ctx: llama_cpp.llama_context_p, batch: Any, cancelled: Callable[[], bool] | None
    ) -> int:
        """``llama_decode``, abortable when one request runs alone (aborting a
        shared step would cost the other sequences their rows)."""
        self._aborted = False
        self._step_no += 1  # the context's logits rows are this attempt's from now on
        if cancelled is None:
            return int(llama_cpp.llama_decode(ctx, batch))
        self._abort_when = cancelled
        llama_cpp.llama_set_abort_callback(ctx, self._abort_callback, None)
        try:
            return int(llama_cpp.llama_decode(ctx, batch))
        finally:
            llama_cpp.llama_set_abort_callback(ctx, self._no_abort_callback, None)
            self._abort_when = None

    def _decode_failed(self, code: int, step: list[StepRequest]) -> None:
        rows = sum(len(r.tokens) for r in step)
        if code == 2 or self._aborted:
            raise CancelledError("the turn was cancelled during prefill")
        if code == 1:
            # No KV slot for the batch: the window is full. llama.cpp applied
            # none of it, so the cache keeps the prefix before it (a fork
            # of that prefix, as a compaction makes, still reuses it).
            held = len(step[0].seq.ids)
            if held + rows <= self.info.n_ctx and self.sequences.parallel > 1:
                # It would fit alone: the cells are other running turns'. Not an
                # overflow of this session (that would compact it for nothing).
                raise DaemonBusyError(
                    f"no room in the KV cache for {rows} more tokens: its {self.info.n_ctx} "
                    "cells are in use by turns running beside this one",
                    hint="Retry when they end, or start the daemon with a larger --n-ctx "
                    "or a lower --parallel.",
                )
            raise KvSlotError(
                f"the context window is full: no KV slot for {rows} more tokens "
                f"after {held} of {self.info.n_ctx}"
            )
        # A failed decode leaves its sequences in an unknown state; start them clean
        # (the other running turns' sequences were not in this step).
        with self._ctx_lock:
            for request in step:
                llama_cpp.llama_memory_seq_rm(self._memory(), request.seq.seq_id, -1, -1)
                request.seq.ids, request.seq.saved = [], None
        raise ModelError(f"llama.cpp failed to evaluate the prompt: llama_decode returned {code}")

    def _evict_idle(self, step: list[StepRequest]) -> bool:
        """Free the cells of every sequence no turn owns, so a running turn gets
        room; True if any were freed. A state no tier holds is copied out first
        (``_copy_out_before_dropping``)."""
        running = {r.seq.seq_id for r in step} | {self._seq.seq_id}
        freed = False
        copied: list[tuple[int, ...]] = []
        # Longest first: a sequence holding a prefix of one already copied needs
        # no copy of its own (that entry serves it, cut back).
        idle = sorted(self.sequences.idle(), key=lambda s: -len(s.ids))
        for seq in idle:
            if seq.seq_id in running or not seq.ids:
                continue
            with self.sequences.claimed(seq) as still_idle:
                if not still_idle:
                    continue  # a turn bound it since: its cells are that turn's now
                log.info("dropping sequence %d (%d tokens) for room", seq.seq_id, len(seq.ids))
                tokens = tuple(seq.ids)
                covered = any(kept[: len(tokens)] == tokens for kept in copied)
                if not covered and self._copy_out_before_dropping(seq):
                    copied.append(tokens)
                llama_cpp.llama_memory_seq_rm(self._memory(), seq.seq_id, -1, -1)
                seq.ids, seq.saved = [], None
                self.evicted += 1
                freed = True
        return freed

    def _copy_out_before_dropping(self, seq: LiveSequence) -> bool:
        """Copy an idle sequence's state out before its cells are dropped, if the
        prefix cache wants it (no tier holds it yet: its turn ended after the last
        idle-time park, and RAM has room); True if it did. Into plain memory: the
        store files an entry under the prefix cache's tiers lock, which a turn may
        hold while it waits for this step (``PrefixCache.park_dropped`` files the
        copy later). Best effort: a failure here only costs that session a
        prefill, never the running turns their room. Under ``_ctx_lock``."""
        tokens = tuple(seq.ids)
        try:
            ctx = self.llama._ctx.ctx
            size = int(llama_cpp.llama_state_seq_get_size(ctx, seq.seq_id))
            pending = sum(state.blob.nbytes for state in self._dropped)
            keep = self.keep_dropped
            label = keep(seq.seq_id, tokens, size + pending) if keep is not None else None
            if label is None:
                return False
            buffer = np.empty(size, dtype=np.uint8)
            out = buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
            written = llama_cpp.llama_state_seq_get_data(ctx, out, size, seq.seq_id)
            if written != size:
                raise ModelError(f"llama.cpp saved {written} of {size} bytes")
        except Exception as exc:  # noqa: BLE001 - the drop goes on without the copy
            log.warning(
                "could not keep sequence %d's state before dropping it: %s", seq.seq_id, exc
            )
            return False
        self._dropped.append(DroppedState(tokens, memoryview(buffer.data), label))
        return True

    def take_dropped(self) -> list[DroppedState]:
        if not self._dropped:  # the common case, without waiting for a step
            return []
        with self._ctx_lock:
            taken, self._dropped = self._dropped, []
        return taken

    def _copy_rows(self, rows: list[int]) -> np.ndarray:
        ctx, n_vocab = self.llama._ctx.ctx, self.info.n_vocab
        return np.stack(
            [
                np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(n_vocab,))
                for row in rows
            ]
        )

    def _sample(self, sampler: Any, row: int = -1) -> int:
        """Sample from row ``row`` of this sequence's last evaluation (-1: its last)."""
        seq = self._seq
        with self._ctx_lock:
            ctx = self.llama._ctx
            if self.sequences.parallel == 1:
                if seq.step != self._step_no:
                    raise ModelError("no logits to sample from: the last evaluation failed")
                return int(sampler.sample(ctx, seq.batch_rows[row]))
            if seq.saved is None:
                raise ModelError("no logits to sample from: the last evaluation failed")
            # Several sequences: always the sequence's own copy, put in the row the
            # sampler reads (the context's rows may be another step's, or another
            # sequence's copy put there before).
            target = llama_cpp.llama_get_logits_ith(ctx.ctx, -1)
            np.ctypeslib.as_array(target, shape=(self.info.n_vocab,))[:] = seq.saved[row]
            return int(sampler.sample(ctx, -1))

    def reset(self) -> None:
        seq = self._seq
        with self._ctx_lock:
            with contextlib.suppress(Exception):
                if self.sequences.parallel == 1:
                    self.llama._ctx.kv_cache_clear()
                else:
                    llama_cpp.llama_memory_seq_rm(self._memory(), seq.seq_id, -1, -1)
            seq.ids, seq.saved, seq.step = [], None, -1

    def reset_all(self) -> None:
        """Empty every sequence no other turn is running on (``cache clear``): a
        turn decoding beside it keeps its cells (it is parked after, as usual)."""
        if self.sequences.parallel == 1:
            self.reset()
            return
        own = self._seq
        for seq in [own, *(s for s in self.sequences.idle() if s is not own)]:
            with self._ctx_lock, contextlib.suppress(Exception):
                llama_cpp.llama_memory_seq_rm(self._memory(), seq.seq_id, -1, -1)
            seq.ids, seq.saved, seq.step = [], None, -1

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
        with self._ctx_lock:  # the seed is the Llama's, read by _init_sampler
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
        budget = min(max_tokens, self.info.n_ctx - len(self._seq.ids))
        stats = stats if stats is not None else DecodeStats()
        stats.lookup = self._drafts_allowed(params, grammar)
        stats.exact = stats.lookup and self.info.drafts_exact
        seq = self._seq
        seq.stats = stats
        try:
            with self._batcher.in_model_call():
                if stats.lookup:
                    yield from drafted_decode(
                        _LiveSequence(self, sampler),
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
                    token = self._sample(sampler)
                    yield token
                    if self.is_end_of_generation(token):
                        return
                    pending = token
        finally:
            seq.stats = None
            # A step shared with another sequence's rows may have taken the
            # many-row kernels: no longer plain decoding's, bit for bit.
            stats.exact = stats.exact and stats.shared_steps == 0

    def _drafts_allowed(self, params: SamplingParams, grammar: str | None) -> bool:
        """Drafts need a stateless greedy sampler (nothing a rejected draft could
        have changed) and a sequence that can be cut back by a few tokens. Not
        asked either way, they run where they are lossless."""
        wanted = params.prompt_lookup
        return (
            (self.info.drafts_by_default if wanted is None else wanted)
            and params.temperature == 0
            and params.repeat_penalty == 1.0
            and grammar is None
            and self.info.memory in (FULL_MEMORY, SLIDING_WINDOW)
        )

    def step_stats(self) -> dict[str, Any]:
        """For ``daemon status``: the sequences and how their steps were shared."""
        counters = self._batcher.counters
        return {
            "parallel": self.sequences.parallel,
            "sequences": self.sequences.describe(),
            "steps": counters.steps,
            "sharedSteps": counters.shared_steps,
            "stepsBySize": {str(k): v for k, v in sorted(counters.by_size.items())},
            "stepMsBySize": {
                str(k): round(counters.seconds_by_size.get(k, 0.0) * 1000 / v, 2)
                for k, v in sorted(counters.by_size.items())
            },
            "borrowedTokens": self.borrowed_tokens,
            "evicted": self.evicted,
        }


class _LiveSequence:
    """The engine's live sequence as the drafting loop sees it (prompt_lookup.Sequence)."""

    def __init__(self, engine: Engine, sampler: Any) -> None:
        self.engine, self.sampler = engine, sampler

    def live(self) -> int:
        return len(self.engine.live_tokens)

    def evaluate(self, tokens: list[int]) -> None:
        self.engine._eval(tokens, all_logits=True)

    def sample(self, row: int) -> int:
        return self.engine._sample(self.sampler, row)

    def cut(self, keep: int) -> None:
        self.engine.truncate(keep)


def _on_a_thread_of_its_own(compute: Callable[[], bool]) -> bool:
    """Run ``compute`` on a thread that then ends. llama.cpp's CPU backend keeps an
    OpenMP team per thread that ever computed: while the loading thread lives on
    with its team, the model worker decoded at half speed (51 against 94 tok/s on
    the quote prompt, 2 cores; docs/internals.md). A team dies with its thread."""
    result: list[bool] = [False]
    thread = threading.Thread(target=lambda: result.__setitem__(0, compute()), name="probe")
    thread.start()
    thread.join()
    return result[0]


def _build_patch() -> str:
    """The llama.cpp patch the loaded CPU backend carries (the string
    scripts/llama_build.py compiles in as ``openclaw_edge_llama_patch``), or ""
    for a stock build. The library is loaded already: this only looks it up."""
    for lib in sorted((Path(llama_cpp.__file__).parent / "lib").glob("libggml-cpu.so*")):
        try:
            first = ctypes.c_char.in_dll(ctypes.CDLL(str(lib)), "openclaw_edge_llama_patch")
        except (OSError, ValueError):
            continue
        # A char array, not a pointer: its address is the string.
        return ctypes.string_at(ctypes.addressof(first)).decode()
    return ""


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
