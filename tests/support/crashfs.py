"""A file system that forgets what was never synced: the crash-test implementation of
:class:`sessiond.fileops.FileOps`, as SQLite's crash-test VFS and LazyFS do it. Does no
real I/O (everything lives in memory).

Two states are kept apart:

- the *page cache* — what the daemon sees: file contents as written, the names as
  created, renamed and unlinked;
- the *disk* — what survives a power loss: a file's content as of its last ``fsync`` /
  ``fdatasync``, and a directory's entries (files and subdirectories) as of its last
  ``fsync_directory``.

:meth:`CrashFiles.crash` returns a new file system holding what survived: in
``"drop"`` mode, only the disk; in ``"prefix"`` mode, for each directory a random prefix
of its unsynced name changes, and for each file its synced content plus a random prefix
of the bytes written since (which may cut the last write in two: a torn write). In
``"reorder"`` mode, for each directory a random *subset* of its unsynced name changes
(each create, unlink, mkdir or rename whole, applied in their order), and file contents
as in ``"prefix"`` mode: strict POSIX, where nothing orders the name changes of a
directory that was not fsynced (a later unlink may survive an earlier rename).

A full disk: while ``disk_full`` is set, changing operations fail with ENOSPC and change
nothing (and are not counted).

Crash points: with ``crash_after=N`` the N-th operation that changes anything
(create, write, truncate, fsync, fdatasync, rename, unlink, mkdir, directory fsync) is
the last one performed; every later operation fails with EIO and changes nothing, as a
machine that lost power would. ``operations`` counts them (run once without a crash
point to learn how many a workload performs).
"""

from __future__ import annotations

import errno
import itertools
import os
import random
from dataclasses import dataclass, field
from typing import Literal

from sessiond.fileops import FileIdentity, FileOps, NotRegularFileError

__all__ = ["CrashFiles", "CrashMode"]

CrashMode = Literal["drop", "prefix", "reorder"]
ROOT = "/"


@dataclass
class _Inode:
    number: int
    data: bytearray = field(default_factory=bytearray)
    synced: bytes = b""


@dataclass
class _Handle:
    inode: _Inode
    writable: bool


