"""Predict the daemon's memory from GGUF metadata, before loading anything.

peak = runtime + weights + KV cache (n_ctx x layers x kv heads x head dims x
f16) + compute buffers + the L2 RAM budget. A sliding-window model's window
layers hold n_ctx positions too: the daemon keeps llama.cpp's full-size SWA
cache (``swa_full``, its default), because a window-sized one cannot be trimmed
back past the window; ``kv_bytes(..., swa_full=False)`` gives the smaller cache
for comparison. With layers offloaded to a GPU, their share of the weights and
the KV cache is counted as ``device`` memory, the rest as ``host``.

The compute estimate is fitted to llama.cpp's own report on CPU (SmolLM2-135M:
99 MiB at n_ctx 2048, 166 MiB at 8192, n_batch 512); ``daemon status`` shows it
beside the observed RSS so the fit stays honest. ``check_fits`` refuses a
configuration whose peak exceeds the memory available now.
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


def _per_layer(value: Any, layers: int, default: int) -> list[int]:
    if isinstance(value, list) and len(value) == layers:
        return [int(v) for v in value]
    return [_per_layer_max(value, default)] * layers


def layer_kv_bytes_per_token(metadata: dict[str, Any]) -> list[int]:
    """KV bytes one position takes in each layer (f16 K and V)."""
    layers = int(arch_value(metadata, "block_count", 0))
    embd = int(arch_value(metadata, "embedding_length", 0))
    heads = _per_layer_max(arch_value(metadata, "attention.head_count"), 1) or 1
    kv_heads = _per_layer(arch_value(metadata, "attention.head_count_kv"), layers, heads)
    key_len = int(arch_value(metadata, "attention.key_length", embd // heads))
    value_len = int(arch_value(metadata, "attention.value_length", embd // heads))
    return [n * (key_len + value_len) * _KV_BYTES_PER_ELEMENT for n in kv_heads]


def kv_bytes_per_token(metadata: dict[str, Any]) -> int:
    """Every layer's bytes per position: what each token of n_ctx costs with a
    full-size cache (the daemon's, sliding-window models included)."""
    return sum(layer_kv_bytes_per_token(metadata))


# llama.cpp's window-sized SWA cache: the window plus one ubatch, padded to 256.
_N_UBATCH, _KV_PAD = 512, 256


def kv_bytes(
    metadata: dict[str, Any], n_ctx: int, *, swa_layers: list[bool], swa_full: bool = True
) -> int:
    """KV cache bytes at ``n_ctx``; ``swa_layers`` marks the sliding-window layers."""
    window = int(arch_value(metadata, "attention.sliding_window", 0) or 0)
    swa_size = min(n_ctx, -(-(window + _N_UBATCH) // _KV_PAD) * _KV_PAD)
    total = 0
    for index, per_token in enumerate(layer_kv_bytes_per_token(metadata)):
        windowed = window and not swa_full and index < len(swa_layers) and swa_layers[index]
        total += per_token * (swa_size if windowed else n_ctx)
    return total


def offload_split(
    metadata: dict[str, Any], *, n_gpu_layers: int, weights: int, kv: int
) -> dict[str, int]:
    """Device bytes for ``n_gpu_layers`` offloaded layers (llama.cpp counts the
    output layer as one more, after the repeating ones); -1 offloads them all."""
    layers = int(arch_value(metadata, "block_count", 0))
    if n_gpu_layers < 0:
        n_gpu_layers = layers + 1
    if n_gpu_layers == 0 or layers <= 0:
        return {"offloadedLayers": 0, "device": 0}
    offloaded = min(n_gpu_layers, layers + 1)
    device = weights * offloaded // (layers + 1) + kv * min(offloaded, layers) // layers
    return {"offloadedLayers": offloaded, "device": device}


def predict(
    metadata: dict[str, Any],
    *,
    model_bytes: int,
    n_ctx: int,
    ram_cache_budget: int,
    n_gpu_layers: int = 0,
) -> dict[str, int]:
    """Predicted bytes by component, their sum as ``peak``, and how ``peak`` splits
    into ``host`` and ``device`` (GPU) memory."""
    vocab = (
        int(arch_value(metadata, "vocab_size", 0))
        or len(metadata.get("tokenizer.ggml.tokens") or [])
        or 50_000
    )
    kv = n_ctx * kv_bytes_per_token(metadata)  # swa_full: every layer holds n_ctx
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
    peak = sum(parts.values())
    split = offload_split(metadata, n_gpu_layers=n_gpu_layers, weights=model_bytes, kv=kv)
    return {**parts, "peak": peak, "host": peak - split["device"], "device": split["device"]}


def check_fits(
    prediction: dict[str, int], available: int, *, n_ctx: int, unified_memory: bool = True
) -> None:
    """Refuse a peak above ``available`` RAM. Device memory counts as RAM when the
    GPU shares it (Apple silicon); a discrete GPU's is not checked here."""
    needed = prediction["peak"] if unified_memory else prediction.get("host", prediction["peak"])
    if needed <= available:
        return
    gib = 1 << 30
    raise ResourceError(
        f"this configuration needs about {needed / gib:.1f} GiB "
        f"(weights {prediction['weights'] / gib:.2f}, KV cache for n_ctx {n_ctx} "
        f"{prediction['kvCache'] / gib:.2f}, compute {prediction['compute'] / gib:.2f}, "
        f"RAM cache budget {prediction['ramCache'] / gib:.2f}) but only "
        f"{available / gib:.1f} GiB is available",
        hint="Lower --n-ctx or --cache-ram (OPENCLAW_N_CTX, OPENCLAW_CACHE_RAM), "
        "or pick a smaller model.",
    )
