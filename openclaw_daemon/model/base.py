"""The engine interface: what the daemon asks of a model, as ``typing.Protocol``s.

Two capabilities, kept apart so an engine can offer only the first:

- ``ModelEngine``, the model call. Token ids in: ``prefill`` makes the
  engine's one live sequence hold a prompt (reusing what it already holds,
  reporting progress per batch), ``generate`` streams the reply's ids; plus
  the tokenizer, the chat template and the model's facts (``ModelInfo``).
  Usage is counted by the caller from what these return (``prefill`` says how
  many prompt tokens it reused, ``generate`` yields every output id).
- ``KVControl``, control of the live KV state: compare a prompt with it,
  trim, clear, snapshot into a caller's buffer, restore, and the fingerprint
  a saved snapshot depends on. The prefix cache (L1/L2/L3) needs it; an engine
  without it (an HTTP upstream) would keep its own cache.

``KVEngine`` is both, which is what the daemon runs on today. The llama.cpp
engine (``llama_engine``) implements it, and so does the fake (``fake``) the
unit tests drive. ``EngineFactory`` is how the server gets one: injected,
defaulting to loading llama.cpp (``serve.server.load_llama_engine``).

Standard library only (plus the chat template type and the id rule): no llama_cpp here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from openclaw_daemon import model_names
from openclaw_daemon.model.chat_template import ChatTemplate
from openclaw_daemon.wire.errors import KvSlotError, ModelError

# done, total: prompt tokens evaluated so far in this prefill, and to do.
ProgressCallback = Callable[[int, int], None]
# (at, park): park the live state when a prefill has evaluated ``at`` tokens.
Checkpoint = tuple[int, Callable[[], None]]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share (a live sequence and a prompt,
    two tapes, two cache entries)."""
    count, limit = 0, min(len(a), len(b))
    while count < limit and a[count] == b[count]:
        count += 1
    return count


@dataclass(frozen=True)
class LiveMatch:
    """What the live sequences hold of a prompt, read once (``KVControl.live_match``):
    the prefix cache plans, and reports a divergence, from one view of the cells."""

    length: int  # the longest prefix of the prompt any live sequence holds
    seq_id: int  # the sequence holding it
    held: tuple[int, ...]  # that sequence's tokens (where they go on past the prompt)
    sequences: int = 1  # how many live sequences the read covered (``--parallel``)


def best_live_match(own: tuple[int, tuple[int, ...]],
                    others: Sequence[tuple[int, tuple[int, ...]]],
                    tokens: Sequence[int]) -> LiveMatch:  # fmt: skip
    """The sequence sharing the longest prefix of ``tokens``: among equals, one
    whose tokens go on past that prefix (a divergence report names what the
    prompt left), and this sequence (``own``) before another."""
    ranked = [(common_prefix(ids, tokens), seq_id, ids) for seq_id, ids in (own, *others)]
    length, seq_id, held = max(ranked, key=lambda r: (r[0], len(r[2]) > r[0]))
    return LiveMatch(length, seq_id, held, len(ranked))


@dataclass(frozen=True)
class DroppedState:
    """An idle sequence's KV state, copied out as the engine dropped its cells to
    make room for a running turn (``KVControl.take_dropped``): the prefix cache
    parks it, so its session comes back from L2, not by a cold prefill."""

    tokens: tuple[int, ...]
    blob: memoryview
    label: str  # the session that filled the sequence


# Asked by the engine before it drops an idle sequence for room: its id, its
# tokens, and the bytes its copy would hold with the copies not yet taken; the
# label to keep the state under, or None to let it go (a tier holds it, or RAM
# has no room). The engine's context lock is held: it may take no lock but the
# store's own.
KeepDropped = Callable[[int, tuple[int, ...], int], "str | None"]


# The fewest rows a prefill batch takes where it can (a prompt shorter than this
# is one batch). scripts/llama_build.py's build sends products of fewer rows to
# the one-row kernels, as a draft or a decode step; a prefill row computed by the
# many-row kernels comes out the same whatever batch carried it, so a short tail
# of a cached prompt, evaluated with cached rows before it up to this size,
# comes out as the same rows prefilled cold (docs/internals.md).
BATCH_MIN_ROWS = 10


