"""File-system primitives for store files. Does I/O.

- :func:`write_atomically`: temp file in the same directory, every chunk written,
  ``fsync``, ``os.replace``, ``fsync`` of the directory, mode 0600 (Redis ``rdb.c``'s
  rename dance). A failed write or fsync discards the temp file; the next attempt
  rewrites from memory — never retry ``fsync`` on a descriptor that reported an error.
- :func:`lock_store_directory`: an exclusive ``flock`` on the store's directory, so a
  second daemon cannot serve the same files. No lock *file* is created (the original's
  ``sessions.json.lock`` is neither taken nor honoured).
- :func:`move_aside`: keep a corrupt file's bytes under a new name instead of ever
  overwriting them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import aiofiles
import aiofiles.os

__all__ = [
    "StoreLockedError",
    "fsync_directory",
    "lock_store_directory",
    "move_aside",
    "read_bytes_if_exists",
    "remove_leftover_temp_files",
    "temp_file_prefix",
    "write_atomically",
]


class StoreLockedError(OSError):
    """Another process holds the store directory's lock."""


def temp_file_prefix(path: Path) -> str:
    return f"{path.name}.sessiond-"


def lock_store_directory(directory: Path) -> int:
    """Take an exclusive, non-blocking ``flock`` on ``directory``; return the held fd."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        os.close(fd)
        raise StoreLockedError(
            error.errno, f"{directory} is locked by another sessiond process"
        ) from error
    return fd


def remove_leftover_temp_files(path: Path) -> list[Path]:
    """Delete temp files a crashed sessiond left beside ``path``; return what was removed."""
    prefix = temp_file_prefix(path)
    removed: list[Path] = []
    for name in os.listdir(path.parent):
        if name.startswith(prefix) and name.endswith(".tmp"):
            leftover = path.parent / name
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                removed.append(leftover)
    return removed


def move_aside(path: Path, reason: str) -> Path:
    """Rename ``path`` to ``<path>.<reason>-<UTC timestamp>`` keeping its bytes."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.{reason}-{stamp}")
    suffix = 1
    while target.exists():
        target = path.with_name(f"{path.name}.{reason}-{stamp}.{suffix}")
        suffix += 1
    os.rename(path, target)
    fsync_directory(path.parent)
    return target


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_bytes_if_exists(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _open_private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_CLOEXEC, 0o600)


async def write_atomically(path: Path, chunks: Iterable[bytes] | AsyncIterator[bytes]) -> int:
    """Replace ``path`` with the concatenated chunks, durably. Returns bytes written.

    Chunks are written from a worker thread (aiofiles); an async iterator lets the
    producer yield to the event loop between chunks.
    """
    temp = path.with_name(f"{temp_file_prefix(path)}{secrets.token_hex(6)}.tmp")
    size_bytes = 0
    try:
        async with aiofiles.open(temp, "xb", opener=_open_private) as file:
            if isinstance(chunks, AsyncIterator):
                async for chunk in chunks:
                    await file.write(chunk)
                    size_bytes += len(chunk)
            else:
                for chunk in chunks:
                    await file.write(chunk)
                    size_bytes += len(chunk)
            await file.flush()
            await aiofiles.os.wrap(os.fsync)(file.fileno())
        await aiofiles.os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    await aiofiles.os.wrap(fsync_directory)(path.parent)
    return size_bytes
