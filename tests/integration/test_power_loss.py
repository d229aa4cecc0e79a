"""A power loss on a real file system, without killing anything first: the daemon's state
lives on ext4 on a loop device; after durable writes are acknowledged, the file system is
shut down with ``FS_IOC_SHUTDOWN`` / ``NOLOGFLUSH`` (what xfstests' "godown" does: nothing
more reaches the device, the page cache is lost at unmount), then mounted again (journal
replay) and served by a new daemon. Every acknowledged durable write must be there.

ext4 is mounted with ``noauto_da_alloc`` (otherwise ext4 flushes a file's data when a
rename replaces it, hiding a missing fsync) and ``commit=300`` (no periodic journal
commit within the test). Needs root and loop devices; skipped, with the reason, where
they are missing.

Teardown, also when a test fails: the daemons on the file system are killed first, then it
is unmounted and its loop device detached; if either fails, the test errors (a mount is
never leaked silently).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess

FS_IOC_SHUTDOWN = 0x8004587D
NOLOGFLUSH = 2
IMAGE_MB = 64
UNMOUNT_ATTEMPTS = 5


def _run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


class LoopFileSystem:
    """ext4 in an image file, on a loop device, mounted at ``mount_point``."""

    def __init__(self, root: Path) -> None:
        self.image = root / "fs.img"
        self.mount_point = root / "mnt"
        self.device: str | None = None
        self.mounted = False

    def create(self) -> None:
        with self.image.open("wb") as image:
            image.truncate(IMAGE_MB << 20)
        _run("mkfs.ext4", "-q", "-F", str(self.image))
        self.device = _run("losetup", "-f", "--show", str(self.image))
        self.mount_point.mkdir()
        self.mount()

    def mount(self) -> None:
        assert self.device is not None
        _run("mount", "-o", "noauto_da_alloc,commit=300", self.device, str(self.mount_point))
        self.mounted = True

    def power_loss(self) -> None:
        """Nothing written from now on reaches the device; then unmount."""
        fd = os.open(self.mount_point, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, FS_IOC_SHUTDOWN, struct.pack("I", NOLOGFLUSH))
        finally:
            os.close(fd)

    def unmount(self) -> None:
        """Unmount; raises (with umount's message) if it cannot, after a few tries."""
        if not self.mounted:
            return
        for attempt in range(UNMOUNT_ATTEMPTS):
            result = subprocess.run(
                ["umount", str(self.mount_point)], check=False, capture_output=True, text=True
            )
            if result.returncode == 0:
                self.mounted = False
                return
            time.sleep(0.1 * (attempt + 1))
        raise RuntimeError(f"cannot unmount {self.mount_point}: {result.stderr.strip()}")

    def destroy(self) -> None:
        """Unmount and detach the loop device; raises if either fails (after trying both)."""
        errors: list[str] = []
        try:
            self.unmount()
        except RuntimeError as error:
            errors.append(str(error))
        if self.device is not None:
            result = subprocess.run(
                ["losetup", "-d", self.device], check=False, capture_output=True, text=True
            )
            if result.returncode != 0 and not errors:
                errors.append(f"cannot detach {self.device}: {result.stderr.strip()}")
            self.device = None
        if errors:
            raise RuntimeError("; ".join(errors) + " (leaked: see findmnt, losetup -a)")


def _loop_devices_usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mount, losetup)"
    for tool in ("losetup", "mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/dev/loop-control").exists():
        return "no loop devices (/dev/loop-control)"
    return None


@pytest.fixture
def loop_fs(short_tmp: Path) -> Iterator[LoopFileSystem]:
    reason = _loop_devices_usable()
    if reason is not None:
        pytest.skip(reason)
    fs = LoopFileSystem(short_tmp)
    try:
        fs.create()
    except subprocess.CalledProcessError as error:
        fs.destroy()
        pytest.skip(f"cannot mount a loop file system here: {error.stderr}")
    yield fs
    fs.destroy()


@pytest.fixture
def daemon_on(
    loop_fs: LoopFileSystem, make_daemon: Callable[..., DaemonProcess]
) -> Iterator[Callable[[str], DaemonProcess]]:
    """Factory: an unstarted daemon whose state lives on ``loop_fs``. Depending on
    ``loop_fs``, this fixture is torn down first: its daemons are killed (also when the test
    failed before stopping them) before the file system is unmounted."""
    daemons: list[DaemonProcess] = []

    def factory(durability: str) -> DaemonProcess:
        config = {
            "persistence": {
                "durability": durability,
                "flush_delay_s": 120.0,
                "flush_max_delay_s": 120.0,
                "journal_snapshot_interval_s": 120.0,
                "journal_fsync_interval_s": 120.0,
            }
        }
        daemon = make_daemon(config)
        daemon.state_dir = loop_fs.mount_point / "state"
        daemons.append(daemon)
        return daemon

    yield factory
    for daemon in daemons:
        daemon.ensure_stopped()


@pytest.mark.parametrize("durability", ["journal", "debounced"])
def test_acknowledged_durable_writes_survive_a_power_loss(
    daemon_on: Callable[[str], DaemonProcess], loop_fs: LoopFileSystem, durability: str
) -> None:
    """Every durable write the daemon acknowledged is there after a real power loss."""
    daemon = daemon_on(durability).start()
    acknowledged: dict[str, int] = {}
    with daemon.client() as client:
        for n in range(40):
            key = f"agent:main:k{n % 7}"
            client.patch(f"agent:main:plain{n}", {"n": n})  # not promised
            client.patch(key, {"n": n}, durable=True)
            acknowledged[key] = n
            if n == 20:
                assert client.flush()  # a snapshot in the middle, segments rotated
        client.patch("agent:main:late", {"n": -1})  # not promised either
    loop_fs.power_loss()
    daemon.kill()
    loop_fs.unmount()
    loop_fs.mount()
    daemon.start()
    with daemon.client() as client:
        for key, n in acknowledged.items():
            session = client.get(key)
            assert session is not None, f"{key} lost"
            assert session.data["n"] == n, f"{key}: {session.data['n']} instead of {n}"
    assert daemon.stop() == 0


def test_the_test_can_see_a_write_that_was_never_synced(
    loop_fs: LoopFileSystem,
) -> None:
    """The method itself: what was written but not synced before the shutdown is gone."""
    synced, unsynced = loop_fs.mount_point / "synced", loop_fs.mount_point / "unsynced"
    with synced.open("wb") as file:
        file.write(b"kept")
        file.flush()
        os.fsync(file.fileno())
    dir_fd = os.open(loop_fs.mount_point, os.O_RDONLY)
    os.fsync(dir_fd)
    os.close(dir_fd)
    unsynced.write_bytes(b"lost")
    loop_fs.power_loss()
    loop_fs.unmount()
    loop_fs.mount()
    assert synced.read_bytes() == b"kept"
    with contextlib.suppress(FileNotFoundError):
        assert unsynced.read_bytes() != b"lost"
