"""Install llama-cpp-python built with OpenClaw edge's one patch to llama.cpp.

    llama_build.py install    install the patched build into this Python: from our
                              wheel cache, else built from the sdist (~6 min on 2 cores)
    llama_build.py check      exit 0 if the installed llama_cpp carries the patch, 3 if not

    OPENCLAW_LLAMA_REBUILD=1  build again even if a wheel is cached or installed
    OPENCLAW_LLAMA_VERBOSE=1  show pip's and the compiler's output

scripts/setup runs ``install`` with the build flags it exports (no AMX kernels,
the GPU backend); run alone, it builds with whatever CMAKE_ARGS/CFLAGS you export.

**The patch.** llama.cpp's CPU matrix multiply hands a product with two or more
columns to llamafile's tinyBLAS, and a single column to ggml's own dot product,
which adds in another order. So a prompt-lookup draft (a batch of a few rows)
and the same tokens decoded one at a time come out with different logits, and
greedy output can part at a near-tie. The patch sends batches of fewer than
``MIN_ROWS`` rows to ggml's dot product as well. Then a draft's rows equal
single steps exactly (measured 0.0 at 60 to 5600 positions against 0.5-0.94
without it), so drafts are lossless; batches of ``MIN_ROWS`` or more (prefill)
keep tinyBLAS. ollama carries its own patches to llama.cpp the same way.
``MIN_ROWS`` must exceed the largest draft batch (openclaw_daemon/model/
prompt_lookup.py: ``MAX_DRAFT`` + 1); the daemon probes the build at load
rather than trusting this file (``Engine.drafts_exact``).

**The cache.** pip's own wheel cache keys a wheel by version alone, so it
cannot tell a patched build from a stock one, nor a CUDA build from a CPU one.
Our wheels live in ``$OPENCLAW_WHEEL_CACHE`` (default
``~/.cache/openclaw-edge/wheels``), keyed by the version, the patch, the
platform, the CPU's features (the build is ``-march=native``) and the build
flags (CMAKE_ARGS, CFLAGS, CXXFLAGS) that scripts/setup exports. The key of the
installed build is kept in the venv, so a changed flag or backend installs (or
builds) the matching wheel. Standard library only:
it runs before anything else is installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "0.3.36"
MIN_ROWS = 10
MARKER = f"openclaw-edge-llama-patch: sgemm-min-rows={MIN_ROWS}"
NOT_PATCHED = 3
SGEMM = "vendor/llama.cpp/ggml/src/ggml-cpu/llamafile/sgemm.cpp"
STOCK = """    // only enable sgemm for prompt processing
#if !defined(__MMA__)
    if (n < 2)
        return false;
#endif
"""
PATCHED = f"""    // openclaw-edge: a batch of fewer than {MIN_ROWS} rows (a prompt-lookup draft,
    // a decode step shared by a few sequences) takes ggml's own dot products, as
    // a single token does, so each row comes out exactly as it would alone.
    if (n < {MIN_ROWS})
        return false;
"""
# A string the check finds in the library's bytes; `used` keeps it through -O3.
MARKER_DEFINITION = f"""
#if defined(__GNUC__)
extern "C" __attribute__((used, visibility("default")))
const char openclaw_edge_llama_patch[] = "{MARKER}";
#endif
"""
BUILD_FLAGS = ("CMAKE_ARGS", "CFLAGS", "CXXFLAGS")
BUILD_FAILED = 1


def cpu_features() -> str:
    """What -march=native compiles for: a wheel built for other features may not run."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return platform.processor()


