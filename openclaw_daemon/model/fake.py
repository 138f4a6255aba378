"""A fake model engine: deterministic, queue-driven, for fast tests without a model.

It implements ``base.KVEngine`` the way the llama.cpp engine behaves, without
the arithmetic: a test enqueues the replies (as simonw/llm's ``MockModel``),
and each ``generate`` streams the next one, then the end-of-turn id. The
tokenizer is byte-level (id = byte value) plus a few ChatML control ids, so
``tokenize(a + b) == tokenize(a) + tokenize(b)`` and a test can count tokens
by hand; the template is ChatML. A test can add control tokens (``control``,
e.g. Mistral's ``[TOOL_CALLS]``): replies generate them as one id each, and
like llama.cpp's they decode to nothing unless ``special``. The live
sequence and its KV state are a list of ids, and ``kv`` records every
snapshot, restore, trim and reset, and ``prefills`` every prefill, so a test
can assert "the second turn prefilled only the new message" or "the L2
restore happened".

Shipped in the package, not in tests/: it is the second implementation of
the engine interface (the one that keeps the interface honest), it imports
nothing heavy, and a daemon can be built on it in-process
(``serve.server.Daemon(..., engine_factory=fake.factory(engine))``).
No llama_cpp here.
"""

from __future__ import annotations

import collections
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from openclaw_daemon.model.base import (
    FULL_MEMORY,
    SLIDING_WINDOW,
    Checkpoint,
    DecodeStats,
    DroppedState,
    EngineFactory,
    EngineSpec,
    KeepDropped,
    KVEngine,
    LiveMatch,
    LoadedEngine,
    ModelInfo,
    ProgressCallback,
    SamplingParams,
    batches,
    best_live_match,
    check_prefill,
    common_prefix,
)
from openclaw_daemon.model.chat_template import ChatTemplate
from openclaw_daemon.wire.errors import CancelledError, ModelError

IM_START, IM_END, END_OF_TEXT = 256, 257, 258
SPECIAL_IDS = {"<|im_start|>": IM_START, "<|im_end|>": IM_END, "<|endoftext|>": END_OF_TEXT}
SPECIAL_TEXT = {token: text for text, token in SPECIAL_IDS.items()}
N_VOCAB = 259
# A snapshot blob: magic, token count, positions lost to the window, then the
# ids (the "cells") as int32.
_BLOB_MAGIC = b"FAKEKV02"
_HEADER = struct.Struct("<8sII")


@dataclass(frozen=True)
class Reply:
    """One queued reply; ``token_delay_s`` paces it, so a test can cancel mid-reply."""

    text: str
    token_delay_s: float = 0.0


@dataclass(frozen=True)
class Prefill:
    """One ``prefill`` call: the prompt's length, what was reused and evaluated."""

    prompt: tuple[int, ...]
    reused: int
    evaluated: int
    batch_size: int
    interrupted: str = ""  # the error code, if it was cut short


@dataclass(frozen=True)
class Call:
    """One ``generate`` call: what the model saw and how it was asked to answer."""

    prompt: tuple[int, ...]
    params: SamplingParams
    max_tokens: int
    grammar: str | None


@dataclass
class FakeKV:
    """What happened to the live KV state, in order."""

    snapshots: list[tuple[int, ...]] = field(default_factory=list)
    restores: list[tuple[tuple[int, ...], int]] = field(default_factory=list)  # (tokens, keep)
    trims: list[tuple[int, int]] = field(default_factory=list)  # (kept, held before)
    resets: int = 0


