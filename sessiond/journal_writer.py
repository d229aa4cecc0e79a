"""Writing one store's journal: segments, batched appends, sync jobs, rotation, deletion.
Does I/O through :class:`~sessiond.fileops.FileOps` (appends on the event loop; the sync
job it hands out runs on the sync thread).

The record format and replay live in :mod:`sessiond.journal`; when to sync and what a
failure means for waiting writes is decided by the persistence shell, which this class
reports failures to through ``on_failure``.

- Appends are batched: records queued during one loop tick are written with one
  ``write()`` at its end, and earlier when the server is about to send replies, so a
  change is never acknowledged before its record reached the kernel (a kill -9 then
  cannot lose it).
- The current segment is created on the first append (a store that is only read never
  creates one), with its header and the request tokens still remembered.
- Rotation happens only when the current segment is *clean* (every byte appended is
  fsynced): a newer segment then never has data while an older one has an unsynced
  tail, so after any crash only the end of the last segment can be torn.
- Old segments are deleted once a durable snapshot holds every change they contain.
- After a failed write or sync the writer stays off (``ok`` is false) until
  :meth:`restart` at the next snapshot: appending after a failure could leave a gap,
  and a descriptor whose fsync failed is never fsynced again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import msgspec

from sessiond.fileops import FileIdentity, FileOps
from sessiond.journal import (
    ChangeRecord,
    GapRecord,
    HeaderRecord,
    SnapshotMarker,
    TokensRecord,
    encode_record,
    segment_path,
)
from sessiond.loader import SegmentOnDisk

__all__ = ["JournalWriter", "SyncJob"]

LiveTokens = Callable[[], list[tuple[str, str, str | None]]]
MAX_TAKEN_NAMES = 16
log = logging.getLogger("sessiond.journal")


class _OpenSegment:
    __slots__ = ("fd", "generation", "marker_seq", "max_seq", "path", "size_bytes", "synced_bytes")

    def __init__(self, fd: int, generation: int, path: str, size_bytes: int) -> None:
        self.fd = fd
        self.generation = generation
        self.path = path
        self.size_bytes = size_bytes
        self.synced_bytes = 0
        self.max_seq = 0
        self.marker_seq = 0

    def closed(self) -> SegmentOnDisk:
        return SegmentOnDisk(
            self.generation, self.path, self.max_seq, self.marker_seq, self.size_bytes
        )


class SyncJob(msgspec.Struct, frozen=True):
    """What one sync must make durable: the segment (its descriptor and the bytes
    appended so far), whether its directory entry is new, and the change seq reached."""

    fd: int
    size_bytes: int
    directory: str | None
    seq: int


class JournalWriter:
    """The current segment of one store's journal, the closed ones, and queued records."""

    def __init__(
        self,
        fs: FileOps,
        store_path: Path,
        store_id: str,
        *,
        live_tokens: LiveTokens,
        on_failure: Callable[[OSError], None],
        file_mode: int = 0o600,
    ) -> None:
        self.fs = fs
        self.file_mode = file_mode
        self.store_path = store_path
        self.store_id = store_id
        self.live_tokens = live_tokens
        self.on_failure = on_failure
        self.next_generation = 1
        self.closed: list[SegmentOnDisk] = []
        self.current: _OpenSegment | None = None
        self.pending = bytearray()
        self.pending_seq = 0
        self.append_scheduled = False
        self.on_pending: Callable[[JournalWriter], None] | None = None
        """Told when records start waiting (the registry appends them before replies)."""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ok = True
        self.needs_dir_sync = False
        self.appended_seq = 0
        self.synced_seq = 0
        self.rotation_wanted = False

    def adopt(self, segments: list[SegmentOnDisk], next_generation: int, seq: int) -> None:
        """Take over the segments found at load (fsynced by the loader's caller)."""
        self.closed = list(segments)
        self.next_generation = next_generation
        self.appended_seq = self.synced_seq = seq

    @property
    def size_bytes(self) -> int:
        """Bytes of journal on disk (and queued): every segment not yet deleted."""
        current = self.current.size_bytes if self.current is not None else 0
        return current + len(self.pending) + sum(segment.size_bytes for segment in self.closed)

    @property
    def unsynced(self) -> bool:
        """Bytes queued or written that no completed sync covers (markers included)."""
        current = self.current
        return bool(self.pending) or (
            current is not None and current.size_bytes > current.synced_bytes
        )

    def fail(self, error: OSError) -> None:
        self.ok = False
        self.pending = bytearray()
        self.on_failure(error)

    # -- appending -----------------------------------------------------------------------

    def record(
        self, seq: int, key: str, entry_json: bytes | None, token: str | None, op: str | None
    ) -> None:
        """Queue change number ``seq``; it is written at the end of this loop tick."""
        if not self.ok:
            return
        self.pending += encode_record(ChangeRecord(key, entry_json, token, seq, op))
        self.pending_seq = seq
        self._schedule_append()

    def mark_snapshot(self, seq: int, identity: FileIdentity) -> None:
        """Record that the snapshot file ``identity`` holds every change up to ``seq``."""
        self.pending += encode_record(SnapshotMarker(seq, identity.inode, identity.size_bytes))
        self.append_pending()
        if self.ok and self.current is not None:
            self.current.marker_seq = max(self.current.marker_seq, seq)

    def _schedule_append(self) -> None:
        if not self.append_scheduled:
            self.append_scheduled = True
            if self.on_pending is not None:
                self.on_pending(self)
            # The loop is looked up once: get_running_loop() costs a getpid() system call.
            loop = self.loop
            if loop is None:
                loop = self.loop = asyncio.get_running_loop()
            loop.call_soon(self.append_pending)

    def append_pending(self) -> None:
        """Write every queued record with one ``write()`` (creating the segment if needed)."""
        self.append_scheduled = False
        if not self.ok or not self.pending:
            return
        data, self.pending = self.pending, bytearray()
        try:
            segment = self.current or self._start_segment()
            start = segment.size_bytes
            try:
                self.fs.write(segment.fd, data)
            except OSError:
                # Cut back what a partial write left, so no torn record sits mid-segment.
                with contextlib.suppress(OSError):
                    self.fs.truncate(segment.fd, start)
                raise
        except OSError as error:
            self.fail(error)
            return
        segment.size_bytes += len(data)
        if self.pending_seq:
            segment.max_seq = max(segment.max_seq, self.pending_seq)
            self.appended_seq = max(self.appended_seq, self.pending_seq)

    def _start_segment(self) -> _OpenSegment:
        fd, generation, path = self._create_next()
        head = encode_record(HeaderRecord(self.store_id, generation))
        tokens = self.live_tokens()
        if tokens:
            head += encode_record(TokensRecord([list(token) for token in tokens]))
        segment = _OpenSegment(fd, generation, path, 0)
        self.current = segment
        self.needs_dir_sync = True
        self.fs.write(fd, head)
        segment.size_bytes = len(head)
        return segment

    def _create_next(self) -> tuple[int, int, str]:
        """A new segment file with the next free generation number. A name already taken
        (by something planted there) is never opened: the next number is tried."""
        for _ in range(MAX_TAKEN_NAMES):
            generation = self.next_generation
            self.next_generation += 1
            path = str(segment_path(self.store_path, generation))
            try:
                return self.fs.create(path, self.file_mode), generation, path
            except FileExistsError:
                log.warning("%s exists though no segment of this store has that name", path)
        raise FileExistsError(f"{MAX_TAKEN_NAMES} journal segment names in a row are taken")

    # -- syncing -------------------------------------------------------------------------

    def sync_job(self) -> SyncJob | None:
        """What a sync must cover now (None: nothing unsynced). Appends first."""
        self.append_pending()
        if not self.ok or self.current is None:
            return None
        if not self.unsynced and not self.needs_dir_sync:
            return None
        directory = str(self.store_path.parent) if self.needs_dir_sync else None
        self.needs_dir_sync = False
        return SyncJob(self.current.fd, self.current.size_bytes, directory, self.appended_seq)

    def run_sync(self, job: SyncJob) -> None:
        """The blocking part of a sync (runs on the sync thread)."""
        self.fs.fdatasync(job.fd)
        if job.directory is not None:
            self.fs.fsync_directory(job.directory)

    def synced(self, job: SyncJob) -> None:
        """``job`` completed: everything it covered is durable. Rotates if asked and clean."""
        self.synced_seq = max(self.synced_seq, job.seq)
        current = self.current
        if current is not None and current.fd == job.fd:
            current.synced_bytes = max(current.synced_bytes, job.size_bytes)
        if self.rotation_wanted and not self.unsynced and not self.needs_dir_sync:
            self._close_current()

    def rotate_now(self) -> None:
        """Rotate even though appends never pause: sync the current segment's tail on the
        calling thread first (a short stall, only when clean moments do not come)."""
        job = self.sync_job()
        if job is not None:
            try:
                self.run_sync(job)
            except OSError as error:
                self.sync_failed(job, error)
                return
            self.synced(job)
        if self.ok:
            self._close_current()

    def sync_failed(self, job: SyncJob, error: OSError) -> None:
        if job.directory is not None:
            self.needs_dir_sync = True
        self.fail(error)

    def _close_current(self) -> None:
        segment, self.current = self.current, None
        self.rotation_wanted = False
        if segment is None:
            return
        self.closed.append(segment.closed())
        with contextlib.suppress(OSError):
            self.fs.close(segment.fd)

    # -- snapshots and recovery ------------------------------------------------------------

    def restart(self, gap_until: int | None) -> None:
        """After a failure: abandon the current segment (never synced again) and append
        to a new one from now on. ``gap_until``: the last change the journal lost; the new
        segment says it continues only a snapshot that holds it."""
        if self.ok:
            return
        segment, self.current = self.current, None
        if segment is not None:
            self.closed.append(segment.closed())
            with contextlib.suppress(OSError):
                self.fs.close(segment.fd)
        self.ok = True
        self.needs_dir_sync = False
        if gap_until is not None:
            self.pending += encode_record(GapRecord(gap_until))

    def covered_segments(
        self, snapshot_seq: int, *, keep_after_seq: int = 0, keep_bytes: int = 0
    ) -> list[SegmentOnDisk]:
        """Closed segments a durable snapshot at ``snapshot_seq`` makes unnecessary.

        Kept anyway: the segment with the newest snapshot marker (it carries the store's
        ``seq`` across a restart) unless the current segment has a newer one, and the
        newest segments holding changes after ``keep_after_seq`` within ``keep_bytes`` (the
        history a watch can resume from after a restart)."""
        newest_marker = max(
            [segment.marker_seq for segment in self.closed]
            + [self.current.marker_seq if self.current is not None else 0]
        )
        marker_segment = next(
            (s for s in reversed(self.closed) if s.marker_seq == newest_marker > 0), None
        )
        keep: set[int] = set()
        if marker_segment is not None and not (
            self.current is not None and self.current.marker_seq == newest_marker
        ):
            keep.add(id(marker_segment))
        history_bytes = self.current.size_bytes if self.current is not None else 0
        for segment in reversed(self.closed):
            history_bytes += segment.size_bytes
            if segment.max_seq <= keep_after_seq or history_bytes > keep_bytes:
                break
            keep.add(id(segment))
        return [s for s in self.closed if s.max_seq <= snapshot_seq and id(s) not in keep]

    def delete(self, segments: list[SegmentOnDisk]) -> None:
        """Unlink covered segments (runs on the sync thread). No directory fsync: a
        segment that comes back after a crash is covered by the snapshot's marker."""
        for segment in segments:
            with contextlib.suppress(FileNotFoundError):
                self.fs.unlink(segment.path)

    def forget(self, segments: list[SegmentOnDisk]) -> None:
        self.closed = [segment for segment in self.closed if segment not in segments]

    def want_rotation(self) -> None:
        """Start a new segment at the next clean moment (after a sync covering everything)."""
        if self.current is not None:
            self.rotation_wanted = True

    def close(self) -> None:
        """Release the current segment's descriptor (after the final sync or snapshot)."""
        segment, self.current = self.current, None
        if segment is not None:
            self.closed.append(segment.closed())
            with contextlib.suppress(OSError):
                self.fs.close(segment.fd)