class CrashFiles(FileOps):
    """In-memory files with a page cache and a disk; see the module docstring."""

    def __init__(self, *, crash_after: int | None = None) -> None:
        self.crash_after = crash_after
        self.disk_full = False
        """While true, every changing operation fails with ENOSPC and changes nothing."""
        self.operations = 0
        self.next_inode = 2
        self.fds = itertools.count(100)
        self.names: dict[str, _Inode] = {}  # file path -> inode (page cache)
        self.dirs: set[str] = {ROOT}  # directories (page cache)
        self.durable: dict[str, dict[str, _Inode | None]] = {ROOT: {}}
        """Directory -> its entries as of its last fsync (None: a subdirectory)."""
        self.changes: dict[str, list[tuple[str, _Inode | None, int]]] = {}
        """Directory -> its name changes since that fsync, in order (None: removed/dir), each
        with the number of the operation that made it (a rename makes two)."""
        self.name_operations = itertools.count()
        self.open: dict[int, _Handle] = {}

    # -- bookkeeping -------------------------------------------------------------------

    @property
    def crashed(self) -> bool:
        return self.crash_after is not None and self.operations >= self.crash_after

    def _change(self) -> None:
        """Count one changing operation; fail it if the machine is already down (or, without
        counting it, if the disk is full)."""
        if self.crashed:
            raise OSError(errno.EIO, "the machine crashed (simulated)")
        if self.disk_full:
            raise OSError(errno.ENOSPC, "no space left on device (simulated)")
        self.operations += 1

    def _note_name(self, path: str, inode: _Inode | None, operation: int | None = None) -> None:
        number = next(self.name_operations) if operation is None else operation
        self.changes.setdefault(os.path.dirname(path), []).append((path, inode, number))

    def _handle(self, fd: int) -> _Handle:
        try:
            return self.open[fd]
        except KeyError:
            raise OSError(errno.EBADF, "bad file descriptor") from None

    # -- reads ---------------------------------------------------------------------------

    def read_file(self, path: str) -> bytes | None:
        if path in self.dirs:
            raise NotRegularFileError(errno.EINVAL, f"{path} is a directory, not a regular file")
        inode = self.names.get(path)
        return None if inode is None else bytes(inode.data)

    def identity(self, path: str) -> FileIdentity | None:
        inode = self.names.get(path)
        return None if inode is None else FileIdentity(inode.number, len(inode.data))

    def listdir(self, path: str) -> list[str]:
        if path not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        prefix = path.rstrip("/") + "/"
        entries = [p for p in [*self.names, *self.dirs] if os.path.dirname(p) == path.rstrip("/")]
        return sorted(p[len(prefix) :] for p in entries if p != path)

    def exists(self, path: str) -> bool:
        return path in self.names or path in self.dirs

    def file_identity(self, fd: int) -> FileIdentity:
        inode = self._handle(fd).inode
        return FileIdentity(inode.number, len(inode.data))

    # -- changes -------------------------------------------------------------------------

    def create(self, path: str, mode: int = 0o600) -> int:
        if os.path.dirname(path) not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        if path in self.names or path in self.dirs:
            raise FileExistsError(errno.EEXIST, "file exists", path)
        self._change()
        inode = _Inode(self.next_inode)
        self.next_inode += 1
        self.names[path] = inode
        self._note_name(path, inode)
        return self._open(inode, writable=True)

    def open_append(self, path: str, mode: int = 0o600) -> int:
        inode = self.names.get(path)
        if inode is None:
            return self.create(path)
        return self._open(inode, writable=True)

    def open_for_sync(self, path: str) -> int:
        inode = self.names.get(path)
        if inode is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return self._open(inode, writable=False)

    def _open(self, inode: _Inode, *, writable: bool) -> int:
        fd = next(self.fds)
        self.open[fd] = _Handle(inode, writable)
        return fd

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        handle = self._handle(fd)
        assert handle.writable
        self._change()
        handle.inode.data += bytes(data)

    def truncate(self, fd: int, size_bytes: int) -> None:
        handle = self._handle(fd)
        self._change()
        del handle.inode.data[size_bytes:]

    def fsync(self, fd: int) -> None:
        inode = self._handle(fd).inode
        self._change()
        inode.synced = bytes(inode.data)

    fdatasync = fsync

    def close(self, fd: int) -> None:
        self.open.pop(fd, None)

    def rename(self, source: str, target: str) -> None:
        inode = self.names.get(source)
        if inode is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", source)
        self._change()
        del self.names[source]
        self.names[target] = inode
        operation = next(self.name_operations)
        self._note_name(source, None, operation)
        self._note_name(target, inode, operation)

    def unlink(self, path: str) -> None:
        if path not in self.names:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        self._change()
        del self.names[path]
        self._note_name(path, None)

    def is_dir(self, path: str) -> bool:
        return path in self.dirs

    def mkdir_private(self, path: str, mode: int = 0o700) -> None:
        if path in self.dirs or path in self.names:
            raise FileExistsError(errno.EEXIST, "file exists", path)
        if os.path.dirname(path) not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        self._change()
        self.dirs.add(path)
        self.durable.setdefault(path, {})
        self._note_name(path, None)

    def fsync_directory(self, path: str) -> None:
        if path not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        self._change()
        self.changes.pop(path, None)
        self.durable[path] = {
            name: inode for name, inode in self.names.items() if os.path.dirname(name) == path
        } | {name: None for name in self.dirs if name != path and os.path.dirname(name) == path}

    def lock_directory(self, path: str) -> int:
        if path not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        return -1

    def unlock_directory(self, fd: int) -> None:
        pass

    # -- the crash -------------------------------------------------------------------------

    def crash(self, mode: CrashMode = "drop", *, seed: int = 0) -> CrashFiles:
        """What survives a power loss now (see the module docstring); a fresh file system."""
        rng = random.Random(seed)
        entries: dict[str, dict[str, _Inode | None]] = {}
        for directory, durable in self.durable.items():
            current = dict(durable)
            changes = self.changes.get(directory, [])
            if mode == "prefix":
                kept = changes[: rng.randint(0, len(changes))]
            elif mode == "reorder":
                odds = rng.random()
                operations = sorted({operation for _, _, operation in changes})
                chosen = {operation for operation in operations if rng.random() < odds}
                kept = [change for change in changes if change[2] in chosen]
            else:
                kept = []
            for name, inode, _ in kept:
                if inode is None and name not in self.dirs:
                    current.pop(name, None)
                else:
                    current[name] = inode
            entries[directory] = current
        survivor = CrashFiles()
        survivor.dirs = set()
        contents: dict[int, bytes] = {}
        self._restore(
            ROOT, entries=entries, survivor=survivor, contents=contents, rng=rng, mode=mode
        )
        survivor.next_inode = self.next_inode  # inode numbers are never reused
        return survivor

    def _restore(
        self,
        directory: str,
        *,
        entries: dict[str, dict[str, _Inode | None]],
        survivor: CrashFiles,
        contents: dict[int, bytes],
        rng: random.Random,
        mode: CrashMode,
    ) -> None:
        """Rebuild ``directory`` in ``survivor`` (a name survives only if its directory does)."""
        survivor.dirs.add(directory)
        survivor.durable[directory] = {}
        for name, inode in entries.get(directory, {}).items():
            if inode is None:
                if name in entries or name in self.dirs:
                    self._restore(
                        name,
                        entries=entries,
                        survivor=survivor,
                        contents=contents,
                        rng=rng,
                        mode=mode,
                    )
                continue
            if inode.number not in contents:
                unsynced = len(inode.data) - len(inode.synced)
                extra = rng.randint(0, unsynced) if mode != "drop" and unsynced > 0 else 0
                surviving = inode.synced + bytes(
                    inode.data[len(inode.synced) : len(inode.synced) + extra]
                )
                contents[inode.number] = surviving
            restored = _Inode(
                inode.number, bytearray(contents[inode.number]), contents[inode.number]
            )
            survivor.names[name] = restored
            survivor.durable[directory][name] = restored
