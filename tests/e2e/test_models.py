"""End to end: ``openclaw models`` on the real GGUF files (SmolLM2, Gemma 3 270M),
a turn on a model chosen by name, and the stable model id in the transcript,
``--json`` and ``daemon status``; the daemon on CPU with ``--n-gpu-layers 0``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.conftest import Cli, transcript

SMOL_ID = "smollm2-135m-instruct-q4_1"
GEMMA_ID = "gemma-3-270m-q4_k_m"


def _json(cli: Cli, *args: str, check: bool = True) -> Any:
    proc = cli.run(*args, "--json", check=check)
    return json.loads(proc.stdout)


def test_models_list_show_add_remove(cli: Cli, gemma_gguf: Path) -> None:
    listed = _json(cli, "models", "list")["models"]
    assert [(m["name"], m["id"], m["source"], m["default"]) for m in listed] == [
        (SMOL_ID, SMOL_ID, "embedded", True)
    ]
    assert listed[0]["sizeBytes"] == Path(listed[0]["path"]).stat().st_size

    smol = _json(cli, "models", "show", SMOL_ID)
    assert (smol["architecture"], smol["contextTrained"], smol["chatTemplate"]) == (
        "llama",
        8192,
        "embedded",
    )
    assert smol["slidingWindow"] is None
    assert (smol["templateFamily"], smol["templateSource"], smol["toolFormat"]) == (
        "chatml",
        "embedded",
        "hermes",
    )
    assert smol["kvBytesPerToken"] == 30 * 3 * 128 * 2  # layers x kv heads x (k+v) x f16
    assert smol["memoryPredicted"]["kvCache"] == 8192 * smol["kvBytesPerToken"]

    added = _json(cli, "models", "add", str(gemma_gguf), "--name", "g3")["added"]
    assert added == {"name": "g3", "path": str(gemma_gguf.resolve()), "id": GEMMA_ID}
    gemma = _json(cli, "models", "show", "g3", "--n-ctx", "4096")
    assert gemma["id"] == GEMMA_ID and gemma["architecture"] == "gemma3"
    assert gemma["chatTemplate"] == "none" and gemma["contextTrained"] == 32768
    window = gemma["slidingWindow"]
    assert (window["window"], window["slidingLayers"], window["globalLayers"]) == (512, 15, 3)
    assert gemma["kvBytesPerToken"] == 18 * 1024
    assert gemma["kvBytesAtContext"] == 4096 * 18 * 1024
    assert gemma["kvBytesAtContextWindowCache"] == 3 * 4096 * 1024 + 15 * 1024 * 1024
    text = cli.run("models", "show", str(gemma_gguf)).stdout
    assert "sliding window     512 tokens on 15 of 18 layers (SSSSSG" in text
    # No template in the GGUF: the daemon's builtin by architecture, and its format.
    assert (gemma["templateFamily"], gemma["toolFormat"]) == ("gemma", "gemma")
    assert "chat template      gemma (builtin:gemma (no template in the GGUF))" in text
    assert "tool format        gemma" in text
    forced = _json(cli, "models", "show", "g3", "--chat-template", "chatml")
    assert (forced["templateSource"], forced["toolFormat"]) == ("override:chatml", "hermes")

    registry = cli.state_dir / "models.json"
    before = registry.read_bytes()
    for args, message in (
        (("add", str(gemma_gguf), "--name", "g3"), "a model named 'g3' is already registered"),
        (("add", str(gemma_gguf), "--name", "other"), "already registered as 'g3'"),
        (("add", str(cli.state_dir / "missing.gguf")), "model file not found"),
        (("add", str(registry)), "not a GGUF model file"),
        (("add", str(gemma_gguf), "--name", "No Spaces"), "invalid model name"),
        (("remove", "nope"), "unknown model 'nope'"),
        (("show", "nope"), "unknown model 'nope'"),
        (("show", "g3", "--chat-template", "nope"), "neither a builtin template nor a readable"),
    ):
        proc = cli.run("models", *args, check=False)
        assert proc.returncode != 0 and message in proc.stderr, (args, proc.stderr)
        assert registry.read_bytes() == before, args
    failure = _json(cli, "models", "remove", "nope", check=False)
    assert failure["ok"] is False and failure["error"]["type"] == "model"

    names = [(m["name"], m["id"]) for m in _json(cli, "models", "list")["models"]]
    assert names == [(SMOL_ID, SMOL_ID), ("g3", GEMMA_ID)]
    assert _json(cli, "models", "remove", "g3")["removed"]["name"] == "g3"
    assert [m["name"] for m in _json(cli, "models", "list")["models"]] == [SMOL_ID]
    usage = cli.run("models", "add", "-h").stdout
    assert "Usage: openclaw models add" in usage and "--name" in usage


def test_a_turn_on_a_model_chosen_by_name_records_its_stable_id(cli: Cli) -> None:
    smol = _json(cli, "models", "show", SMOL_ID)
    cli.run("models", "add", smol["path"], "--name", "smol")
    cli.run("daemon", "start", "--model", "smol", "--n-gpu-layers", "0", timeout=300)
    status = cli.status()
    assert status["model"] == SMOL_ID and status["modelPath"] == smol["path"]
    assert status["modelName"] == smol["displayName"]
    assert status["offload"] == {"backend": "cpu", "layersOffloaded": 0, "layersTotal": 31}
    assert status["memoryPredicted"]["device"] == 0
    assert "cpu (0 of 31 layers on a GPU)" in cli.run("daemon", "status").stdout

    envelope = cli.turn("Say hi.", "--model", "smol", "--max-tokens", "8")
    assert envelope["payloads"][0]["text"].strip()
    assert envelope["meta"]["agentMeta"]["model"] == SMOL_ID
    entries = transcript(envelope["meta"]["agentMeta"]["sessionFile"])
    replies = [e["message"] for e in entries if e.get("message", {}).get("role") == "assistant"]
    assert [m["model"] for m in replies] == [SMOL_ID]
    sessions = _json(cli, "sessions", "list")
    assert SMOL_ID in json.dumps(sessions)

    # the id is also how the default model is named; an unknown one is refused up front
    proc = cli.run("agent", "--local", "-m", "hi", "--model", "nope", check=False)
    assert proc.returncode != 0 and "unknown model 'nope'" in proc.stderr


def test_a_turn_on_registered_gemma_by_name(cli: Cli, gemma_gguf: Path) -> None:
    cli.run("models", "add", str(gemma_gguf))  # named by its id
    envelope = cli.turn(
        "Say hi.", "--model", GEMMA_ID, "--max-tokens", "8", "--tool-choice", "none", timeout=300
    )
    assert envelope["meta"]["agentMeta"]["model"] == GEMMA_ID
    entries = transcript(envelope["meta"]["agentMeta"]["sessionFile"])
    replies = [e["message"] for e in entries if e.get("message", {}).get("role") == "assistant"]
    assert [m["model"] for m in replies] == [GEMMA_ID]
    assert cli.status()["model"] == GEMMA_ID


def test_a_file_named_model_gguf_gets_the_same_id_from_header_and_engine(
    cli: Cli, tmp_path: Path
) -> None:
    smol = _json(cli, "models", "show", SMOL_ID)
    plain = tmp_path / "model.gguf"  # says nothing: general.name + quantization stand in
    os.link(smol["path"], plain)
    expected = "smollm2-135m-8k-lc100k-mix1-ep2-q4_1"
    assert _json(cli, "models", "show", str(plain))["id"] == expected
    envelope = cli.turn("Say hi.", "--model", str(plain), "--max-tokens", "4", timeout=300)
    assert envelope["meta"]["agentMeta"]["model"] == expected
    assert cli.status()["model"] == expected
