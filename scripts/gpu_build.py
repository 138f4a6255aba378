"""Which llama.cpp backend scripts/setup builds, and whether the installed one is it.

    OPENCLAW_GPU=cuda|vulkan|metal|cpu   (unset: metal on macOS, cpu elsewhere)

    gpu_build.py cmake-args   print the CMAKE_ARGS for OPENCLAW_GPU (exit 2 on a bad value)
    gpu_build.py check        exit 0 if the installed llama_cpp is that backend, 3 if not

scripts/llama_build.py keys its wheel cache by CMAKE_ARGS, so another backend
builds (or reinstalls) its own wheel; the setup then asks ``check`` to confirm
the build is the backend asked, and stops with advice on 3. The installed
backend is read from the libraries llama-cpp-python ships (``lib/libggml-cuda.so``
and so on, one per ggml backend), so nothing of llama_cpp is imported.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

BACKENDS = ("cpu", "cuda", "vulkan", "metal")
# llama.cpp's CMake switches (docs/build.md). Metal is on by default on macOS,
# so "cpu" there has to turn it off.
_FLAGS = {"cuda": "-DGGML_CUDA=on", "vulkan": "-DGGML_VULKAN=on", "metal": "-DGGML_METAL=on"}
WRONG_BACKEND = 3


def wanted(raw: str | None, platform: str = sys.platform) -> str:
    """The backend asked for; ValueError names the choices."""
    value = (raw or "").strip().lower() or ("metal" if platform == "darwin" else "cpu")
    if value not in BACKENDS:
        raise ValueError(f"OPENCLAW_GPU must be one of {', '.join(BACKENDS)}, got {raw!r}")
    if value == "metal" and platform != "darwin":
        raise ValueError("OPENCLAW_GPU=metal needs macOS; use cuda or vulkan here")
    return value


def cmake_args(backend: str, platform: str = sys.platform) -> str:
    if backend == "cpu":
        return "-DGGML_METAL=off" if platform == "darwin" else ""
    return _FLAGS[backend]


def installed_backend(lib_dir: Path) -> str:
    """The GPU backend whose library is in ``lib_dir``, else cpu."""
    names = {path.name.split(".")[0] for path in lib_dir.glob("libggml-*")}
    found = [b for b in ("cuda", "vulkan", "metal") if f"libggml-{b}" in names]
    return found[0] if found else "cpu"


def _lib_dir() -> Path:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise SystemExit("llama_cpp is not installed")
    return Path(spec.origin).parent / "lib"


def main(argv: list[str]) -> int:
    try:
        backend = wanted(os.environ.get("OPENCLAW_GPU"))
    except ValueError as exc:
        print(f"setup: {exc}", file=sys.stderr)
        return 2
    if argv[1:] == ["cmake-args"]:
        print(cmake_args(backend))
        return 0
    if argv[1:] == ["check"]:
        built = installed_backend(_lib_dir())
        if built != backend:
            print(f"setup: the installed llama.cpp is a {built} build, not {backend}")
            return WRONG_BACKEND
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
