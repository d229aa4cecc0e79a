"""Persistence of one store: the shell that runs its journal, snapshots and durable waits.
Does I/O (through :class:`~sessiond.fileops.FileOps`, the sync thread and the
snapshotter); the decisions are made by pure parts: :class:`~sessiond.durability.
DurabilityTracker` (sequence numbers, waiters) and :class:`~sessiond.schedule.
SnapshotSchedule` (when the next snapshot is due).

Modes: ``memory`` (no disk at all; ``durable`` is accepted and means nothing),
``debounced`` (snapshots only; a durable write forces the next snapshot), ``journal``
(default: a journal record per change, fsynced at once for durable writes — all durable
writes waiting share one fsync — and every ``journal_fsync_interval_s`` otherwise, plus
snapshots that let old segments go).

Segments a snapshot covers are deleted, except the newest ones within the watch history
window (``history_changes``, ``history_bytes``): after a restart, a watch can resume from
any change they hold.

A snapshot (journal mode): the entries as they are at that moment are written to a
fsynced temp file (in a forked child), a marker naming that file and the sequence number
it holds is appended to the journal and synced, the file is renamed into place and the
directory fsynced, and only then are segments it covers deleted. A crash at any point
leaves either the old snapshot with every journal record it lacks, or the new one with a
marker that makes replay skip what it holds.

Failure: a failed append/fsync turns the journal off until the next snapshot starts a
new segment; a failed snapshot keeps everything in memory, is retried with exponential
backoff, shows in ``stats`` and the status line, and fails waiting durable writes with
``unavailable`` (the write stays applied in memory and is written once the disk
recovers). Changes replayed from the journal at start count as unsaved: the next
snapshot (or ``flush``, or shutdown) writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from sessiond.config import PersistenceConfig
from sessiond.durability import DurabilityTracker
from sessiond.entries import StoredEntry
from sessiond.fileops import REAL_FILES, FileIdentity, FileOps, directory_mode_for
from sessiond.journal_writer import JournalWriter, LiveTokens
from sessiond.loader import LoadedStore, LoadReport, load_store
from sessiond.schedule import SnapshotSchedule
from sessiond.snapshotter import (
    ForkSnapshotter,
    SnapshotFile,
    Snapshotter,
    commit_snapshot,
    discard_snapshot,
    temp_file_prefix,
)
from sessiond.store import Change
from sessiond.syncthread import JobRunner, SyncThread
from sessiond_client.errors import UnavailableError

__all__ = ["PersistenceStats", "StoreLockedError", "StorePersistence"]

log = logging.getLogger("sessiond.persistence")

ROTATION_ATTEMPTS = 3
"""Syncs that may pass without a clean moment before a rotation syncs on the loop."""

_shared_sync_thread = SyncThread()


class StoreLockedError(OSError):
    """Another process holds the store directory's lock."""


class PersistenceStats(msgspec.Struct, kw_only=True):
    mode: str
    path: str
    bytes_on_disk: int = 0
    journal_bytes: int = 0
    dirty: int = 0
    seq: int = 0
    flush_count: int = 0
    flush_seconds_total: float = 0.0
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
    last_change_at: float | None = None


