"""Can another uid reach the daemon's socket? A check the fault suite can call.

``check(socket_path)`` creates a throwaway user (root only), tries to connect
to the socket as that user twice: once as the socket's modes stand, once with
the socket and its parent dirs loosened for a moment, so the daemon's own peer
check (SO_PEERCRED) is what must refuse. The user is removed and the modes are
restored afterwards. Standard library only, bounded in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

# Runs as the other user: connect, send a hello, report what came back.
_PROBE = r"""
import json, socket, struct, sys
sys.path.insert(0, sys.argv[2])
out = {}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    out = {"connected": False, "errno": exc.errno, "error": str(exc)}
else:
    out["connected"] = True
    try:
        from openclaw_daemon import protocol
        s.sendall(protocol.encode(protocol.hello("other-uid-probe", pid=0)))
        def read(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    break
                buf += chunk
            return buf
        reply = protocol.read_frame(read)
        out["reply"] = None if reply is None else {k: reply.get(k) for k in ("type", "code", "message")}
    except Exception as exc:  # noqa: BLE001 - report anything
        out["reply_error"] = repr(exc)
print(json.dumps(out))
"""


def _refused(result: dict[str, Any]) -> bool:
    if not result.get("connected"):
        return True
    reply = result.get("reply")
    return reply is None or reply.get("type") == "error"


def _probe(user: str, socket_path: Path) -> dict[str, Any]:
    src = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        ["runuser", "-u", user, "--", sys.executable, "-I", "-c", _PROBE, str(socket_path), src],
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return {"connected": None, "probe_failed": proc.returncode, "stderr": proc.stderr[-500:]}


def check(socket_path: str | Path) -> dict[str, Any]:
    """Probe ``socket_path`` as a fresh other user; ``refused`` is the verdict.

    Returns ``{"skipped": reason}`` when not root (a second user cannot be made).
    """
    socket_path = Path(socket_path).absolute()
    if os.geteuid() != 0:
        return {"skipped": "not root: cannot create a second user to connect as"}
    user = "ocprobe" + secrets.token_hex(3)
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
        check=True,
        capture_output=True,
        timeout=30,
    )
    result: dict[str, Any] = {"user": user, "socket": str(socket_path)}
    try:
        result["as_is"] = _probe(user, socket_path)
        # Loosen every dir on the way and the socket itself: now only the
        # daemon's peer-credential check stands between the user and it.
        chain = [socket_path, *socket_path.parents]
        saved = {p: os.stat(p).st_mode & 0o7777 for p in chain}
        try:
            for p in chain[1:]:
                os.chmod(p, saved[p] | 0o011)
            os.chmod(socket_path, 0o777)
            result["loosened"] = _probe(user, socket_path)
        finally:
            for p, mode in saved.items():
                with contextlib.suppress(OSError):
                    os.chmod(p, mode)
    finally:
        subprocess.run(["userdel", user], capture_output=True, timeout=30)
    result["refused"] = _refused(result["as_is"]) and _refused(result["loosened"])
    result["peer_check_refused"] = (result["loosened"].get("reply") or {}).get("code") == "permission"
    return result


if __name__ == "__main__":
    print(json.dumps(check(sys.argv[1]), indent=2))