class FakeEngine:
    """A ``KVEngine`` that answers what a test enqueued."""

    def __init__(
        self,
        replies: list[str | Reply] | None = None,
        *,
        n_ctx: int = 4096,
        name: str = "fake-model",
        prefill_delay_s: float = 0.0,
        memory: str = FULL_MEMORY,
        n_swa: int = 0,
        control: tuple[str, ...] = (),
    ) -> None:
        self._extra = {text: N_VOCAB + index for index, text in enumerate(control)}
        self._special = {**SPECIAL_IDS, **self._extra}
        self._special_text = {token: text for text, token in self._special.items()}
        self._special_re = _any_of(self._special)
        self._extra_re = _any_of(self._extra) if self._extra else None
        self.info = ModelInfo(
            path=f"fake:{name}",
            name=name,
            model_id=name,
            n_ctx=n_ctx,
            n_ctx_train=n_ctx,
            n_params=0,
            size_bytes=0,
            gpu_offload=False,
            chat_template=None,
            n_vocab=N_VOCAB + len(control),
            bos_id=-1,
            memory=memory,
            n_swa=n_swa,
        )
        self.template = ChatTemplate(None, bos_token="", eos_token="<|im_end|>")
        self.add_bos = False
        self.prefill_delay_s = prefill_delay_s  # per batch: lets a test preempt a prefill
        self.kv = FakeKV()
        self.prefills: list[Prefill] = []
        self.calls: list[Call] = []
        self._replies: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()  # a test enqueues while the worker generates
        self._live: list[int] = []
        # Other live sequences' (id, tokens), as a test sets them: the fake runs
        # one sequence, but the prefix cache plans around cells others share.
        self.other_sequences: list[tuple[int, tuple[int, ...]]] = []
        self.keep_dropped: KeepDropped | None = None
        self.dropped: list[DroppedState] = []  # as a test drops a sequence
        # Sliding window, as llama.cpp's cache behaves: once a restored
        # sequence grows, each new position takes the cell of the oldest masked
        # one (its search starts at cell 0 again), so the lowest ``_lost``
        # positions are gone.
        self._lost = 0
        self._reusing_cells = False
        self.enqueue(*(replies or []))

    def enqueue(self, *replies: str | Reply) -> None:
        with self._lock:
            self._replies.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._replies)

    # -- tokens ----------------------------------------------------------------
    def tokenize(self, text: str, *, add_bos: bool, special: bool = False) -> list[int]:
        ids: list[int] = [self.info.bos_id] if add_bos and self.info.bos_id >= 0 else []
        if not special:
            return ids + list(text.encode("utf-8"))
        return ids + self._with_special(text, self._special_re, self._special)

    @staticmethod
    def _with_special(text: str, pattern: re.Pattern[str], special: dict[str, int]) -> list[int]:
        ids: list[int] = []
        position = 0
        for match in pattern.finditer(text):
            ids += text[position : match.start()].encode("utf-8")
            ids.append(special[match.group()])
            position = match.end()
        return ids + list(text[position:].encode("utf-8"))

    def detokenize(self, tokens: list[int], *, special: bool = False) -> bytes:
        out = bytearray()
        for token in tokens:
            if token < 256:
                out.append(token)
            elif special:
                out += self._special_text.get(token, "").encode("utf-8")
        return bytes(out)

    def is_end_of_generation(self, token: int) -> bool:
        return token in (IM_END, END_OF_TEXT)

    @staticmethod
    def schema_to_gbnf(schema: str, prop_order: list[str]) -> str:
        """Not GBNF: the schema itself, so a test can read what was constrained."""
        return f"schema {','.join(prop_order)} {schema}"

    # -- the live sequence ----------------------------------------------------
    @property
    def live_tokens(self) -> list[int]:
        return list(self._live)

    def cached_prefix(self, tokens: list[int]) -> int:
        return common_prefix(self._live, tokens)

    @property
    def trim_floor(self) -> int:
        live = len(self._live)
        if live == 0 or self.info.memory == FULL_MEMORY:
            return 0
        if self.info.memory != SLIDING_WINDOW:
            return live
        return 0 if self._lost == 0 else min(live, self._lost + self.info.n_swa)

    def truncate(self, keep: int) -> int:
        live = len(self._live)
        if keep >= live:
            return live
        if 0 < keep < self.trim_floor:
            self.reset()
            return 0
        self.kv.trims.append((keep, live))
        del self._live[keep:]
        return keep

    sequence_id = 0  # one live sequence

    def each_sequence(self) -> Iterator[int]:
        yield 0

    def borrowable_prefix(self, tokens: list[int]) -> int:
        return 0

    def live_match(self, tokens: list[int]) -> LiveMatch:
        return best_live_match((0, tuple(self._live)), self.other_sequences, tokens)

    def reset_all(self) -> None:
        self.reset()

    def take_dropped(self) -> list[DroppedState]:
        taken, self.dropped = self.dropped, []
        return taken

    def reset(self) -> None:
        self.kv.resets += 1
        self._live.clear()
        self._lost, self._reusing_cells = 0, False

    def _append(self, ids: list[int]) -> None:
        self._live += ids
        if self._reusing_cells and self.info.n_swa:
            self._lost = min(self._lost + len(ids), max(0, len(self._live) - self.info.n_swa))

    def prefill(
        self,
        tokens: list[int],
        *,
        batch_size: int,
        on_progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        checkpoint: Checkpoint | None = None,
    ) -> int:
        check_prefill(tokens, self.info.n_ctx)
        reused = self.truncate(min(self.cached_prefix(tokens), len(tokens) - 1))
        todo = tokens[reused:]
        done = 0
        try:
            for stop in batches(reused, len(tokens), batch_size, checkpoint):
                if cancelled():
                    raise CancelledError("the turn was cancelled during prefill")
                if self.prefill_delay_s:
                    time.sleep(self.prefill_delay_s)
                chunk = tokens[reused + done : stop]
                self._append(chunk)
                done += len(chunk)
                if checkpoint is not None and stop == checkpoint[0]:
                    checkpoint[1]()
                if on_progress is not None:
                    on_progress(done, len(todo))
        except CancelledError as exc:
            self.prefills.append(Prefill(tuple(tokens), reused, done, batch_size, exc.code))
            raise
        self.prefills.append(Prefill(tuple(tokens), reused, done, batch_size))
        return reused

    def generate(
        self,
        params: SamplingParams,
        *,
        max_tokens: int,
        cancelled: Callable[[], bool] = lambda: False,
        grammar: str | None = None,
        stats: DecodeStats | None = None,  # no drafts: nothing to fill in
    ) -> Iterator[int]:
        self.calls.append(Call(tuple(self._live), params, max_tokens, grammar))
        with self._lock:
            if not self._replies:
                raise ModelError("the fake model has no reply queued (FakeEngine.enqueue)")
            reply = self._replies.popleft()
        # The model writes a test's control tokens as the one id they are.
        body = (
            self._with_special(reply.text, self._extra_re, self._extra)
            if self._extra_re
            else self.tokenize(reply.text, add_bos=False)
        )
        ids = [*body, IM_END]
        room = self.info.n_ctx - len(self._live)
        pending: int | None = None
        for token in ids[: min(max_tokens, room)]:
            # As llama.cpp: the previous id is evaluated only when another is
            # wanted, so the sequence never holds the reply's last id.
            if pending is not None:
                self._append([pending])
            if cancelled():
                raise CancelledError("the turn was cancelled during decode")
            if reply.token_delay_s:
                time.sleep(reply.token_delay_s)
            yield token
            if self.is_end_of_generation(token):
                return
            pending = token

    # -- parking and restoring (L2/L3 blobs) ------------------------------------
    def fingerprint(self) -> dict[str, object]:
        return {"modelPath": self.info.path, "nCtx": self.info.n_ctx, "kvType": "fake"}

    def snapshot(self, allocate: Callable[[int], memoryview]) -> tuple[tuple[int, ...], memoryview]:
        tokens = tuple(self._live)
        payload = _HEADER.pack(_BLOB_MAGIC, len(tokens), self._lost) + struct.pack(
            f"<{len(tokens)}i", *tokens
        )
        blob = allocate(len(payload))
        blob[: len(payload)] = payload
        self.kv.snapshots.append(tokens)
        return tokens, blob

    def restore(self, tokens: tuple[int, ...], blob: bytes | memoryview, *, keep: int) -> None:
        self._live.clear()
        data = bytes(blob)
        try:
            magic, count, lost = _HEADER.unpack_from(data)
            cells = struct.unpack_from(f"<{count}i", data, _HEADER.size)
        except struct.error:
            magic, cells, lost = b"", (), 0
        if magic != _BLOB_MAGIC:
            raise ModelError("the fake model refused the saved KV state")
        if cells != tokens:
            raise ModelError(
                f"the saved KV state holds {len(cells)} cells but its header lists "
                f"{len(tokens)} tokens"
            )
        self.kv.restores.append((tokens, keep))
        self._live, self._lost, self._reusing_cells = list(tokens), lost, True
        if self.truncate(keep) != min(keep, len(tokens)):
            raise ModelError(f"the saved KV state cannot be cut back to {keep} tokens")


def _any_of(texts: dict[str, int]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True)))


def factory(engine: FakeEngine) -> EngineFactory:
    """An engine factory for ``serve.server.Daemon`` that hands out ``engine``."""

    def make(spec: EngineSpec) -> LoadedEngine:
        return LoadedEngine(engine, memory_prediction={})

    return make


def _implements(engine: FakeEngine) -> KVEngine:
    """mypy checks here that ``FakeEngine`` implements the engine interface."""
    return engine