def build_key() -> str:
    """What the wheel depends on: a different key is a different build."""
    parts = {
        "version": VERSION,
        "patch": PATCHED + MARKER_DEFINITION,
        "python": f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}",
        "platform": f"{sys.platform}-{platform.machine()}",
        "cpu": hashlib.sha256(cpu_features().encode()).hexdigest(),
        **{name: " ".join(os.environ.get(name, "").split()) for name in BUILD_FLAGS},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    root = os.environ.get("OPENCLAW_WHEEL_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "openclaw-edge" / "wheels"


def key_file() -> Path:
    """Where the venv remembers which build it holds (sys.prefix is the venv)."""
    return Path(sys.prefix) / "openclaw-llama-build"


def cached_wheels() -> list[Path]:
    """Every patched wheel in the cache, newest first (any key)."""
    found = cache_dir().glob(f"*/llama_cpp_python-{VERSION}-*.whl")
    return sorted(found, key=lambda path: path.stat().st_mtime, reverse=True)


def installed_is_patched() -> bool:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return False
    libs = (Path(spec.origin).parent / "lib").glob("libggml-cpu*")
    return any(MARKER.encode() in lib.read_bytes() for lib in libs)


def patch_source(root: Path) -> None:
    """Apply the patch to an unpacked sdist; fails loudly if llama.cpp moved on."""
    path = root / SGEMM
    text = path.read_text()
    if STOCK not in text:
        raise SystemExit(
            f"llama_build: {SGEMM} no longer has the lines the patch replaces; "
            f"is llama-cpp-python still {VERSION}?"
        )
    path.write_text(text.replace(STOCK, PATCHED) + MARKER_DEFINITION)


def pip(*args: str) -> None:
    quiet = [] if os.environ.get("OPENCLAW_LLAMA_VERBOSE") else ["-q"]
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", args[0], *quiet]
    subprocess.run([*command, *args[1:]], check=True)


def build_wheel(into: Path) -> Path:
    """Download the sdist, patch it and build its wheel into ``into``."""
    with tempfile.TemporaryDirectory(prefix="openclaw-llama-") as tmp:
        work = Path(tmp)
        # The source of this package only: its build tools may come as wheels.
        package = f"llama-cpp-python=={VERSION}"
        pip("download", "--no-deps", "--no-binary", "llama-cpp-python", package, "-d", tmp)
        (sdist,) = work.glob("llama_cpp_python-*.tar.gz")
        with tarfile.open(sdist) as archive:
            if hasattr(tarfile, "data_filter"):  # 3.12, and 3.10.12 / 3.11.4 on
                archive.extractall(work, filter="data")
            else:
                archive.extractall(work)
        source = work / f"llama_cpp_python-{VERSION}"
        patch_source(source)
        built = work / "wheel"
        # --no-cache-dir: pip would file it under the stock version's name otherwise.
        pip("wheel", "--no-deps", "--no-cache-dir", str(source), "-w", str(built))
        (wheel,) = built.glob("llama_cpp_python-*.whl")
        into.mkdir(parents=True, exist_ok=True)
        # Copied under another name, then renamed: an interrupted copy (from /tmp
        # to another file system) must not leave a wheel the next run would take.
        partial = into / (wheel.name + ".part")
        shutil.copyfile(wheel, partial)
        target = into / wheel.name
        os.replace(partial, target)
        return target


def install() -> int:
    try:
        return _install(rebuild=bool(os.environ.get("OPENCLAW_LLAMA_REBUILD")))
    except subprocess.CalledProcessError as exc:
        print(
            f"llama_build: `pip {exc.cmd[4]} ...` failed (exit {exc.returncode}). Building\n"
            "  llama-cpp-python needs a C/C++ compiler, the package index (for the sdist and\n"
            "  its build tools) and, for OPENCLAW_GPU=cuda|vulkan, the GPU toolkit. The whole\n"
            "  build log: OPENCLAW_LLAMA_VERBOSE=1 OPENCLAW_LLAMA_REBUILD=1 scripts/setup",
            file=sys.stderr,
        )
        return BUILD_FAILED


def _install(*, rebuild: bool) -> int:
    key = build_key()
    recorded = key_file().read_text().strip() if key_file().exists() else None
    if not rebuild and installed_is_patched() and recorded == key:
        return 0
    folder = cache_dir() / key
    wheels = sorted(folder.glob("llama_cpp_python-*.whl")) if folder.is_dir() else []
    if wheels and not rebuild:
        print(f"==> installing the patched llama-cpp-python {VERSION} from {folder}")
        wheel = wheels[0]
    else:
        print(
            f"==> building llama-cpp-python {VERSION} with OpenClaw edge's llama.cpp patch "
            f"(about 6 minutes on 2 cores; cached in {folder})",
            flush=True,
        )
        wheel = build_wheel(folder)
    # The dependencies (numpy, jinja2, ...) come from the index as usual.
    pip("install", "--force-reinstall", "--no-deps", str(wheel))
    pip("install", f"llama-cpp-python=={VERSION}")  # its dependencies; the build stays
    importlib.invalidate_caches()
    if not installed_is_patched():
        print(
            f"llama_build: {wheel} does not carry the patch; delete {folder} and re-run",
            file=sys.stderr,
        )
        return BUILD_FAILED
    key_file().write_text(key + "\n")
    return 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["install"]:
        return install()
    if argv[1:] == ["check"]:
        return 0 if installed_is_patched() else NOT_PATCHED
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
