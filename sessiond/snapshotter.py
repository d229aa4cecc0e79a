"""Writing snapshot files, in a forked child or in-process. Does I/O.

A snapshot is written in two steps. :func:`write_snapshot_file` renders the entries into
a new temp file beside the store (``O_EXCL``, mode 0600), fsyncs it, and returns its
identity (inode and size); :func:`commit_snapshot` renames it over ``sessions.json`` and
fsyncs the directory (Redis ``rdb.c``'s rename dance). Between the two, the journal
records a marker naming that identity (see :mod:`sessiond.journal`).

:class:`ForkSnapshotter` (production) runs the first step in a child made with
``fork()``, as Redis's BGSAVE does: the child sees the entries exactly as they were at
the fork (copy-on-write), renders 100k entries of JSON without holding the daemon's
GIL, and reports through a pipe; the daemon's event loop only waits on that pipe.
:class:`InlineSnapshotter` runs it in the calling thread (tests, with a model file
system; and the file-vector harness).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, Protocol

import msgspec

from sessiond.entries import StoredEntry
from sessiond.fileops import REAL_FILES, FileIdentity, FileOps
from sessiond.snapshot import render_store

__all__ = [
    "ForkSnapshotter",
    "InlineSnapshotter",
    "SnapshotFile",
    "Snapshotter",
    "commit_snapshot",
    "temp_file_prefix",
    "write_snapshot_file",
]

WRITE_BUFFER_BYTES = 1 << 20
CHILD_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


class SnapshotFile(NamedTuple):
    """A complete, fsynced temp file, not yet renamed into place."""

    temp_path: str
    identity: FileIdentity


def temp_file_prefix(path: Path) -> str:
    return f"{path.name}.sessiond-"


def new_temp_path(path: Path) -> str:
    return str(path.with_name(f"{temp_file_prefix(path)}{secrets.token_hex(6)}.tmp"))


def write_snapshot_file(
    fs: FileOps,
    temp_path: str,
    entries: Mapping[str, StoredEntry],
    *,
    pretty: bool,
    mode: int = 0o600,
) -> SnapshotFile:
    """Render ``entries`` into a new file at ``temp_path`` (with ``mode``) and fsync it."""
    fd = fs.create(temp_path, mode)
    try:
        buffer = bytearray()
        for chunk in render_store(entries.items(), pretty=pretty):
            buffer += chunk
            if len(buffer) >= WRITE_BUFFER_BYTES:
                fs.write(fd, buffer)
                buffer.clear()
        fs.write(fd, buffer)
        fs.fsync(fd)
        identity = fs.file_identity(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.close(fd)
        with contextlib.suppress(OSError):
            fs.unlink(temp_path)
        raise
    fs.close(fd)
    return SnapshotFile(temp_path, identity)


def commit_snapshot(fs: FileOps, snapshot: SnapshotFile, path: Path) -> None:
    """Put a written snapshot in place durably: rename, then fsync the directory."""
    fs.rename(snapshot.temp_path, str(path))
    fs.fsync_directory(str(path.parent))


def discard_snapshot(fs: FileOps, temp_path: str) -> None:
    with contextlib.suppress(OSError):
        fs.unlink(temp_path)


class Snapshotter(Protocol):
    async def write(
        self, entries: Mapping[str, StoredEntry], path: Path, *, pretty: bool, mode: int = 0o600
    ) -> SnapshotFile:
        """Write ``entries`` (as they are now) to a fsynced temp file beside ``path``."""
        ...


class InlineSnapshotter:
    """Writes the snapshot in the calling thread (tests and tools)."""

    def __init__(self, fs: FileOps = REAL_FILES) -> None:
        self.fs = fs

    async def write(
        self, entries: Mapping[str, StoredEntry], path: Path, *, pretty: bool, mode: int = 0o600
    ) -> SnapshotFile:
        return write_snapshot_file(self.fs, new_temp_path(path), entries, pretty=pretty, mode=mode)


class _ChildReport(msgspec.Struct):
    inode: int = 0
    size_bytes: int = 0
    error: str | None = None
    errno: int | None = None


class ForkSnapshotter:
    """Writes the snapshot in a forked child; the event loop only waits on a pipe."""

    def __init__(self, fs: FileOps = REAL_FILES) -> None:
        self.fs = fs

    async def write(
        self, entries: Mapping[str, StoredEntry], path: Path, *, pretty: bool, mode: int = 0o600
    ) -> SnapshotFile:
        temp_path = new_temp_path(path)
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # pragma: no cover - the child never returns (it is not traced)
            os.close(read_fd)
            _child_main(self.fs, write_fd, temp_path, entries, pretty=pretty, mode=mode)
        os.close(write_fd)
        try:
            report_bytes = await _read_all(read_fd)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            await _reap(pid)
            discard_snapshot(self.fs, temp_path)
            raise
        finally:
            os.close(read_fd)
        await _reap(pid)
        try:
            report = msgspec.msgpack.decode(report_bytes, type=_ChildReport)
        except msgspec.DecodeError:
            report = _ChildReport(error="the snapshot process ended without a report")
        if report.error is not None:
            discard_snapshot(self.fs, temp_path)
            raise OSError(report.errno or 0, report.error)
        return SnapshotFile(temp_path, FileIdentity(report.inode, report.size_bytes))


def _child_main(
    fs: FileOps,
    write_fd: int,
    temp_path: str,
    entries: Mapping[str, StoredEntry],
    *,
    pretty: bool,
    mode: int,
) -> None:  # pragma: no cover - runs in the forked child
    """Render and write, report, exit — touching nothing the parent owns."""
    status = 0
    try:
        signal.set_wakeup_fd(-1)
        for signum in CHILD_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        gc.disable()  # collecting would touch (and copy) every object of the parent
        try:
            written = write_snapshot_file(fs, temp_path, entries, pretty=pretty, mode=mode)
            report = _ChildReport(written.identity.inode, written.identity.size_bytes)
        except OSError as error:
            report = _ChildReport(error=str(error), errno=error.errno)
        except BaseException as error:
            report = _ChildReport(error=f"snapshot failed: {error!r}")
        os.write(write_fd, msgspec.msgpack.encode(report))  # the report pipe, not a store file
    except BaseException:
        status = 1
    finally:
        os._exit(status)


async def _reap(pid: int) -> None:
    """Collect the child once it has exited, without blocking the loop (a pidfd becomes
    readable when its process ends)."""
    pidfd = os.pidfd_open(pid)
    try:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        loop.add_reader(pidfd, _settle_once, exited)
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
    finally:
        os.close(pidfd)
    _collect(pid)


def _settle_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _collect(pid: int) -> None:
    os.waitpid(pid, 0)  # the process has exited: this returns at once


async def _read_all(fd: int) -> bytes:
    """Everything written to the pipe until its other end closes, without blocking."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    chunks: list[bytes] = []
    os.set_blocking(fd, False)

    def on_readable() -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as error:
            loop.remove_reader(fd)
            if not done.done():
                done.set_exception(error)
            return
        if chunk:
            chunks.append(chunk)
            return
        loop.remove_reader(fd)
        if not done.done():
            done.set_result(b"".join(chunks))

    loop.add_reader(fd, on_readable)
    try:
        return await done
    finally:
        loop.remove_reader(fd)
