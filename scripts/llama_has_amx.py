"""Exit 0 if the installed llama.cpp CPU backend contains Intel AMX kernels, 1 if not.

Used by scripts/setup: those kernels crash on VMs that advertise AMX without
enabling it, and a wheel from pip's cache may predate the build flags that
leave them out. Reads the shared library's bytes; imports nothing of llama_cpp.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

AMX_KERNEL_SYMBOL = b"ggml_backend_amx_mul_mat"


def cpu_backends() -> list[Path]:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return []
    return sorted((Path(spec.origin).parent / "lib").glob("libggml-cpu*.so*"))


def main() -> int:
    return 0 if any(AMX_KERNEL_SYMBOL in lib.read_bytes() for lib in cpu_backends()) else 1


if __name__ == "__main__":
    sys.exit(main())
