"""scripts/llama_build.py: the patch to llama.cpp, the wheel cache's key, the
check of the installed build. The real build and its effect (a draft's rows
equal single steps) are tests/e2e/test_llama_build.py and test_prompt_lookup.py."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import llama_build  # noqa: E402


def sdist(tmp_path: Path, body: str) -> Path:
    path = tmp_path / llama_build.SGEMM
    path.parent.mkdir(parents=True)
    path.write_text("bool llamafile_sgemm(...) {\n" + body + "    switch (Atype) {}\n}\n")
    return tmp_path


def test_the_patch_replaces_the_one_row_check_and_adds_the_marker(tmp_path: Path) -> None:
    root = sdist(tmp_path, llama_build.STOCK)
    llama_build.patch_source(root)
    text = (root / llama_build.SGEMM).read_text()
    assert "if (n < 2)" not in text
    assert f"if (n < {llama_build.MIN_ROWS})" in text
    assert llama_build.MARKER in text


def test_a_source_without_the_expected_lines_is_refused_unchanged(tmp_path: Path) -> None:
    root = sdist(tmp_path, "    if (n < 4)\n        return false;\n")
    before = (root / llama_build.SGEMM).read_text()
    with pytest.raises(SystemExit, match="no longer has the lines"):
        llama_build.patch_source(root)
    assert (root / llama_build.SGEMM).read_text() == before


def test_the_patch_covers_the_largest_draft_batch() -> None:
    from openclaw_daemon.model.prompt_lookup import MAX_DRAFT

    assert MAX_DRAFT + 1 < llama_build.MIN_ROWS  # the last accepted id and a draft


def test_the_key_follows_the_build_flags_but_not_their_spacing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CMAKE_ARGS", " ")
    monkeypatch.setenv("CFLAGS", " -mno-amx-tile")
    cpu = llama_build.build_key()
    monkeypatch.setenv("CFLAGS", "-mno-amx-tile  ")
    assert llama_build.build_key() == cpu
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_CUDA=on")
    assert llama_build.build_key() != cpu


def test_the_cache_is_where_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENCLAW_WHEEL_CACHE", str(tmp_path))
    assert llama_build.cache_dir() == tmp_path
    monkeypatch.delenv("OPENCLAW_WHEEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert llama_build.cache_dir() == tmp_path / "xdg" / "openclaw-edge" / "wheels"


def test_the_patch_threshold_is_the_engine_s_batch_minimum() -> None:
    from openclaw_daemon.model.base import BATCH_MIN_ROWS

    assert BATCH_MIN_ROWS == llama_build.MIN_ROWS


def fake_pip(calls: list[tuple[str, ...]]) -> Callable[..., None]:
    def pip(*args: str) -> None:
        calls.append(args)

    return pip


def test_install_does_nothing_when_the_venv_holds_this_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(llama_build, "pip", fake_pip(calls))
    monkeypatch.setattr(llama_build, "installed_is_patched", lambda: True)
    monkeypatch.setattr(llama_build, "key_file", lambda: tmp_path / "key")
    (tmp_path / "key").write_text(llama_build.build_key() + "\n")
    assert llama_build._install(rebuild=False) == 0
    assert calls == []


def test_install_takes_a_cached_wheel_else_builds_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[str, ...]] = []
    built: list[Path] = []
    monkeypatch.setattr(llama_build, "pip", fake_pip(calls))
    monkeypatch.setattr(llama_build, "installed_is_patched", lambda: bool(calls))
    monkeypatch.setattr(llama_build, "key_file", lambda: tmp_path / "key")
    monkeypatch.setenv("OPENCLAW_WHEEL_CACHE", str(tmp_path / "cache"))

    def build_wheel(into: Path) -> Path:
        into.mkdir(parents=True)
        wheel = into / "llama_cpp_python-0.3.36-py3-none-any.whl"
        wheel.write_text("built")
        built.append(wheel)
        return wheel

    monkeypatch.setattr(llama_build, "build_wheel", build_wheel)
    assert llama_build._install(rebuild=False) == 0  # nothing cached: built
    assert len(built) == 1 and calls[0][-1] == str(built[0])
    assert (tmp_path / "key").read_text().strip() == llama_build.build_key()
    (tmp_path / "key").unlink()  # another venv, the same machine and flags
    calls.clear()
    assert llama_build._install(rebuild=False) == 0
    assert len(built) == 1 and calls[0][-1] == str(built[0])  # from the cache
