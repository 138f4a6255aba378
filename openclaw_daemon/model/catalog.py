"""What a GGUF file is, from its header alone: ``model_facts(path)`` for
``openclaw models show`` (and ``list``), with no model load and no llama_cpp.

The facts are one flat dict with camelCase keys, so a new fact is one more key
here and a row in the view. The chat template is chosen as the daemon would
choose it (``builtin_templates.choose_template``, imported when asked: it
brings jinja2); the tool-call format is the tools layer's, so the caller
passes its chooser in (``tool_format``).
The stable id rule is ``model_names.model_id``; the quantization it may need
comes from ``general.file_type`` (llama.cpp's ``llama_ftype``), read here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from openclaw_daemon import config, model_names
from openclaw_daemon.model import memory_budget
from openclaw_daemon.model.gguf import arch_value, header
from openclaw_daemon.wire.errors import ModelError

# llama.cpp's llama_ftype values (include/llama.h), as the file names spell them.
FILE_TYPES = {
    0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1",
    10: "q2_k", 11: "q3_k_s", 12: "q3_k_m", 13: "q3_k_l", 14: "q4_k_s", 15: "q4_k_m",
    16: "q5_k_s", 17: "q5_k_m", 18: "q6_k", 19: "iq2_xxs", 20: "iq2_xs", 21: "q2_k_s",
    22: "iq3_xs", 23: "iq3_xxs", 24: "iq1_s", 25: "iq4_nl", 26: "iq3_s", 27: "iq3_m",
    28: "iq2_s", 29: "iq2_m", 30: "iq4_xs", 31: "iq1_m", 32: "bf16", 36: "tq1_0", 37: "tq2_0",
}  # fmt: skip
# Where the GGUF has no ``<arch>.attention.sliding_window_pattern``, llama.cpp
# hard-codes the period (src/llama-model.cpp, ``hparams.set_swa_pattern``): in
# each group of N layers the first N-1 slide and the last attends globally.
SWA_PERIOD_BY_ARCH = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "llama4": 4}


def quantization(metadata: dict[str, Any]) -> str:
    """``general.file_type`` as a file name spells it; an int from ``gguf``, a
    string from llama-cpp-python's ``Llama.metadata`` (both must give one id)."""
    file_type = str(metadata.get("general.file_type", ""))
    return FILE_TYPES.get(int(file_type), "") if file_type.isdigit() else ""


def model_id(path: Path, metadata: dict[str, Any]) -> str:
    return model_names.model_id(
        path.name,
        general_name=str(metadata.get("general.name") or ""),
        quantization=quantization(metadata),
    )


def sliding_window(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The window, which layers slide, and where that pattern came from; None
    for a model without sliding-window attention."""
    window = int(arch_value(metadata, "attention.sliding_window", 0) or 0)
    if window <= 0:
        return None
    layers = int(arch_value(metadata, "block_count", 0))
    pattern = arch_value(metadata, "attention.sliding_window_pattern")
    arch = str(metadata.get("general.architecture", ""))
    if isinstance(pattern, list) and len(pattern) == layers:
        swa = [bool(v) for v in pattern]
        source = "gguf"
    else:
        period = int(pattern) if isinstance(pattern, int) else SWA_PERIOD_BY_ARCH.get(arch, 0)
        source = "gguf" if isinstance(pattern, int) else f"llama.cpp default for {arch}"
        # Period 0 (an architecture not in the table): assume every layer slides.
        swa = [period == 0 or index % period < period - 1 for index in range(layers)]
        if period == 0:
            source = f"not in the GGUF, none known for {arch}: every layer assumed"
    return {
        "window": window,
        "slidingLayers": sum(swa),
        "globalLayers": layers - sum(swa),
        "layerPattern": "".join("S" if s else "G" for s in swa),
        "patternSource": source,
        "_swa": swa,
    }


def _kv_facts(metadata: dict[str, Any], n_ctx: int, swa: dict[str, Any] | None) -> dict[str, Any]:
    per_layer = memory_budget.layer_kv_bytes_per_token(metadata)
    swa_layers: list[bool] = swa["_swa"] if swa else [False] * len(per_layer)
    growing = sum(b for b, s in zip(per_layer, swa_layers, strict=True) if not s)
    return {
        # The daemon's cache: llama.cpp's full-size SWA cache, every layer n_ctx.
        "kvBytesPerToken": sum(per_layer),
        # With a window-sized SWA cache only the global layers grow per token.
        "kvBytesPerTokenGlobalLayers": growing,
        "kvBytesAtContext": memory_budget.kv_bytes(metadata, n_ctx, swa_layers=swa_layers),
        "kvBytesAtContextWindowCache": memory_budget.kv_bytes(
            metadata, n_ctx, swa_layers=swa_layers, swa_full=False
        ),
    }


def _template_facts(
    metadata: dict[str, Any],
    tokens: set[str],
    override: str | None,
    tool_format: Callable[[str], str] | None,
) -> dict[str, Any]:
    """The chat template the daemon would render with, and where it comes from."""
    from openclaw_daemon.model.builtin_templates import choose_template

    choice = choose_template(metadata, has_token=tokens.__contains__, override=override)
    facts = {"templateFamily": choice.family, "templateSource": choice.origin}
    if tool_format is not None:
        facts["toolFormat"] = tool_format(choice.source)
    return facts


def model_facts(
    path: Path,
    *,
    n_ctx: int | None = None,
    ram_budget: int | None = None,
    n_gpu_layers: int = 0,
    chat_template: str | None = None,
    tool_format: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Everything ``models show`` reports about ``path``, read from its header.
    ``tool_format`` names the tool-call format of a template source; without
    it, the facts have no ``toolFormat``."""
    from openclaw_daemon.model.builtin_templates import ASKED_TOKENS

    config.check_gguf(path)
    metadata, tokens = header(path, ASKED_TOKENS)
    n_ctx = n_ctx or config.n_ctx_setting()
    size = path.stat().st_size
    try:
        swa = sliding_window(metadata)
        template = metadata.get("tokenizer.chat_template")
        facts: dict[str, Any] = {
            "id": model_id(path, metadata),
            "displayName": str(metadata.get("general.name") or path.stem),
            "path": str(path),
            "sizeBytes": size,
            "architecture": str(metadata.get("general.architecture", "")),
            "quantization": quantization(metadata),
            "layers": int(arch_value(metadata, "block_count", 0)),
            "contextTrained": int(arch_value(metadata, "context_length", 0) or 0),
            "slidingWindow": {k: v for k, v in swa.items() if k != "_swa"} if swa else None,
            "chatTemplate": "embedded" if isinstance(template, str) and template else "none",
            **_template_facts(metadata, tokens, chat_template, tool_format),
            "nCtx": n_ctx,
            **_kv_facts(metadata, n_ctx, swa),
            "memoryPredicted": memory_budget.predict(
                metadata,
                model_bytes=size,
                n_ctx=n_ctx,
                ram_cache_budget=config.cache_ram_setting() if ram_budget is None else ram_budget,
                n_gpu_layers=n_gpu_layers,
            ),
        }
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"could not read {path}: its GGUF metadata has unexpected values ({exc})"
        ) from exc
    return facts
