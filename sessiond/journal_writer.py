"""Writing one store's journal: segments, batched appends, group-commit fsync, rotation.
Does I/O (``write``/``fsync`` on segment files; fsync runs in a worker thread).

The record format and replay live in :mod:`sessiond.journal`; when to sync and what a
failure means for waiting writes is decided by :class:`sessiond.persistence.StorePersistence`,
which this class reports failures to through ``on_failure``. After a failure the writer
stays off (``ok`` is false) until :meth:`start_segment` succeeds again at the next
snapshot: appending after a failed write could leave a gap in the middle of a segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from sessiond.journal import (
    JournalRecord,
    JournalSegment,
    TokensRecord,
    encode_record,
    list_segments,
    segment_path,
)
from sessiond.storefiles import fsync_directory

__all__ = ["JournalWriter"]


class JournalWriter:
    """The open segments of one store's journal and the records not yet written to them."""

    def __init__(
        self,
        store_path: Path,
        *,
        next_generation: int,
        live_tokens: Callable[[], list[tuple[str, str]]],
        on_failure: Callable[[OSError], None],
    ) -> None:
        self.store_path = store_path
        self.next_generation = next_generation
        self.live_tokens = live_tokens
        self.on_failure = on_failure
        self.segments: list[JournalSegment] = []
        self.pending = bytearray()
        self.pending_seq = 0
        self.append_scheduled = False
        self.ok = False
        self.needs_dir_sync = False
        self.appended_seq = 0
        self.synced_seq = 0
        self.last_sync_at = time.monotonic()
        self.segment_lock = asyncio.Lock()

    @property
    def size_bytes(self) -> int:
        return sum(segment.size_bytes for segment in self.segments)

    @property
    def unsynced(self) -> bool:
        return self.appended_seq > self.synced_seq or bool(self.pending)

    def fail(self, error: OSError) -> None:
        self.ok = False
        self.pending = bytearray()
        self.on_failure(error)

    def start_segment(self) -> None:
        """Switch appends to a new segment, carrying the remembered request tokens into it."""
        generation = self.next_generation
        try:
            segment = JournalSegment(segment_path(self.store_path, generation), generation)
        except OSError as error:
            self.fail(error)
            return
        self.next_generation += 1
        self.segments.append(segment)
        self.ok = True
        self.needs_dir_sync = True
        tokens = self.live_tokens()
        if tokens:
            self.pending += encode_record(TokensRecord(tokens))
            self._schedule_append()

    def record(self, key: str, entry_json: bytes | None, token: str | None, seq: int) -> None:
        """Queue change number ``seq``; it is written at the end of this loop tick."""
        if not self.ok:
            return
        self.pending += encode_record(JournalRecord(key, entry_json, token))
        self.pending_seq = seq
        self._schedule_append()

    def _schedule_append(self) -> None:
        if not self.append_scheduled:
            self.append_scheduled = True
            asyncio.get_running_loop().call_soon(self.append_pending)

    def append_pending(self) -> None:
        """Write every queued record with one ``write()``.

        Runs at the end of the loop tick that queued them, and earlier when the server
        is about to send replies, so a write is never acknowledged before its record
        reached the kernel (a kill -9 then cannot lose it).
        """
        self.append_scheduled = False
        if not self.ok or not self.pending:
            return
        data, self.pending = self.pending, bytearray()
        try:
            self.segments[-1].append(data)
        except OSError as error:
            self.fail(error)
            return
        self.appended_seq = max(self.appended_seq, self.pending_seq)

    async def sync(self) -> bool:
        """fsync every open segment (and the directory after a rotation); True on success.

        Everything appended before the call is durable when it returns True.
        """
        self.append_pending()
        target = self.appended_seq
        async with self.segment_lock:
            try:
                for segment in [segment for segment in self.segments if not segment.closed]:
                    await asyncio.to_thread(segment.fsync)
                if self.needs_dir_sync:
                    await asyncio.to_thread(fsync_directory, self.store_path.parent)
                    self.needs_dir_sync = False
            except OSError as error:
                # Never fsync the same descriptor again after an error: the writer stays
                # off until the next snapshot starts a fresh segment.
                self.fail(error)
                return False
        self.last_sync_at = time.monotonic()
        self.synced_seq = max(self.synced_seq, target)
        return True

    async def drop_covered(self) -> None:
        """Delete every segment but the current one: a durable snapshot now covers them."""
        async with self.segment_lock:
            covered, self.segments = self.segments[:-1], self.segments[-1:]
            for segment in covered:
                segment.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(segment.path)
        oldest_live = self.segments[0].generation if self.segments else self.next_generation
        for generation, path in list_segments(self.store_path):
            if generation < oldest_live:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def close(self, *, snapshot_written: bool) -> None:
        """Close the segments; sync them first unless a final snapshot covers them."""
        if not snapshot_written and self.ok:
            self.append_pending()
            with contextlib.suppress(OSError):
                for segment in self.segments:
                    segment.fsync()
        for segment in self.segments:
            segment.close()
            if snapshot_written and segment.size_bytes == 0:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(segment.path)