def batches(start: int, end: int, size: int, checkpoint: Checkpoint | None) -> list[int]:
    """Where a prefill from ``start`` to ``end`` ends its batches of ``size``:
    one also ends at the checkpoint, if it lies strictly in between. With no
    checkpoint inside and batches of at least twice ``BATCH_MIN_ROWS``, the last
    batch is not left shorter than that: the one before gives it rows."""
    stops = list(range(start + size, end, size)) + [end]
    inside = checkpoint is not None and start < checkpoint[0] < end
    short = len(stops) > 1 and end - stops[-2] < BATCH_MIN_ROWS
    if short and not inside and size >= 2 * BATCH_MIN_ROWS:
        stops[-2] = end - BATCH_MIN_ROWS
    if checkpoint is not None and start < checkpoint[0] < end and checkpoint[0] not in stops:
        stops = sorted([*stops, checkpoint[0]])
    return stops


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    seed: int | None = None
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    # Prompt-lookup drafts (model/prompt_lookup.py), where an engine has them:
    # greedy sampling with nothing stateful. None (the default): where they are
    # lossless, i.e. the model's ``drafts_exact`` (docs/internals.md).
    prompt_lookup: bool | None = None


@dataclass
class DecodeStats:
    """What a ``generate`` did besides yielding ids, filled in as it runs."""

    lookup: bool = False  # drafts were tried (the params and the engine allowed them)
    exact: bool = False  # and the output is plain decoding's: drafts_exact, no step shared
    drafted: int = 0  # draft tokens verified
    accepted: int = 0  # of them, the ones the model agreed with
    batches: int = 0  # verification batches (each one model evaluation)
    # Model steps of this decode, and those shared with other sequences' turns
    # (--parallel): why a turn decoded slower than alone.
    steps: int = 0
    shared_steps: int = 0
    most_sequences: int = 1  # the most sequences one of its steps carried


@dataclass(frozen=True)
class ModelInfo:
    path: str
    name: str
    n_ctx: int
    n_ctx_train: int
    n_params: int
    size_bytes: int
    gpu_offload: bool
    chat_template: str | None
    n_vocab: int  # ids are 0..n_vocab-1 (a saved tape with others is refused)
    bos_id: int  # the beginning-of-sequence id, -1 if the model has none
    # What a KV state of this model can be cut back to (docs/internals.md,
    # "Sliding-window and recurrent memory"): FULL_MEMORY states trim to any
    # length; SLIDING_WINDOW ones keep only the last ``n_swa`` positions in some
    # layers; RECURRENT and HYBRID ones only exist whole.
    memory: str = "full"
    n_swa: int = 0  # the sliding window in tokens, 0 if none

    template_family: str = "chatml"  # gemma, llama3, mistral, chatml or custom
    template_source: str = "embedded"  # embedded, builtin:NAME (why), file:PATH, override:NAME

    # The stable id transcripts and results name (``model_names.model_id``);
    # ``name`` stays the GGUF's display name. Derived from the file name if unset.
    model_id: str = ""
    n_layers: int = 0  # llama.cpp offloads up to n_layers + 1 (the output layer)
    n_gpu_layers: int = 0  # layers offloaded to the GPU
    gpu_backend: str = "cpu"  # cpu, metal, cuda, vulkan, ...
    # A batch's rows come out exactly as the same tokens one at a time, so greedy
    # prompt-lookup drafts change nothing but the speed (the engine probes it at
    # load: scripts/llama_build.py patches llama.cpp's CPU kernels for it).
    drafts_exact: bool = False
    drafts_by_default: bool = False  # --prompt-lookup auto: exact, and one sequence

    def __post_init__(self) -> None:
        if not self.model_id:
            object.__setattr__(self, "model_id", model_names.model_id(Path(self.path).name))


FULL_MEMORY = "full"
SLIDING_WINDOW = "sliding-window"
RECURRENT = "recurrent"
HYBRID = "hybrid"


@runtime_checkable
class ModelEngine(Protocol):
    """One loaded model with one live sequence. Not thread-safe: one worker drives it."""

    info: ModelInfo
    template: ChatTemplate
    add_bos: bool  # whether a prompt starts with ``info.bos_id``

    def tokenize(self, text: str, *, add_bos: bool, special: bool = False) -> list[int]:
        """Ids of ``text``; ``special`` parses control-token spellings (markup only)."""
        ...

    def detokenize(self, tokens: list[int], *, special: bool = False) -> bytes:
        """Bytes of ``tokens``; ``special`` also spells control tokens."""
        ...

    def is_end_of_generation(self, token: int) -> bool: ...

    def schema_to_gbnf(self, schema: str, prop_order: list[str]) -> str:
        """A JSON schema as the grammar text ``generate`` takes."""
        ...

    @property
    def live_tokens(self) -> list[int]:
        """The ids the live sequence holds, in order."""
        ...

    def prefill(
        self,
        tokens: list[int],
        *,
        batch_size: int,
        on_progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        checkpoint: Checkpoint | None = None,
    ) -> int:
        """Make the live sequence hold exactly ``tokens``; returns the tokens reused.

        The last token is always evaluated (its logits are sampled from). With
        a ``checkpoint`` (at, park), a batch ends at ``at`` tokens and ``park()``
        runs there, if the prefill crosses it.
        Raises CancelledError (between batches), KvSlotError (the window is
        full; the sequence keeps the batches before) or ModelError.
        """
        ...

    def generate(
        self,
        params: SamplingParams,
        *,
        max_tokens: int,
        cancelled: Callable[[], bool] = lambda: False,
        grammar: str | None = None,
        stats: DecodeStats | None = None,
    ) -> Iterator[int]:
        """Sample up to ``max_tokens`` ids after a ``prefill``; the last may be
        an end-of-generation id. When the iterator is exhausted or closed, the
        live sequence holds every yielded id but the last. ``stats``, if given,
        is filled in as it runs."""
        ...


