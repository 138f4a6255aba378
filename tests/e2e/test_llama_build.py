"""The llama.cpp build scripts/setup installs: without the Intel AMX kernels, and
with our one patch (scripts/llama_build.py).

They crash on VMs that advertise AMX without enabling it (a general protection
fault at ``ldtilecfg`` on the first matrix multiply, seen on this project's
2-core KVM machines), so setup builds without them and rebuilds a cached wheel
that has them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent.parent / "scripts" / "llama_has_amx.py"


def test_installed_cpu_backend_has_no_amx_kernels() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import llama_has_amx
    finally:
        sys.path.remove(str(SCRIPT.parent))
    libs = llama_has_amx.cpu_backends()
    assert libs, "no libggml-cpu found in the installed llama_cpp"
    assert all(llama_has_amx.AMX_KERNEL_SYMBOL not in lib.read_bytes() for lib in libs)
    checked = subprocess.run([sys.executable, str(SCRIPT)], check=False)
    assert checked.returncode == 0  # setup's check agrees: nothing to rebuild


LLAMA_BUILD = SCRIPT.parent / "llama_build.py"


def test_installed_build_carries_our_llama_cpp_patch() -> None:
    """scripts/setup installs llama-cpp-python patched (scripts/llama_build.py):
    the marker is in the CPU backend, and the venv records the build's key."""
    checked = subprocess.run([sys.executable, str(LLAMA_BUILD), "check"], check=False)
    assert checked.returncode == 0
    recorded = Path(sys.prefix) / "openclaw-llama-build"
    assert len(recorded.read_text().strip()) == 16


def test_saved_kv_names_the_patch_the_build_carries() -> None:
    """A blob saved by a stock build holds rows computed by other kernels: the
    fingerprint (and so the cache directory) names the patch, read from the
    loaded library itself."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import llama_build
    finally:
        sys.path.remove(str(SCRIPT.parent))
    from openclaw_daemon.config import embedded_model_path
    from openclaw_daemon.model.llama_engine import Engine

    engine = Engine(embedded_model_path(), n_ctx=512)
    assert engine.fingerprint()["llamaPatch"] == llama_build.MARKER