def _settle(future: asyncio.Future[None], error: BaseException | None = None) -> None:
    if not future.done():
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class StorePersistence:
    """Keeps one store file and its journal in step with the in-memory entries."""

    def __init__(
        self,
        path: Path,
        config: PersistenceConfig,
        *,
        store_id: str,
        fs: FileOps = REAL_FILES,
        runner: JobRunner | None = None,
        snapshotter: Snapshotter | None = None,
        load_in_thread: bool = True,
        clock: Callable[[], float] = time.monotonic,
        history_changes: int = 0,
        history_bytes: int = 0,
    ) -> None:
        self.path = path
        self.config = config
        self.mode = config.durability
        self.pretty = config.snapshot_format == "pretty"
        self.fs = fs
        self.runner: JobRunner = runner or _shared_sync_thread
        self.snapshotter: Snapshotter = snapshotter or ForkSnapshotter(fs)
        self.load_in_thread = load_in_thread
        self.clock = clock
        self.history_changes = history_changes
        self.history_bytes = history_bytes
        self.stats = PersistenceStats(mode=self.mode, path=str(path))
        self.tracker: DurabilityTracker[asyncio.Future[None]] = DurabilityTracker()
        self.schedule = SnapshotSchedule(config)
        self.journal = JournalWriter(
            fs,
            path,
            store_id,
            live_tokens=list,
            on_failure=self._journal_failed,
            file_mode=config.file_mode,
        )
        self.entries: Callable[[], Mapping[str, StoredEntry]] = dict
        self.lock_fd: int | None = None
        self.snapshot_identity: FileIdentity | None = None
        self.last_sync_at = clock()
        self.sync_idle = False
        self.rotation_attempts = 0
        self.sync_lock = asyncio.Lock()
        self.snapshot_lock = asyncio.Lock()
        self.wake_snapshot = asyncio.Event()
        self.wake_sync = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    # -- loading ---------------------------------------------------------------------

    async def open(self) -> LoadedStore:
        """Lock the directory, load snapshot + journal, and return what was loaded."""
        if self.mode == "memory":
            return LoadedStore(
                entries={},
                replayed_tokens={},
                seq=0,
                covered_seq=0,
                snapshot_identity=None,
                segments=[],
                next_generation=1,
                report=LoadReport(),
            )
        if self.load_in_thread:
            loaded = await asyncio.to_thread(self._open_files)
        else:
            loaded = self._open_files()
        self._adopt(loaded)
        return loaded

    def _open_files(self) -> LoadedStore:
        directory = str(self.path.parent)
        self.fs.make_private_dirs(directory, directory_mode_for(self.config.file_mode))
        try:
            self.lock_fd = self.fs.lock_directory(directory)
        except BlockingIOError as error:
            raise StoreLockedError(
                error.errno, f"{directory} is locked by another sessiond process"
            ) from error
        try:
            self._remove_leftover_temp_files()
            loaded = load_store(
                self.path,
                store_id=self.journal.store_id,
                repair=True,
                refuse_corrupt=self.config.on_corrupt == "refuse",
                fs=self.fs,
            )
            # Replayed changes now count as synced: make it true before building on them —
            # their content, and their names (a segment the killed process created may not
            # be durable in the directory yet; a newer segment's name could survive without
            # it).
            for segment in loaded.segments:
                fd = self.fs.open_for_sync(segment.path)
                try:
                    self.fs.fsync(fd)
                finally:
                    self.fs.close(fd)
            if loaded.segments:
                self.fs.fsync_directory(directory)
        except BaseException:
            self.fs.unlock_directory(self.lock_fd)
            self.lock_fd = None
            raise
        return loaded

    def _remove_leftover_temp_files(self) -> None:
        prefix = temp_file_prefix(self.path)
        for name in self.fs.listdir(str(self.path.parent)):
            if name.startswith(prefix) and name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.unlink(str(self.path.parent / name))
                log.info("removed leftover temp file %s", self.path.parent / name)

    def _adopt(self, loaded: LoadedStore) -> None:
        report, stats = loaded.report, self.stats
        stats.bytes_on_disk, stats.loaded_syntax = report.bytes_on_disk, report.loaded_syntax
        stats.corrupt_moved_to = report.corrupt_moved_to
        stats.journal_records_replayed = report.journal_records_replayed
        stats.journal_dropped_bytes = report.journal_dropped_bytes
        stats.journal_corruption = report.journal_corruption
        self.snapshot_identity = loaded.snapshot_identity
        self.tracker = DurabilityTracker(
            accepted_seq=loaded.seq, synced_seq=loaded.seq, snapshot_seq=loaded.covered_seq
        )
        self.journal.adopt(loaded.segments, loaded.next_generation, loaded.seq)
        if self.tracker.unsnapshotted:
            self.schedule.changed(self.clock())  # replayed changes are unsaved changes

    # -- recording changes -------------------------------------------------------------

    def start(
        self,
        entries: Callable[[], Mapping[str, StoredEntry]],
        live_tokens: LiveTokens,
        *,
        background: bool = True,
    ) -> None:
        """Start the snapshot and sync tasks. ``entries`` returns the store's live entries
        (read only when a snapshot starts); ``live_tokens`` lists the request tokens to
        carry into each new journal segment. ``background=False`` (tests) leaves syncs
        and snapshots to explicit calls."""
        self.entries = entries
        self.journal.live_tokens = live_tokens
        if self.mode == "memory" or not background:
            return
        self.tasks.append(asyncio.create_task(self._snapshot_loop(), name=f"snapshot {self.path}"))
        if self.mode == "journal":
            self.tasks.append(asyncio.create_task(self._sync_loop(), name=f"sync {self.path}"))
        if self.schedule.first_dirty_at is not None:
            self.wake_snapshot.set()

    def record_change(self, change: Change) -> None:
        """The store's change listener: journal the change and mark the store dirty."""
        self.stats.last_change_at = time.time()
        if self.mode == "memory":
            return
        self.tracker.accept(change.seq)
        if self.schedule.changed(self.clock()):
            self.wake_snapshot.set()
        if self.mode == "journal":
            if not self.journal.ok:
                self.tracker.unjournaled(change.seq)
                return
            if self.sync_idle:  # the sync loop sleeps without a deadline: give it one
                self.sync_idle = False
                self.wake_sync.set()
            entry = change.entry
            self.journal.record(
                change.seq,
                change.key,
                None if entry is None else entry.json_bytes,
                change.token,
                change.op,
            )

    def append_pending(self) -> None:
        self.journal.append_pending()

    def _journal_failed(self, error: OSError) -> None:
        # Whatever was not synced yet may be lost with the failed write or fsync.
        self.tracker.unjournaled(self.journal.synced_seq + 1, self.tracker.accepted_seq)
        self._note_failure(f"journal write failed: {error}")
        self._fail_waiters(lambda waiter: True, "the journal could not be written")
        self.schedule.force()
        self.wake_snapshot.set()

    # -- durability ----------------------------------------------------------------------

    @property
    def failing(self) -> bool:
        return self.stats.failing

    @property
    def waiters(self) -> int:
        return len(self.tracker.waiters)

    async def wait_durable(self, seq: int | None = None) -> None:
        """Return once every change up to ``seq`` (default: all so far) is on disk."""
        if self.mode == "memory":
            return
        target = self.tracker.accepted_seq if seq is None else seq
        needs_snapshot = (
            self.mode == "debounced"
            or not self.journal.ok
            or self.tracker.journal_cannot_cover(target)
        )
        if self.tracker.covered(target, needs_snapshot=False):
            return
        if needs_snapshot and self.stats.failing and not self.journal.ok:
            raise UnavailableError(self._unavailable_message())
        await self._wait(target, needs_snapshot=needs_snapshot)

    async def flush(self) -> None:
        """Write a snapshot covering every change accepted so far (the ``flush`` op)."""
        if self.mode == "memory" or not self.tracker.unsnapshotted:
            return
        await self._wait(self.tracker.accepted_seq, needs_snapshot=True)

    async def _wait(self, seq: int, *, needs_snapshot: bool) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tracker.wait(seq, future, needs_snapshot=needs_snapshot)
        if needs_snapshot:
            self.schedule.force()
            self.wake_snapshot.set()
        else:
            self.wake_sync.set()
        await future

    def _resolve(self, futures: list[asyncio.Future[None]]) -> None:
        for future in futures:
            _settle(future)

    def _fail_waiters(self, predicate: Callable[[Any], bool], reason: str) -> None:
        message = (
            f"{reason}; the write is applied in memory and will be saved when the disk recovers"
        )
        for future in self.tracker.fail(predicate):
            _settle(future, UnavailableError(message))

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
        if self.tracker.wants_sync:
            return 0.0
        if not journal.unsynced and not journal.rotation_wanted:
            self.sync_idle = True  # the next change wakes the loop (see record_change)
            return None
        return max(0.0, self.last_sync_at + self.config.journal_fsync_interval_s - now)

    async def _sync_loop(self) -> None:
        while True:
            await _sleep_until_due(self.wake_sync, self._sync_delay_s, self.clock)
            try:
                await self.sync_journal()
            except Exception:  # a bug must not stop persistence for good
                log.exception("%s: unexpected error while syncing the journal", self.path)
                self.journal.fail(OSError("journal sync failed unexpectedly"))
            # Neither a due-at-once delay nor a free lock yields: without this, a round
            # that finds nothing to do would starve every client of the event loop.
            await asyncio.sleep(0)

    async def sync_journal(self) -> bool:
        """fsync everything appended so far; True if it is durable now."""
        async with self.sync_lock:
            self.last_sync_at = self.clock()
            journal = self.journal
            job = journal.sync_job()
            if job is not None:
                try:
                    await self.runner.run(journal.run_sync, job)
                except OSError as error:
                    journal.sync_failed(job, error)
                    return False
                journal.synced(job)
                self.stats.journal_fsyncs += 1
                if journal.rotation_wanted:
                    self.rotation_attempts += 1
                    if self.rotation_attempts >= ROTATION_ATTEMPTS:
                        journal.rotate_now()
                if not journal.rotation_wanted:
                    self.rotation_attempts = 0
            # The journal knows how far it is synced, whoever synced it (a rotation syncs
            # the old segment's tail itself): the waiters it covers go now.
            self._resolve(self.tracker.journal_synced(journal.synced_seq))
            return journal.ok if job is None else True

    # -- snapshots -------------------------------------------------------------------------

    async def _snapshot_loop(self) -> None:
        while True:
            await _sleep_until_due(self.wake_snapshot, self._snapshot_delay_s, self.clock)
            try:
                await self.snapshot_once()
            except Exception:  # a bug must not stop persistence for good
                log.exception("%s: unexpected error while writing a snapshot", self.path)
                self.schedule.failed(self.clock(), self.clock())

    def _snapshot_delay_s(self, now: float) -> float | None:
        journal = self.journal
        return self.schedule.due_in(
            now,
            journal_healthy=self.mode == "journal" and journal.ok,
            journal_bytes=journal.size_bytes,
        )

    async def snapshot_once(self) -> bool:
        """Write one snapshot of the current entries; True on success."""
        async with self.snapshot_lock:
            return await self._snapshot()

    async def _snapshot(self) -> bool:
        seq = self.tracker.accepted_seq
        dirty_since = self.schedule.started()
        if self.mode == "journal":
            # After a failure, changes from now on go to a new segment (behind the gap).
            gap = self.tracker.gap
            self.journal.restart(None if gap is None else gap[1])
        started = self.clock()
        try:
            written = await self.snapshotter.write(
                self.entries(), self.path, pretty=self.pretty, mode=self.config.file_mode
            )
            await self._commit(written, seq)
        except OSError as error:
            self._snapshot_failed(error, dirty_since, seq)
            return False
        self._snapshot_succeeded(seq, written, self.clock() - started)
        await self._drop_covered_segments()
        return True

    async def _commit(self, written: SnapshotFile, seq: int) -> None:
        """Marker (journal mode), then rename + directory fsync; the temp file is removed
        on failure."""
        try:
            if self.mode == "journal":
                self.journal.mark_snapshot(seq, written.identity)
                if not await self.sync_journal():
                    raise OSError(
                        f"the journal could not record the snapshot: {self.stats.last_error}"
                    )
            await self.runner.run(commit_snapshot, self.fs, written, self.path)
        except BaseException:
            await self.runner.run(discard_snapshot, self.fs, written.temp_path)
            raise

    def _snapshot_succeeded(self, seq: int, written: SnapshotFile, duration_s: float) -> None:
        self.schedule.succeeded(self.clock())
        self.snapshot_identity = written.identity
        stats = self.stats
        if stats.failing:
            log.warning("%s: persistence recovered", self.path)
        stats.failing = False
        stats.bytes_on_disk, stats.flush_count = written.identity.size_bytes, stats.flush_count + 1
        stats.last_flush_at, stats.last_flush_duration_s = time.time(), duration_s
        stats.flush_seconds_total += duration_s
        self._resolve(self.tracker.snapshot_written(seq))

    def _snapshot_failed(self, error: OSError, dirty_since: float | None, seq: int) -> None:
        """A snapshot of the changes up to ``seq`` failed: the waiters it was to satisfy
        get ``unavailable``; those that came while it was written (later changes, or a
        flush asking for a newer snapshot) wait for the next attempt."""
        self.stats.flush_failures += 1
        delay_s = self.schedule.failed(self.clock(), dirty_since)
        self._note_failure(f"snapshot failed: {error} (retrying in {delay_s:.1f} s)")
        journal_ok = self.mode == "journal" and self.journal.ok
        self._fail_waiters(
            lambda waiter: waiter.seq <= seq and (waiter.needs_snapshot or not journal_ok),
            "the store file could not be written",
        )

    async def _drop_covered_segments(self) -> None:
        """Rotate (now if the segment is clean, else at the next clean sync), then delete
        the segments the snapshot covers."""
        journal = self.journal
        if self.mode != "journal":
            return
        journal.want_rotation()
        if not journal.unsynced and journal.rotation_wanted:
            journal.rotate_now()  # already clean: the next change starts a new segment
        covered = journal.covered_segments(
            self.tracker.snapshot_seq,
            keep_after_seq=self.tracker.accepted_seq - self.history_changes,
            keep_bytes=self.history_bytes,
        )
        if covered:
            await self.runner.run(journal.delete, covered)
            journal.forget(covered)

    # -- retention -----------------------------------------------------------------------

    @property
    def archive_path(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.pruned.jsonl")

    async def archive(self, lines: list[bytes]) -> None:
        """Append ``lines`` to the store's prune archive and make them durable (before the
        entries they hold are deleted)."""
        if self.mode == "memory" or not lines:
            return
        await self.runner.run(self._append_archive, b"".join(lines))

    def _append_archive(self, data: bytes) -> None:
        path = str(self.archive_path)
        created = not self.fs.exists(path)
        fd = self.fs.open_append(path, self.config.file_mode)
        try:
            self.fs.write(fd, data)
            self.fs.fsync(fd)
        finally:
            self.fs.close(fd)
        if created:
            self.fs.fsync_directory(str(self.path.parent))

    # -- shutdown ------------------------------------------------------------------------

    def snapshot_stats(self, entries: int) -> dict[str, Any]:
        self.stats.dirty = self.tracker.unsnapshotted
        self.stats.seq = self.tracker.accepted_seq
        self.stats.journal_bytes = self.journal.size_bytes
        data: dict[str, Any] = msgspec.to_builtins(self.stats)
        data["entries"] = entries
        return data

    async def close(self) -> bool:
        """Stop the tasks, write a final snapshot if anything is unsaved, leave a journal
        that holds nothing the snapshot holds, release files. True if all was written."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ok = True
        if self.mode != "memory":
            if self.tracker.unsnapshotted:
                ok = await self.snapshot_once()
            if self.mode == "journal":
                ok = await self._close_journal(snapshot_ok=ok) and ok
        self._fail_waiters(lambda waiter: True, "the daemon is shutting down")
        if self.lock_fd is not None:
            self.fs.unlock_directory(self.lock_fd)
            self.lock_fd = None
        return ok

    @property
    def journal_holds_changes(self) -> bool:
        """Whether every change not in the store file is synced in the journal."""
        return self.mode == "journal" and self.tracker.all_durable

    async def _close_journal(self, *, snapshot_ok: bool) -> bool:
        """After the final snapshot: one fresh segment with only the marker (the store's
        seq) and the request tokens, every older segment deleted. Without a final
        snapshot: sync what the journal has, so it still holds the changes."""
        journal = self.journal
        identity = self.snapshot_identity
        if not snapshot_ok or identity is None or self.tracker.unsnapshotted:
            synced = await self.sync_journal()
            journal.close()
            return synced and not self.tracker.unsnapshotted
        journal.close()
        journal.mark_snapshot(self.tracker.snapshot_seq, identity)
        trimmed = await self.sync_journal()
        journal.close()
        if trimmed:  # the new marker is durable: nothing older is needed
            old = journal.covered_segments(self.tracker.snapshot_seq)
            await self.runner.run(journal.delete, old)
            journal.forget(old)
        return True


async def _sleep_until_due(
    wake: asyncio.Event, delay_of: Callable[[float], float | None], clock: Callable[[], float]
) -> None:
    """Sleep until ``delay_of(now)`` reaches 0, re-evaluating whenever ``wake`` is set.

    ``asyncio.timeout``, not ``wait_for``: on Python 3.11 ``wait_for`` loses a
    cancellation that arrives as the event is set, and shutdown then waits forever.
    """
    while True:
        delay_s = delay_of(clock())
        if delay_s == 0.0:
            return
        wake.clear()
        if delay_s is None:
            await wake.wait()
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await wake.wait()
