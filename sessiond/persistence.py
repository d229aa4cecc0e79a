"""Persistence of one store file: load, journal, debounced snapshots, durable waits,
failure handling. Does I/O (through :mod:`sessiond.storefiles`, :mod:`sessiond.loader` and
:mod:`sessiond.journal_writer`).

Sequence numbers make the bookkeeping simple (Redis's dirty counter): every accepted
change gets the next ``accepted_seq``; ``synced_seq`` is how far the journal is fsynced,
``snapshot_seq`` how far the last durable snapshot reaches. A change is durable once
either covers it; ``durable=true`` writes wait for that (group commit: every waiter is
released by the one fsync or snapshot that covers it).

Modes: ``memory`` (no disk at all; ``durable`` is accepted and means nothing),
``debounced`` (snapshots only; a durable write forces the next snapshot), ``journal``
(default: a journal record per change, fsynced at once for durable writes and every
``journal_fsync_interval_s`` otherwise, plus debounced snapshots — at most every
``journal_snapshot_interval_s`` while the journal is healthy — that truncate it).

Snapshots are written at ``min(last_change + flush_delay_s, first_change +
flush_max_delay_s)`` from a cheap copy of the entry dict (entries are immutable), rendered
in chunks on the event loop with a yield between chunks and written by a worker thread,
so requests keep being served while a large store is saved.

Failure: a failed append/fsync abandons the journal until the next snapshot succeeds; a
failed snapshot keeps everything in memory, is retried with exponential backoff, shows
in ``stats`` and the status line, and fails waiting durable writes with ``unavailable``
(the write stays applied in memory and is written once the disk recovers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec

from sessiond.config import PersistenceConfig
from sessiond.dedup import RememberedWrite
from sessiond.entries import StoredEntry
from sessiond.journal_writer import JournalWriter
from sessiond.loader import load_store
from sessiond.snapshot import render_store
from sessiond.storefiles import (
    lock_store_directory,
    remove_leftover_temp_files,
    write_atomically,
)
from sessiond_client.errors import UnavailableError

__all__ = ["PersistenceStats", "StorePersistence"]

log = logging.getLogger("sessiond.persistence")


class PersistenceStats(msgspec.Struct, kw_only=True):
    mode: str
    path: str
    bytes_on_disk: int = 0
    journal_bytes: int = 0
    dirty: int = 0
    flush_count: int = 0
    flush_failures: int = 0
    journal_fsyncs: int = 0
    last_flush_at: float | None = None
    last_flush_duration_s: float | None = None
    last_error: str | None = None
    failing: bool = False
    loaded_syntax: str | None = None
    corrupt_moved_to: str | None = None
    journal_records_replayed: int = 0
    journal_dropped_bytes: int = 0
    journal_corruption: str | None = None


class _Waiter(msgspec.Struct):
    seq: int
    future: asyncio.Future[None]
    needs_snapshot: bool


class StorePersistence:
    """Keeps one store file and its journal in step with the in-memory entries."""

    def __init__(self, path: Path, config: PersistenceConfig) -> None:
        self.path = path
        self.config = config
        self.mode = config.durability
        self.pretty = config.snapshot_format == "pretty"
        self.stats = PersistenceStats(mode=self.mode, path=str(path))
        self.entries: dict[str, StoredEntry] = {}
        self.replayed_tokens: dict[str, RememberedWrite] = {}
        self.lock_fd: int | None = None
        self.accepted_seq = self.snapshot_seq = 0
        self.journal = JournalWriter(
            path, next_generation=1, live_tokens=list, on_failure=self._journal_failed
        )
        self.first_dirty_at: float | None = None
        self.last_change_at = 0.0
        self.force_snapshot = False
        self.retry_at: float | None = None
        self.last_snapshot_at = 0.0
        self.retry_delay_s = config.retry_initial_s
        self.waiters: list[_Waiter] = []
        self.wake_snapshot = asyncio.Event()
        self.wake_sync = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    # -- loading ---------------------------------------------------------------------

    async def open(self) -> dict[str, StoredEntry]:
        """Lock the directory, load snapshot + journal, and return the entries."""
        if self.mode == "memory":
            return self.entries
        await asyncio.to_thread(self._open_files)
        return self.entries

    def _open_files(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.lock_fd = lock_store_directory(self.path.parent)
        try:
            self._load_files()
        except BaseException:
            os.close(self.lock_fd)
            self.lock_fd = None
            raise

    def _load_files(self) -> None:
        for leftover in remove_leftover_temp_files(self.path):
            log.info("removed leftover temp file %s", leftover)
        loaded = load_store(
            self.path, repair=True, refuse_corrupt=self.config.on_corrupt == "refuse"
        )
        self.entries = loaded.entries
        self.replayed_tokens = loaded.replayed_tokens
        self.journal.next_generation = loaded.next_generation
        report, stats = loaded.report, self.stats
        stats.bytes_on_disk, stats.loaded_syntax = report.bytes_on_disk, report.loaded_syntax
        stats.corrupt_moved_to = report.corrupt_moved_to
        stats.journal_records_replayed = report.journal_records_replayed
        stats.journal_dropped_bytes = report.journal_dropped_bytes
        stats.journal_corruption = report.journal_corruption
        if report.journal_records_replayed:
            # The journal holds changes the snapshot lacks: write one soon, then drop it.
            self.first_dirty_at = self.last_change_at = time.monotonic()

    # -- recording changes -------------------------------------------------------------

    def start(self, live_tokens: Callable[[], list[tuple[str, str]]]) -> None:
        """Open the first journal segment and start the snapshot and sync tasks.

        ``live_tokens`` lists the request tokens to carry into each new segment.
        """
        self.journal.live_tokens = live_tokens
        if self.mode == "memory":
            return
        if self.mode == "journal":
            self.journal.start_segment()
        self.tasks.append(asyncio.create_task(self._snapshot_loop(), name=f"snapshot {self.path}"))
        if self.mode == "journal":
            self.tasks.append(asyncio.create_task(self._sync_loop(), name=f"sync {self.path}"))
        if self.first_dirty_at is not None:
            self.wake_snapshot.set()

    def record_change(
        self, agent_id: str, key: str, entry: StoredEntry | None, token: str | None
    ) -> None:
        """The store's change listener: journal the change and mark the store dirty."""
        if self.mode == "memory":
            return
        self.accepted_seq += 1
        now = time.monotonic()
        self.last_change_at = now
        if self.first_dirty_at is None:
            self.first_dirty_at = now
            self.wake_snapshot.set()
        self.journal.record(
            key, None if entry is None else entry.json_bytes, token, self.accepted_seq
        )

    def _journal_failed(self, error: OSError) -> None:
        self._note_failure(f"journal write failed: {error}")
        self._fail_waiters(lambda waiter: True, "the journal could not be written")
        self.force_snapshot = True
        self.wake_snapshot.set()

    # -- durability ----------------------------------------------------------------------

    @property
    def durable_seq(self) -> int:
        return max(self.journal.synced_seq, self.snapshot_seq)

    @property
    def failing(self) -> bool:
        return self.stats.failing

    async def wait_durable(self, seq: int | None = None) -> None:
        """Return once every change up to ``seq`` (default: all so far) is on disk."""
        if self.mode == "memory":
            return
        target = self.accepted_seq if seq is None else seq
        if target <= self.durable_seq:
            return
        if not self.journal.ok and self.stats.failing:
            raise UnavailableError(self._unavailable_message())
        await self._wait(target, needs_snapshot=not self.journal.ok)

    async def flush(self) -> None:
        """Write a snapshot covering every change accepted so far (the ``flush`` op)."""
        if self.mode == "memory":
            return
        if self.accepted_seq <= self.snapshot_seq:
            return
        await self._wait(self.accepted_seq, needs_snapshot=True)

    async def _wait(self, seq: int, *, needs_snapshot: bool) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(_Waiter(seq, future, needs_snapshot))
        if needs_snapshot:
            self.force_snapshot = True
            self.wake_snapshot.set()
        else:
            self.wake_sync.set()
        await future

    def _release_waiters(self) -> None:
        remaining: list[_Waiter] = []
        for waiter in self.waiters:
            covered = self.snapshot_seq if waiter.needs_snapshot else self.durable_seq
            if waiter.seq <= covered:
                if not waiter.future.done():
                    waiter.future.set_result(None)
            else:
                remaining.append(waiter)
        self.waiters = remaining

    def _fail_waiters(self, predicate: Callable[[_Waiter], bool], reason: str) -> None:
        message = (
            f"{reason}; the write is applied in memory and will be saved when the disk recovers"
        )
        remaining: list[_Waiter] = []
        for waiter in self.waiters:
            if predicate(waiter):
                if not waiter.future.done():
                    waiter.future.set_exception(UnavailableError(message))
            else:
                remaining.append(waiter)
        self.waiters = remaining

    def _unavailable_message(self) -> str:
        return (
            f"persistence of {self.path} is failing ({self.stats.last_error}); the write is "
            "applied in memory and will be saved when the disk recovers"
        )

    def _note_failure(self, message: str) -> None:
        self.stats.last_error = message
        self.stats.failing = True
        log.error("%s: %s", self.path, message)

    # -- journal sync --------------------------------------------------------------------

    def _sync_delay_s(self, now: float) -> float | None:
        """Sync at once for durable writes waiting (group commit), else every interval."""
        journal = self.journal
        if not journal.ok:
            return None
        if any(not waiter.needs_snapshot for waiter in self.waiters):
            return 0.0
        if not journal.unsynced:
            return None
        return max(0.0, journal.last_sync_at + self.config.journal_fsync_interval_s - now)

    async def _sync_loop(self) -> None:
        while True:
            await _sleep_until_due(self.wake_sync, self._sync_delay_s)
            try:
                await self._sync_once()
            except Exception:  # a bug must not stop persistence for good
                log.exception("%s: unexpected error while syncing the journal", self.path)
                self._journal_failed(OSError("journal sync failed unexpectedly"))

    async def _sync_once(self) -> None:
        if await self.journal.sync():
            self.stats.journal_fsyncs += 1
            self._release_waiters()

    # -- snapshots -------------------------------------------------------------------------

    def _snapshot_delay_s(self, now: float) -> float | None:
        """Seconds until the next snapshot is due (``None``: nothing to write).

        Due at ``min(last_change + flush_delay, first_change + flush_max_delay)``, at once
        when forced (``flush``, a durable write without a journal), but never before the
        backoff after a failure has passed. While a healthy journal holds the changes,
        snapshots are also spaced ``journal_snapshot_interval_s`` apart (until the journal
        outgrows ``journal_max_bytes``): rewriting a large store every second would cost
        disk bandwidth and stall durable writes' fsyncs behind its own, for nothing.
        """
        config = self.config
        if self.force_snapshot:
            deadline = now
        elif self.first_dirty_at is None:
            return None
        else:
            deadline = min(
                self.last_change_at + config.flush_delay_s,
                self.first_dirty_at + config.flush_max_delay_s,
            )
            journal = self.journal
            if journal.ok and journal.size_bytes < config.journal_max_bytes:
                deadline = max(deadline, self.last_snapshot_at + config.journal_snapshot_interval_s)
        if self.retry_at is not None:
            deadline = max(deadline, self.retry_at)
        return max(0.0, deadline - now)

    async def _snapshot_loop(self) -> None:
        while True:
            await _sleep_until_due(self.wake_snapshot, self._snapshot_delay_s)
            try:
                await self.snapshot_once()
            except Exception:  # a bug must not stop persistence for good
                log.exception("%s: unexpected error while writing a snapshot", self.path)
                self.retry_at = time.monotonic() + self.retry_delay_s
                self.first_dirty_at = self.first_dirty_at or time.monotonic()

    async def snapshot_once(self) -> bool:
        """Write one snapshot of the current entries; True on success."""
        seq, dirty_since = self.accepted_seq, self.first_dirty_at
        self.first_dirty_at, self.force_snapshot = None, False
        if self.mode == "journal":
            self.journal.append_pending()
            self.journal.start_segment()
        started = time.monotonic()
        try:
            size_bytes = await write_atomically(self.path, self._render(dict(self.entries)))
        except OSError as error:
            self.first_dirty_at = dirty_since or time.monotonic()
            self._snapshot_failed(error)
            return False
        self._snapshot_succeeded(seq, size_bytes, time.monotonic() - started)
        await self.journal.drop_covered()
        return True

    async def _render(self, entries: dict[str, StoredEntry]) -> AsyncIterator[bytes]:
        for chunk in render_store(entries.items(), pretty=self.pretty):
            yield chunk
            await asyncio.sleep(0)

    def _snapshot_succeeded(self, seq: int, size_bytes: int, duration_s: float) -> None:
        self.last_snapshot_at = time.monotonic()
        self.snapshot_seq = max(self.snapshot_seq, seq)
        self.retry_at, self.retry_delay_s = None, self.config.retry_initial_s
        stats = self.stats
        if stats.failing:
            log.warning("%s: persistence recovered", self.path)
        stats.failing = False
        stats.bytes_on_disk, stats.flush_count = size_bytes, stats.flush_count + 1
        stats.last_flush_at, stats.last_flush_duration_s = time.time(), duration_s
        self._release_waiters()

    def _snapshot_failed(self, error: OSError) -> None:
        self.stats.flush_failures += 1
        self.retry_at = time.monotonic() + self.retry_delay_s
        self._note_failure(f"snapshot failed: {error} (retrying in {self.retry_delay_s:.1f} s)")
        self.retry_delay_s = min(self.retry_delay_s * 2, self.config.retry_max_s)
        journal_ok = self.journal.ok
        self._fail_waiters(
            lambda waiter: waiter.needs_snapshot or not journal_ok,
            "the store file could not be written",
        )

    # -- shutdown ------------------------------------------------------------------------

    def append_pending(self) -> None:
        self.journal.append_pending()

    def snapshot_stats(self, entries: int) -> dict[str, Any]:
        self.stats.dirty = self.accepted_seq - self.snapshot_seq
        self.stats.journal_bytes = self.journal.size_bytes
        data: dict[str, Any] = msgspec.to_builtins(self.stats)
        data["entries"] = entries
        return data

    async def close(self) -> bool:
        """Stop the tasks, write a final snapshot if dirty, release files. True if clean."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ok = True
        if self.mode != "memory" and self.accepted_seq > self.snapshot_seq:
            ok = await self.snapshot_once()
        self.journal.close(snapshot_written=ok and self.mode != "memory")
        self._fail_waiters(lambda waiter: True, "the daemon is shutting down")
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
        return ok


async def _sleep_until_due(wake: asyncio.Event, delay_of: Callable[[float], float | None]) -> None:
    """Sleep until ``delay_of(now)`` reaches 0, re-evaluating whenever ``wake`` is set."""
    while True:
        delay_s = delay_of(time.monotonic())
        if delay_s == 0.0:
            return
        wake.clear()
        if delay_s is None:
            await wake.wait()
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay_s)
