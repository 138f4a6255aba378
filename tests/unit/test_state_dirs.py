"""Fast checks of state_dirs and config's path and environment rules (issue 13)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from openclaw_daemon import config, state_dirs
from openclaw_daemon.wire.errors import BadRequestError, PermissionDeniedError, StateDirError


def test_relative_state_dir_and_socket_are_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(config.ENV_STATE_DIR, "relstate")
    monkeypatch.setenv(config.ENV_SOCKET, "sock/d.sock")
    paths = config.resolve_paths()
    assert paths.state_dir == tmp_path / "relstate"
    assert paths.socket == tmp_path / "sock" / "d.sock"
    env = config.daemon_environment(paths)
    assert env[config.ENV_STATE_DIR] == str(tmp_path / "relstate")
    assert env[config.ENV_SOCKET] == str(tmp_path / "sock" / "d.sock")


@pytest.mark.parametrize(
    ("name", "value"),
    [("OPENCLAW_N_CTX", "abc"), ("OPENCLAW_N_CTX", "10"), ("OPENCLAW_CACHE_DISK", "x")],
)
def test_bad_environment_is_a_bad_request(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(BadRequestError, match=name):
        config.check_environment()


def test_shared_sticky_dir_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    state_dirs.ensure_socket_dir(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_shared_dir_without_sticky_bit_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "open"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(PermissionDeniedError, match="not sticky"):
        state_dirs.ensure_socket_dir(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o777


def test_group_writable_state_dir_is_refused_not_chmodded(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o770)
    with pytest.raises(PermissionDeniedError, match="writable by other users"):
        state_dirs.ensure_private_dir(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o770


def test_created_dirs_are_private(tmp_path: Path) -> None:
    state_dirs.ensure_private_dir(tmp_path / "a" / "b")
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700


def test_fallback_run_dir_made_fresh_or_refused(tmp_path: Path) -> None:
    fresh = tmp_path / "run-fresh"
    state_dirs.ensure_fallback_run_dir(fresh)
    assert stat.S_IMODE(fresh.lstat().st_mode) == 0o700
    state_dirs.ensure_fallback_run_dir(fresh)  # ours and 0700: reused
    wide = tmp_path / "run-wide"
    wide.mkdir()
    os.chmod(wide, 0o755)
    with pytest.raises(PermissionDeniedError, match="0755"):
        state_dirs.ensure_fallback_run_dir(wide)
    link = tmp_path / "run-link"
    link.symlink_to(fresh)
    with pytest.raises(PermissionDeniedError, match="symlink"):
        state_dirs.ensure_fallback_run_dir(link)


def test_state_dir_that_is_a_file(tmp_path: Path) -> None:
    state = tmp_path / "file"
    state.write_text("x")
    with pytest.raises(StateDirError, match="not a directory"):
        state_dirs.ensure_private_dir(state)
