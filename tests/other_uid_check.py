"""Can another uid reach the daemon's socket? A check the fault suite can call.

``check(socket_path)`` creates a throwaway user (root only), tries to connect
to the socket as that user twice: once as the socket's modes stand, once with
the socket and its parent dirs loosened for a moment, so the daemon's own peer
check (SO_PEERCRED) is what must refuse. The user is removed and the modes are
restored afterwards. Bounded in time; the probe itself is standard library only.
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

from openclaw_daemon.wire import frames as protocol
from openclaw_daemon.wire.errors import OpenClawError

# Runs as the other user, under the system Python (the venv may sit in a dir
# only root can enter): connect, send the hello frame given in hex, and report
# the raw reply, which the caller decodes.
_PROBE = r"""
import json, socket, sys
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
        s.sendall(bytes.fromhex(sys.argv[2]))
    except OSError as exc:  # a refusing daemon may have hung up already
        out["send_error"] = str(exc)
    buf = b""
    try:
        while len(buf) < 1 << 16:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    except OSError as exc:
        out["reply_error"] = str(exc)
    out["reply_hex"] = buf.hex()
print(json.dumps(out))
"""
PROBE_PYTHON = "/usr/bin/python3"


def _decode_reply(result: dict[str, Any]) -> None:
    raw = bytes.fromhex(result.pop("reply_hex", "") or "")
    if not raw:
        result["reply"] = None
        return
    view = memoryview(raw)

    def read(size: int) -> bytes:
        nonlocal view
        chunk, view = bytes(view[:size]), view[size:]
        return chunk

    try:
        frame = protocol.read_frame(read)
    except OpenClawError as exc:
        result["reply"] = {"type": "undecodable", "message": str(exc)}
        return
    result["reply"] = (
        None if frame is None else {k: frame.get(k) for k in ("type", "code", "message")}
    )


def _refused(result: dict[str, Any]) -> bool:
    """Refused: the connect failed, or the daemon answered with an error frame.

    A probe that could not run at all (``connected`` None) is not a refusal.
    """
    if result.get("connected") is False:
        return True
    if result.get("connected") is True:
        reply = result.get("reply")
        return reply is not None and reply.get("type") == "error"
    return False


def _probe(user: str, socket_path: Path) -> dict[str, Any]:
    hello = protocol.encode(protocol.hello("other-uid-probe", pid=0)).hex()
    proc = subprocess.run(
        ["runuser", "-u", user, "--", PROBE_PYTHON, "-I", "-c", _PROBE, str(socket_path), hello],
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        result = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return {"connected": None, "probe_failed": proc.returncode, "stderr": proc.stderr[-500:]}
    _decode_reply(result)
    return result


def check(socket_path: str | Path) -> dict[str, Any]:
    """Probe ``socket_path`` as a fresh other user; ``refused`` is the verdict.

    Returns ``{"skipped": reason}`` when not root (a second user cannot be made).
    """
    socket_path = Path(socket_path).absolute()
    if os.geteuid() != 0:
        return {"skipped": "not root: cannot create a second user to connect as"}
    if not os.access(PROBE_PYTHON, os.X_OK):
        return {"skipped": f"{PROBE_PYTHON} is missing: nothing to run the probe as another user"}
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
    result["peer_check_refused"] = (result["loosened"].get("reply") or {}).get(
        "code"
    ) == "permission"
    return result


if __name__ == "__main__":
    print(json.dumps(check(sys.argv[1]), indent=2))
