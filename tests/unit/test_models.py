"""Model ids, the model registry, name resolution, the GGUF facts of
``openclaw models`` (sliding window, KV bytes, offload split) and the GPU build
mapping of scripts/setup. Pure functions and temp files: no model is loaded."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from openclaw_daemon import config, model_names
from openclaw_daemon.model import catalog, memory_budget
from openclaw_daemon.model.base import ModelInfo
from openclaw_daemon.wire.errors import BadRequestError, ModelError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import gpu_build  # noqa: E402

# Gemma 3 270M's header, as read from the GGUF (tokenizer keys left out).
GEMMA3 = {
    "general.architecture": "gemma3",
    "general.name": "Gemma 3 270m",
    "general.file_type": 15,
    "gemma3.block_count": 18,
    "gemma3.context_length": 32768,
    "gemma3.embedding_length": 640,
    "gemma3.attention.head_count": 4,
    "gemma3.attention.head_count_kv": 1,
    "gemma3.attention.key_length": 256,
    "gemma3.attention.value_length": 256,
    "gemma3.attention.sliding_window": 512,
}
SMOLLM2 = {
    "general.architecture": "llama",
    "general.file_type": 3,
    "llama.block_count": 30,
    "llama.embedding_length": 576,
    "llama.attention.head_count": 9,
    "llama.attention.head_count_kv": 3,
}


def test_model_ids_are_lower_case_file_stems_with_the_quantization() -> None:
    assert model_names.model_id("SmolLM2-135M-Instruct.Q4_1.gguf") == "smollm2-135m-instruct-q4_1"
    assert model_names.model_id("gemma-3-270m-q4_k_m.gguf", quantization="q4_k_m") == (
        "gemma-3-270m-q4_k_m"
    )  # already named: not appended twice
    assert model_names.model_id("Qwen2.5 0.5B Instruct.gguf", quantization="q8_0") == (
        "qwen2-5-0-5b-instruct-q8_0"
    )
    # a stem that says nothing: the GGUF's general.name stands in
    assert model_names.model_id("model.gguf", general_name="Llama 3.2 1B", quantization="f16") == (
        "llama-3-2-1b-f16"
    )
    assert model_names.model_id(config.EMBEDDED_MODEL_FILE) == model_names.EMBEDDED_MODEL_NAME
    assert catalog.model_id(Path("/x/gemma.gguf"), GEMMA3) == "gemma-q4_k_m"
    # llama-cpp-python's Llama.metadata holds strings: the engine must get the same id
    as_strings = {k: str(v) for k, v in GEMMA3.items()}
    assert catalog.model_id(Path("/x/gemma.gguf"), as_strings) == "gemma-q4_k_m"


def test_model_info_derives_its_id_from_the_file_and_keeps_the_display_name() -> None:
    info = ModelInfo(
        path="/m/SmolLM2-135M-Instruct.Q4_1.gguf",
        name="Smollm2 135M 8k Lc100K Mix1 Ep2",
        n_ctx=8192,
        n_ctx_train=8192,
        n_params=1,
        size_bytes=1,
        gpu_offload=False,
        chat_template=None,
        n_vocab=10,
        bos_id=1,
    )
    assert info.model_id == "smollm2-135m-instruct-q4_1"
    assert info.name.startswith("Smollm2 135M") and info.gpu_backend == "cpu"


def _gguf(path: Path) -> Path:
    path.write_bytes(b"GGUF" + b"\0" * 60)
    return path


def test_registry_adds_lists_removes_and_refuses_bad_input_without_writing(tmp_path: Path) -> None:
    registry = tmp_path / "models.json"
    first = model_names.Entry("gemma", str(_gguf(tmp_path / "g.gguf")), "g-q4_k_m")
    model_names.add(registry, first)
    assert model_names.load(registry) == [first]
    assert json.loads(registry.read_text())["version"] == 1
    before = registry.read_bytes()
    refusals: list[tuple[model_names.Entry, str]] = [
        (first._replace(path=str(tmp_path / "other.gguf")), "already registered"),
        (first._replace(name="again"), "already registered as 'gemma'"),
        (first._replace(name="Bad Name"), "invalid model name"),
        (first._replace(name="x.gguf"), "invalid model name"),
        (first._replace(name=model_names.EMBEDDED_MODEL_NAME), "embedded"),
    ]
    for entry, message in refusals:
        with pytest.raises(BadRequestError, match=message):
            model_names.add(registry, entry)
        assert registry.read_bytes() == before
    with pytest.raises(ModelError, match="unknown model 'nope'.*known: smollm2"):
        model_names.remove(registry, "nope")
    with pytest.raises(BadRequestError, match="cannot be removed"):
        model_names.remove(registry, model_names.EMBEDDED_MODEL_NAME)
    assert registry.read_bytes() == before
    assert model_names.remove(registry, "gemma") == first
    assert model_names.load(registry) == []
    assert not list(tmp_path.glob(".models.json.*"))  # no temp file left behind


def test_a_corrupt_registry_is_a_clear_error(tmp_path: Path) -> None:
    registry = tmp_path / "models.json"
    registry.write_text("{not json")
    with pytest.raises(ModelError, match="cannot read the model registry"):
        model_names.load(registry)
    registry.write_text('{"models": 3}')
    with pytest.raises(ModelError, match="no 'models' list"):
        model_names.load(registry)


def test_an_id_two_registered_files_share_is_refused_with_their_names(tmp_path: Path) -> None:
    registry = tmp_path / "models.json"
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        path = _gguf(tmp_path / name / "m.Q8_0.gguf")
        model_names.add(registry, model_names.Entry(name, str(path), "m-q8_0"))
    with pytest.raises(ModelError, match="2 registered models have the id 'm-q8_0': a, b"):
        model_names.resolve("m-q8_0", registry_file=registry)
    assert model_names.resolve("b", registry_file=registry) == tmp_path / "b" / "m.Q8_0.gguf"


def test_model_resolves_by_path_name_or_id_in_one_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = _gguf(tmp_path / "Some-Model.Q8_0.gguf")
    model_names.add(config.resolve_paths().models_file, model_names.Entry("mine", str(file), "id1"))
    assert config.resolve_model_path("mine") == file
    assert config.resolve_model_path("id1") == file
    assert config.resolve_model_path(str(file)) == file
    monkeypatch.chdir(tmp_path)
    assert config.resolve_model_path("Some-Model.Q8_0.gguf") == file  # a relative path
    with pytest.raises(ModelError, match="unknown model 'other'"):
        config.resolve_model_path("other")
    monkeypatch.setenv(config.ENV_MODEL, "mine")
    assert config.resolve_model_path() == file
    # the daemon gets the file, not a name it would resolve from its own cwd
    assert config.daemon_environment(config.resolve_paths())[config.ENV_MODEL] == str(file)


def test_n_gpu_layers_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.n_gpu_layers_setting() is None  # the engine decides
    assert config.n_gpu_layers_setting(0) == 0
    for raw, value in (("all", -1), ("-1", -1), ("12", 12)):
        monkeypatch.setenv(config.ENV_N_GPU_LAYERS, raw)
        assert config.n_gpu_layers_setting() == value
    monkeypatch.setenv(config.ENV_N_GPU_LAYERS, "many")
    with pytest.raises(BadRequestError, match="OPENCLAW_N_GPU_LAYERS must be an integer"):
        config.check_environment()
    with pytest.raises(BadRequestError, match="at least -1"):
        monkeypatch.setenv(config.ENV_N_GPU_LAYERS, "-2")
        config.n_gpu_layers_setting()


def test_gemma3_sliding_window_pattern_and_kv_bytes() -> None:
    swa = catalog.sliding_window(GEMMA3)
    assert swa is not None
    assert (swa["window"], swa["slidingLayers"], swa["globalLayers"]) == (512, 15, 3)
    assert swa["layerPattern"] == "SSSSSG" * 3
    assert swa["patternSource"] == "llama.cpp default for gemma3"
    assert catalog.sliding_window(SMOLLM2) is None
    # one KV head x (256 + 256) dims x 2 bytes = 1024 bytes per layer per token
    assert memory_budget.kv_bytes_per_token(GEMMA3) == 18 * 1024
    full = memory_budget.kv_bytes(GEMMA3, 8192, swa_layers=swa["_swa"])
    window = memory_budget.kv_bytes(GEMMA3, 8192, swa_layers=swa["_swa"], swa_full=False)
    assert full == 8192 * 18 * 1024  # the daemon's cache: every layer holds n_ctx
    # window layers hold 512 + a 512-token ubatch, the 3 global ones n_ctx
    assert window == 3 * 8192 * 1024 + 15 * 1024 * 1024
    # a context inside the window: both caches are the same size
    assert memory_budget.kv_bytes(GEMMA3, 512, swa_layers=swa["_swa"], swa_full=False) == (
        512 * 18 * 1024
    )


def test_sliding_window_pattern_from_the_gguf_wins() -> None:
    metadata = {**GEMMA3, "gemma3.block_count": 4}
    metadata["gemma3.attention.sliding_window_pattern"] = [True, False, True, False]
    swa = catalog.sliding_window(metadata)
    assert swa is not None and swa["layerPattern"] == "SGSG" and swa["patternSource"] == "gguf"
    unknown = {**metadata, "general.architecture": "newarch"}
    unknown = {k.replace("gemma3.", "newarch."): v for k, v in unknown.items()}
    del unknown["newarch.attention.sliding_window_pattern"]
    swa = catalog.sliding_window(unknown)
    assert swa is not None and swa["layerPattern"] == "SSSS"
    assert "every layer assumed" in swa["patternSource"]


def test_per_layer_kv_heads_are_summed_not_maxed() -> None:
    metadata: dict[str, Any] = {**SMOLLM2, "llama.block_count": 3}
    metadata["llama.attention.head_count_kv"] = [3, 1, 0]
    assert memory_budget.layer_kv_bytes_per_token(metadata) == [3 * 128 * 2, 128 * 2, 0]


def test_offloaded_layers_move_their_share_to_device_memory() -> None:
    cpu = memory_budget.predict(SMOLLM2, model_bytes=31_000, n_ctx=1024, ram_cache_budget=0)
    assert cpu["device"] == 0 and cpu["host"] == cpu["peak"]
    half = memory_budget.predict(
        SMOLLM2, model_bytes=31_000, n_ctx=1024, ram_cache_budget=0, n_gpu_layers=15
    )
    # 15 of 31 "layers" (30 repeating + output) of the weights, 15 of 30 of the KV
    assert half["device"] == 31_000 * 15 // 31 + cpu["kvCache"] // 2
    assert half["host"] + half["device"] == half["peak"] == cpu["peak"]
    every = memory_budget.predict(
        SMOLLM2, model_bytes=31_000, n_ctx=1024, ram_cache_budget=0, n_gpu_layers=-1
    )
    assert every["device"] == 31_000 + cpu["kvCache"]
    more = memory_budget.predict(
        SMOLLM2, model_bytes=31_000, n_ctx=1024, ram_cache_budget=0, n_gpu_layers=99
    )
    assert more["device"] == every["device"]  # no more layers than the model has
    # a discrete GPU's memory is not RAM: only the host part must fit
    memory_budget.check_fits(every, every["host"], n_ctx=1024, unified_memory=False)
    with pytest.raises(Exception, match="needs about"):
        memory_budget.check_fits(every, every["host"], n_ctx=1024, unified_memory=True)


def test_setup_maps_openclaw_gpu_to_cmake_args(tmp_path: Path) -> None:
    assert gpu_build.wanted(None, "linux") == "cpu"
    assert gpu_build.wanted("", "darwin") == "metal"  # llama.cpp's default there
    assert gpu_build.cmake_args(gpu_build.wanted("CUDA", "linux"), "linux") == "-DGGML_CUDA=on"
    assert gpu_build.cmake_args("vulkan", "linux") == "-DGGML_VULKAN=on"
    assert gpu_build.cmake_args("metal", "darwin") == "-DGGML_METAL=on"
    assert gpu_build.cmake_args("cpu", "darwin") == "-DGGML_METAL=off"
    assert gpu_build.cmake_args("cpu", "linux") == ""
    with pytest.raises(ValueError, match="one of cpu, cuda, vulkan, metal"):
        gpu_build.wanted("rocm", "linux")
    with pytest.raises(ValueError, match="needs macOS"):
        gpu_build.wanted("metal", "linux")
    for name in ("libggml-base.so", "libggml-cpu.so.0"):
        (tmp_path / name).write_bytes(b"")
    assert gpu_build.installed_backend(tmp_path) == "cpu"
    (tmp_path / "libggml-cuda.so.0.25.3").write_bytes(b"")
    assert gpu_build.installed_backend(tmp_path) == "cuda"
