"""Whether a model fits before it is loaded: peak memory predicted from the GGUF
header (refused when it will not fit) and a warning for a context above the
training length. ``openclaw daemon start`` runs these before it spawns the
daemon (no llama_cpp, no model load), and the daemon again when it loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

from openclaw_daemon import config
from openclaw_daemon.model import memory_budget
from openclaw_daemon.model.gguf import arch_value, read_metadata
from openclaw_daemon.wire.errors import ModelError, OpenClawError


def predict_memory(
    model_path: Path,
    n_ctx: int,
    ram_budget: int,
    *,
    freed: int = 0,
    n_gpu_layers: int = 0,
    check: bool = True,
) -> dict[str, int]:
    """Predict peak memory from the GGUF header; refuse what will not fit.

    ``freed`` is memory that will be returned first: a restart counts the
    running daemon's resident set as available, since it stops before the new
    one loads. ``check=False`` only predicts (the split once the engine says how
    many layers it offloaded).
    """
    import psutil

    config.check_gguf(model_path)
    try:
        prediction = memory_budget.predict(
            read_metadata(model_path),
            model_bytes=model_path.stat().st_size,
            n_ctx=n_ctx,
            ram_cache_budget=ram_budget,
            n_gpu_layers=n_gpu_layers,
        )
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"could not load {model_path}: its GGUF metadata has unexpected values ({exc})"
        ) from exc
    if not check:
        return prediction
    available = psutil.virtual_memory().available + freed
    memory_budget.check_fits(
        prediction, available, n_ctx=n_ctx, unified_memory=sys.platform == "darwin"
    )
    return prediction


def training_context(model_path: Path) -> int:
    """The context length the model was trained with (0 if its header does not say)."""
    try:
        return int(arch_value(read_metadata(model_path), "context_length", 0) or 0)
    except (TypeError, ValueError, OpenClawError):
        return 0


def n_ctx_warning(model_path: Path, n_ctx: int) -> str:
    """A warning when ``n_ctx`` exceeds the model's training context, else ''."""
    trained = training_context(model_path)
    if trained and n_ctx > trained:
        return (
            f"warning: n_ctx {n_ctx} is above the {trained} tokens {model_path.name} was "
            "trained with; replies past that length may degrade"
        )
    return ""
