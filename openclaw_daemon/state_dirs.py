"""Create and verify the state dir and the run dir, safely; name what is wrong.

The CLI calls ``prepare`` before it spawns a daemon, and the daemon again when
it starts, so a state dir that is a file, read-only or on a full disk, or a run
dir someone else made, is one clear line and no daemon. Rules:

- A directory we create is 0700. We never change the mode of one we did not
  create (``OPENCLAW_SOCKET=/tmp/x.sock`` must not chmod ``/tmp``).
- An existing state dir must be ours and not writable by others.
- The socket's dir from ``OPENCLAW_SOCKET`` may be shared (``/tmp``), but then
  it must be sticky, so nobody else can swap our socket; owner us or root.
- The short fallback run dir (``/tmp/openclaw-<uid>-<hash>``) has a predictable
  name: it is made with an exclusive ``mkdir`` and, if it already exists, used
  only when it is a real directory (not a symlink) of ours with mode 0700.

Standard library only: the CLI imports this when it starts a daemon.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from openclaw_daemon import config
from openclaw_daemon.wire.errors import OpenClawError, PermissionDeniedError, StateDirError

# Below this much free space a daemon cannot even write its log and status file.
MIN_FREE_BYTES = 1 << 20


def _mode(info: os.stat_result) -> str:
    return f"{stat.S_IMODE(info.st_mode):04o}"


def dir_error(path: Path, exc: OSError, *, what: str = "the state dir") -> StateDirError:
    """One line naming ``path`` and the problem, for an OSError met while using it."""
    reason = {
        errno.ENOTDIR: "a path component is a file, not a directory",
        errno.EEXIST: "it exists and is not a directory",
        errno.EROFS: "it is on a read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "the disk quota is exhausted",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    return StateDirError(
        f"cannot use {what} {path}: {reason}{where}",
        hint=f"Fix it, or set {config.ENV_STATE_DIR} to a writable directory you own.",
    )


def _make_dir(path: Path, what: str) -> bool:
    """mkdir -p with mode 0700 for what we create; True if ``path`` itself was made."""
    try:
        path.mkdir(parents=True, mode=0o700)
        return True
    except FileExistsError:
        if not path.is_dir():
            raise StateDirError(
                f"cannot use {what} {path}: it exists and is not a directory",
                hint=f"Remove it, or set {config.ENV_STATE_DIR} to another directory.",
            ) from None
        return False
    except OSError as exc:
        raise dir_error(path, exc, what=what) from exc


def ensure_private_dir(path: Path, *, what: str = "the state dir") -> None:
    """``path`` as a directory of ours that nobody else may write; create it 0700."""
    if _make_dir(path, what):
        return
    info = path.stat()
    if info.st_uid != os.getuid():
        raise PermissionDeniedError(
            f"{what} {path} belongs to uid {info.st_uid}, not to you (uid {os.getuid()})",
            hint="Set OPENCLAW_STATE_DIR or OPENCLAW_SOCKET to a directory you own.",
        )
    if info.st_mode & 0o022:
        # Not ours to chmod: another user could plant files or swap sockets in it.
        raise PermissionDeniedError(
            f"{what} {path} is writable by other users (mode {_mode(info)})",
            hint=f"Run: chmod go-w {path}  (or pick another directory).",
        )


def ensure_socket_dir(path: Path) -> None:
    """The socket's parent: ours (any mode we set), or a shared sticky dir like /tmp."""
    if _make_dir(path, "the socket directory"):
        return
    info = path.stat()
    if info.st_uid not in (os.getuid(), 0):
        raise PermissionDeniedError(
            f"the socket directory {path} belongs to uid {info.st_uid}",
            hint="Set OPENCLAW_SOCKET to a path in a directory you own.",
        )
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise PermissionDeniedError(
            f"the socket directory {path} is writable by other users and not sticky "
            f"(mode {_mode(info)}): anyone could replace the socket",
            hint="Set OPENCLAW_SOCKET to a path in a directory you own.",
        )


def ensure_fallback_run_dir(path: Path) -> None:
    """The predictable short run dir: made by us now, or already ours and 0700."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise dir_error(path, exc, what="the run dir") from exc
    info = path.lstat()  # never follow a symlink someone planted
    problem = ""
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symlink"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif info.st_uid != os.getuid():
        problem = f"belongs to uid {info.st_uid}"
    elif stat.S_IMODE(info.st_mode) != 0o700:
        problem = f"has mode {_mode(info)}, not 0700"
    if problem:
        raise PermissionDeniedError(
            f"the run dir {path} {problem}: someone else may have made it, so it is not used",
            hint=f"Remove it if it is stale, or set {config.ENV_SOCKET} to a path in a "
            f"directory you own (the state dir's path is too long for a socket in it).",
        )


def prepare_run_dir(paths: config.Paths) -> None:
    """Create or check the dir the socket goes in, by where it comes from."""
    if os.environ.get(config.ENV_SOCKET):
        ensure_socket_dir(paths.run_dir)
    elif paths.run_dir == paths.state_dir / "run":
        ensure_private_dir(paths.run_dir, what="the run dir")
    else:
        ensure_fallback_run_dir(paths.run_dir)


def check_free_space(path: Path) -> None:
    try:
        info = os.statvfs(path)
    except OSError as exc:
        raise dir_error(path, exc) from exc
    if info.f_flag & os.ST_RDONLY:
        raise dir_error(path, OSError(errno.EROFS, "read-only", str(path)))
    free = info.f_bavail * info.f_frsize
    if free < MIN_FREE_BYTES:
        raise StateDirError(
            f"cannot use the state dir {path}: no space left on the device "
            f"({free // 1024} KiB free, the daemon needs at least {MIN_FREE_BYTES >> 20} MiB)",
            hint="Free some disk space, or set OPENCLAW_STATE_DIR to another disk.",
        )


def prepare(paths: config.Paths) -> None:
    """Every directory a daemon needs, created or checked, before one is started."""
    ensure_private_dir(paths.state_dir)
    check_free_space(paths.state_dir)
    for sub in (paths.status_file.parent, paths.log_file.parent):
        if sub != paths.run_dir:
            ensure_private_dir(sub, what="the state dir")
    prepare_run_dir(paths)


def as_state_dir_error(exc: OSError) -> OpenClawError | None:
    """An OSError on a path inside the state dir, as one clear line; else None."""
    if not exc.filename:
        return None
    state = config.state_dir()
    target = Path(os.path.abspath(str(exc.filename)))
    if target != state and state not in target.parents:
        return None
    return dir_error(state, exc)
