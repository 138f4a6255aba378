"""Exit 3 if the installed llama.cpp CPU backend contains Intel AMX kernels, 0 if not.

Used by scripts/setup: those kernels crash on VMs that advertise AMX without
enabling it, and a wheel from pip's cache may predate the build flags that
leave them out. Any other exit (a crash of this check) is an error, not "no
AMX". It looks for the kernel's symbol name in the library's bytes: ggml
exports its symbols, so a stripped library still holds it. Imports nothing of
llama_cpp.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

AMX_KERNEL_SYMBOL = b"ggml_backend_amx_mul_mat"
HAS_AMX = 3


def cpu_backends() -> list[Path]:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise SystemExit("llama_cpp is not installed")
    libs = sorted((Path(spec.origin).parent / "lib").glob("libggml-cpu*"))
    if not libs:
        raise SystemExit(f"no libggml-cpu library next to {spec.origin}")
    return libs


def main() -> int:
    return HAS_AMX if any(AMX_KERNEL_SYMBOL in lib.read_bytes() for lib in cpu_backends()) else 0


if __name__ == "__main__":
    sys.exit(main())
