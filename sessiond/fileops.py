"""The file-operations seam: every byte the daemon persists goes through one small object.
Does I/O (the real implementation is a thin pass-through to :mod:`os`).

The journal writer, the snapshot writer (in the event loop, the sync thread, or a forked
child) and the loader take a :class:`FileOps`. Production uses :data:`REAL_FILES`; the
crash tests substitute a model of the page cache that forgets what was never synced
(``tests/support/crashfs.py``), so "is this fsync needed?" is answered by a test rather
than by belief.

Store files, snapshots and journal segments must be regular files: they are opened with
``O_NOFOLLOW`` (a planted symlink is refused, never followed), checked with ``S_ISREG``
after opening (a FIFO, device or directory is refused, never read), and new files are
created with ``O_EXCL`` (never appended through something that was already there).
Opening a FIFO uses ``O_NONBLOCK`` so that a FIFO without a writer cannot hang the daemon.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from typing import NamedTuple

__all__ = ["REAL_FILES", "FileIdentity", "FileOps", "NotRegularFileError", "directory_mode_for"]


def directory_mode_for(file_mode: int) -> int:
    """The mode of directories holding files of ``file_mode``: whoever may read the files
    may also enter the directory (0600 → 0700, 0640 → 0750, 0660 → 0770)."""
    return file_mode | 0o100 | ((file_mode & 0o044) >> 2)


class NotRegularFileError(OSError):
    """A path where the daemon keeps a file holds something else (symlink, FIFO, device)."""


class FileIdentity(NamedTuple):
    """Which file a path names: inode and size (a snapshot is recognised by these)."""

    inode: int
    size_bytes: int


def _kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


class FileOps:
    """The operations persistence needs, each a thin wrapper of one system call."""

    def _open_regular(self, path: str, flags: int, mode: int = 0o600) -> int:
        try:
            fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise NotRegularFileError(
                    errno.ELOOP, f"{path} is a symbolic link; refusing to follow it"
                ) from None
            raise
        try:
            file_mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(file_mode):
                raise NotRegularFileError(
                    errno.EINVAL, f"{path} is {_kind_of(file_mode)}, not a regular file"
                )
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read_file(self, path: str) -> bytes | None:
        """The whole content of the regular file at ``path``; None if there is none."""
        try:
            fd = self._open_regular(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def identity(self, path: str) -> FileIdentity | None:
        """Inode and size of the regular file at ``path`` (None if absent or not regular)."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        return FileIdentity(info.st_ino, info.st_size) if stat.S_ISREG(info.st_mode) else None

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def create(self, path: str, mode: int = 0o600) -> int:
        """A new file with exactly ``mode`` (whatever the umask), opened for writing;
        fails if ``path`` exists."""
        fd = self._open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        os.fchmod(fd, mode)  # the umask may have taken bits away
        return fd

    def open_append(self, path: str, mode: int = 0o600) -> int:
        """A file opened to append to, created if missing; it gets exactly ``mode``
        (whatever the umask, and also when it existed with another mode)."""
        fd = self._open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
                os.fchmod(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_for_sync(self, path: str) -> int:
        """An existing regular file, opened only to fsync it."""
        return self._open_regular(path, os.O_RDONLY)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at the file's current offset."""
        with memoryview(data) as view:
            written = 0
            while written < len(view):
                written += os.write(fd, view[written:])

    def truncate(self, fd: int, size_bytes: int) -> None:
        os.ftruncate(fd, size_bytes)
        os.lseek(fd, size_bytes, os.SEEK_SET)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def file_identity(self, fd: int) -> FileIdentity:
        info = os.fstat(fd)
        return FileIdentity(info.st_ino, info.st_size)

    def close(self, fd: int) -> None:
        os.close(fd)

    def rename(self, source: str, target: str) -> None:
        os.rename(source, target)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def mkdir_private(self, path: str, mode: int = 0o700) -> None:
        """Create one directory with ``mode`` whatever the umask (``mkdir``'s mode is
        masked by it; ``Path.mkdir(parents=True)`` gives parents 0777 minus the umask)."""
        os.mkdir(path, mode)
        os.chmod(path, mode)

    def make_private_dirs(self, path: str, mode: int = 0o700) -> None:
        """Create ``path`` and its missing parents (``mode``, default 0700), each made
        durable in its parent: a store created in a new directory must not vanish with the
        directory entry after a power loss."""
        missing: list[str] = []
        current = os.path.abspath(path)
        while not self.is_dir(current):
            missing.append(current)
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
        for directory in reversed(missing):
            try:
                self.mkdir_private(directory, mode)
            except FileExistsError:
                if not self.is_dir(directory):
                    raise
                continue
            self.fsync_directory(os.path.dirname(directory))

    def fsync_directory(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def lock_directory(self, path: str) -> int:
        """An exclusive, non-blocking ``flock`` on ``path``; returns the held descriptor.
        Raises :class:`BlockingIOError` when another process holds it."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def unlock_directory(self, fd: int) -> None:
        os.close(fd)


REAL_FILES = FileOps()
