"""Predict the daemon's memory from GGUF metadata, before loading anything.

peak = runtime + weights + KV cache (n_ctx x layers x kv heads x head dims x
f16) + compute buffers + the L2 RAM budget. The compute estimate is fitted to
llama.cpp's own report on CPU (SmolLM2-135M: 99 MiB at n_ctx 2048, 166 MiB at
8192, n_batch 512); ``daemon status`` shows it beside the observed RSS so the
fit stays honest. ``check_fits`` refuses a configuration whose peak exceeds
the memory available now.
"""

from __future__ import annotations

from typing import Any

from openclaw_daemon.model.gguf import arch_value
from openclaw_daemon.wire.errors import ResourceError

MIB = 1 << 20
# Python, the llama.cpp runtime, tapes, the index, threads. Calibrated: the
# bench's daemon peaked at 1531 MiB with a 1 GiB cache budget.
RUNTIME_BYTES = 96 * MIB
N_BATCH = 512
_KV_BYTES_PER_ELEMENT = 2  # f16


def _per_layer_max(value: Any, default: int) -> int:
    if isinstance(value, list):
        return max((int(v) for v in value), default=default)
    return int(value) if value is not None else default


def kv_bytes_per_token(metadata: dict[str, Any]) -> int:
    layers = int(arch_value(metadata, "block_count", 0))
    embd = int(arch_value(metadata, "embedding_length", 0))
    heads = _per_layer_max(arch_value(metadata, "attention.head_count"), 1) or 1
    kv_heads = _per_layer_max(arch_value(metadata, "attention.head_count_kv"), heads)
    key_len = int(arch_value(metadata, "attention.key_length", embd // heads))
    value_len = int(arch_value(metadata, "attention.value_length", embd // heads))
    return layers * kv_heads * (key_len + value_len) * _KV_BYTES_PER_ELEMENT


def predict(
    metadata: dict[str, Any], *, model_bytes: int, n_ctx: int, ram_cache_budget: int
) -> dict[str, int]:
    """Predicted bytes by component, and their sum as ``peak``."""
    vocab = (
        int(arch_value(metadata, "vocab_size", 0))
        or len(metadata.get("tokenizer.ggml.tokens") or [])
        or 50_000
    )
    kv = n_ctx * kv_bytes_per_token(metadata)
    # Logits for a batch (~0.75 of n_vocab x n_batch floats in practice) plus
    # attention work that grows with the context.
    compute = int(0.75 * 4 * N_BATCH * vocab + 22.5 * N_BATCH * n_ctx)
    parts = {
        "runtime": RUNTIME_BYTES,
        "weights": model_bytes,
        "kvCache": kv,
        "compute": compute,
        "ramCache": ram_cache_budget,
    }
    return {**parts, "peak": sum(parts.values())}


def check_fits(prediction: dict[str, int], available: int, *, n_ctx: int) -> None:
    if prediction["peak"] <= available:
        return
    gib = 1 << 30
    raise ResourceError(
        f"this configuration needs about {prediction['peak'] / gib:.1f} GiB "
        f"(weights {prediction['weights'] / gib:.2f}, KV cache for n_ctx {n_ctx} "
        f"{prediction['kvCache'] / gib:.2f}, compute {prediction['compute'] / gib:.2f}, "
        f"RAM cache budget {prediction['ramCache'] / gib:.2f}) but only "
        f"{available / gib:.1f} GiB is available",
        hint="Lower --n-ctx or --cache-ram (OPENCLAW_N_CTX, OPENCLAW_CACHE_RAM), "
        "or pick a smaller model.",
    )
