"""Start-up errors: a state directory or socket the daemon cannot use ends it at once
with exit status 73 (EX_CANTCREAT) and one line on stderr that says what and where — no
traceback — and leaves nothing behind.

Cases: the state directory is a regular file; it is to be created inside a read-only
filesystem; it exists on a read-only filesystem; the socket's directory is read-only
(real read-only tmpfs mounts: the tests run as root). A second daemon on the same state
directory (exit 75) is covered by ``test_restart.py``.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess

EXIT_CANT_CREATE = 73
START_BOUND_S = 10.0  # generous: the daemon gives up in well under a second


@contextlib.contextmanager
def read_only_mount(where: Path, populate: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """A small tmpfs at ``where``, filled by ``populate``, then remounted read-only."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {mounted.stderr}")
    try:
        if populate is not None:
            populate(where)
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with the bytes of its files (None for directories)."""
    return {
        str(path.relative_to(root)): (path.read_bytes() if path.is_file() else None)
        for path in sorted(root.rglob("*"))
    }


def run_failing_start(daemon: DaemonProcess, *, only_line: bool = True) -> str:
    """Start the daemon, expect exit 73 in time; its one stderr line (``only_line``), else
    its one ERROR line (other lines being the INFO log of what it did before)."""
    result = subprocess.run(
        daemon.command(), capture_output=True, env=daemon.env, timeout=START_BOUND_S, check=False
    )
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == EXIT_CANT_CREATE, stderr
    assert "Traceback" not in stderr, stderr
    assert result.stdout == b""
    lines = stderr.splitlines()
    if not only_line:
        lines = [line for line in lines if " INFO " not in line]
    assert len(lines) == 1, stderr
    assert " ERROR " in lines[0], stderr
    return lines[0]


@pytest.fixture
def configured(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    """A daemon's paths and command (not started: each test starts it itself)."""
    return make_daemon()


def test_state_dir_that_is_a_regular_file(configured: DaemonProcess) -> None:
    configured.state_dir.write_bytes(b"not a directory")
    before = tree(configured.root)
    line = run_failing_start(configured)
    assert "state directory" in line and str(configured.state_dir) in line, line
    assert tree(configured.root) == before
    assert configured.state_dir.read_bytes() == b"not a directory"
    assert not Path(configured.socket_path).exists()


def test_state_dir_to_be_created_on_a_read_only_filesystem(configured: DaemonProcess) -> None:
    with read_only_mount(configured.root / "ro") as read_only:
        configured.state_dir = read_only / "state"
        line = run_failing_start(configured)
        assert "state directory" in line and str(configured.state_dir) in line, line
        assert "Read-only file system" in line, line
        assert tree(read_only) == {}
    assert not Path(configured.socket_path).exists()


def test_existing_state_dir_on_a_read_only_filesystem(configured: DaemonProcess) -> None:
    def populate(where: Path) -> None:
        (where / "state").mkdir(mode=0o700)

    with read_only_mount(configured.root / "ro", populate) as read_only:
        configured.state_dir = read_only / "state"
        line = run_failing_start(configured)
        assert "state directory" in line and str(configured.state_dir) in line, line
        assert "not writable" in line and "Read-only file system" in line, line
        assert tree(read_only) == {"state": None}
    assert not Path(configured.socket_path).exists()


def test_socket_in_a_read_only_directory(configured: DaemonProcess) -> None:
    configured.state_dir.mkdir(mode=0o700)
    with read_only_mount(configured.root / "ro") as read_only:
        configured.socket_path = str(read_only / "s.sock")
        line = run_failing_start(configured)
        assert "cannot listen on" in line and configured.socket_path in line, line
        assert "Read-only file system" in line, line
        assert tree(read_only) == {}
    assert tree(configured.state_dir) == {}  # no lock, probe or store file left


def test_socket_in_a_read_only_directory_with_stores_on_disk(configured: DaemonProcess) -> None:
    store = configured.store_path
    store.parent.mkdir(parents=True)
    store.write_text('{"agent:main:k": {"sessionId": "s", "updatedAt": 1700000000000}}')
    state_before = tree(configured.state_dir)
    with read_only_mount(configured.root / "ro") as read_only:
        configured.socket_path = str(read_only / "s.sock")
        # The stores are loaded before the socket is taken: their INFO lines come first.
        line = run_failing_start(configured, only_line=False)
        assert "cannot listen on" in line and configured.socket_path in line, line
        assert tree(read_only) == {}
    assert tree(configured.state_dir) == state_before  # the store is left as it was