def check_prefill(tokens: list[int], n_ctx: int) -> None:
    """The refusals every engine's ``prefill`` starts with: an empty prompt
    (nothing to sample from) and one longer than the context window."""
    if not tokens:
        raise ModelError("cannot prefill an empty prompt")
    if len(tokens) > n_ctx:
        raise KvSlotError(
            f"the prompt is {len(tokens)} tokens but the context window holds {n_ctx}"
        )


@runtime_checkable
class KVControl(Protocol):
    """Control of the live sequence's KV state, for the prefix cache."""

    def cached_prefix(self, tokens: list[int]) -> int:
        """How many leading ``tokens`` the live sequence already holds."""
        ...

    @property
    def trim_floor(self) -> int:
        """The shortest length above 0 the live state can be cut back to: 0 for
        full attention, past the positions a sliding window has dropped, the
        whole state for recurrent memory."""
        ...

    def truncate(self, keep: int) -> int:
        """Drop every live token from position ``keep`` on; returns the tokens
        kept: ``keep``, or 0 when the state cannot be cut there (it is emptied,
        never left holding positions the model would read wrongly)."""
        ...

    def reset(self) -> None:
        """Empty the live sequence."""
        ...

    def reset_all(self) -> None:
        """Empty every live sequence (one, unless the engine runs several)."""
        ...

    @property
    def sequence_id(self) -> int:
        """Which live sequence the calling thread's calls act on (0 with one)."""
        ...

    def borrowable_prefix(self, tokens: list[int]) -> int:
        """The prefix of ``tokens`` another live sequence holds, if it reaches
        past this one's own (a prefill shares those cells); else 0."""
        ...

    def live_match(self, tokens: list[int]) -> LiveMatch:
        """Which live sequence's cells share the longest prefix of ``tokens``
        (``cached_prefix`` and its source, from one read of every sequence)."""
        ...

    # Set by the prefix cache: which dropped sequences' states to copy out.
    keep_dropped: KeepDropped | None

    def take_dropped(self) -> list[DroppedState]:
        """The states copied out (``keep_dropped``) since the last call, oldest first."""
        ...

    def each_sequence(self) -> Iterator[int]:
        """Act on each live sequence no turn owns, in turn: while the iterator is
        at one (its id), the calling thread's calls go to it."""
        ...

    def fingerprint(self) -> dict[str, object]:
        """What a saved snapshot depends on (model file, context, KV type)."""
        ...

    def snapshot(self, allocate: Callable[[int], memoryview]) -> tuple[tuple[int, ...], memoryview]:
        """The live tokens and their KV state, written into ``allocate(size)``."""
        ...

    def restore(self, tokens: tuple[int, ...], blob: bytes | memoryview, *, keep: int) -> None:
        """Load a snapshot of ``tokens``, then trim it to ``keep``; ModelError
        (and an empty sequence) if the state is refused, does not match, or
        cannot be cut back to ``keep`` (the planner asks only for what a
        snapshot's ``trim_floor`` allowed when it was taken)."""
        ...


@runtime_checkable
class KVEngine(ModelEngine, KVControl, Protocol):
    """A model call with KV control: what the daemon's prefix cache runs on."""


@dataclass(frozen=True)
class EngineSpec:
    """What the daemon asks an engine factory for."""

    model_path: Path
    n_ctx: int
    ram_cache_budget: int  # bytes: a memory check counts the RAM cache tier too
    chat_template: str | None = None  # --chat-template NAME|FILE, over the GGUF's own
    n_gpu_layers: int | None = None  # None: all when the build can offload, else 0
    parallel: int | None = None  # sequences (turns at once); None: the engine's default


@dataclass(frozen=True)
class LoadedEngine:
    """What a factory made: the engine, and the memory it was predicted to take
    (``status`` reports it; empty when the factory predicts nothing)."""

    engine: KVEngine
    memory_prediction: dict[str, int]


EngineFactory = Callable[[EngineSpec], LoadedEngine]
