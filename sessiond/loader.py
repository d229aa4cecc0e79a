"""Reading a store from disk: the snapshot, then the journal changes it does not hold.
Does I/O through :class:`~sessiond.fileops.FileOps` (reads; with ``repair=True`` it also
moves damaged files aside, never deletes them).

The daemon loads with ``repair=True`` while holding the store directory's lock. Tools that
must not change anything (``sessiond check``, the crash tests' checker) load with
``repair=False`` and get the same entries the daemon would serve, plus a report.

The rules (see :mod:`sessiond.journal` for the record format):

- the snapshot is the gateway's ``sessions.json``; a file that does not parse is moved
  aside (``on_corrupt = "move-aside"``) or makes the store unavailable (``"refuse"``);
- the newest snapshot marker naming the snapshot file on disk (inode and size) gives the
  sequence number the snapshot holds; changes up to it are skipped, later ones applied
  in order; without such a marker every change is applied;
- a segment with damage other than a torn end of the last segment is moved aside as
  ``...corrupt-<time>`` (bytes kept); its valid records before the damage and every
  later segment are still applied; the report says what happened;
- a segment written after the journal had failed (its gap record) continues only a
  snapshot that holds the changes the journal lost: without one, it and every later
  segment are skipped (unpromised changes lost, never a store with a hole in it);
- request tokens of every change (applied or covered) and of carry-over records are
  remembered, so a write retried across a restart is still applied once;
- anything that is not a regular file where a store file or segment belongs is refused
  (:class:`~sessiond.fileops.NotRegularFileError`): the store does not load.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import msgspec

from sessiond.dedup import RememberedWrite
from sessiond.entries import StoredEntry, entry_from_json
from sessiond.fileops import REAL_FILES, FileIdentity, FileOps
from sessiond.journal import (
    ChangeRecord,
    GapRecord,
    JournalRecord,
    SegmentReport,
    SnapshotMarker,
    TokensRecord,
    parse_segment_name,
    read_segment,
)
from sessiond.snapshot import CorruptStoreError, parse_store
from sessiond.store import Change

__all__ = [
    "LoadReport",
    "LoadedStore",
    "SegmentOnDisk",
    "StoreQuarantinedError",
    "load_store",
    "move_aside",
]

log = logging.getLogger("sessiond.loader")


class StoreQuarantinedError(Exception):
    """The store file is corrupt and config says to refuse requests until it is repaired."""


class LoadReport(msgspec.Struct, kw_only=True):
    bytes_on_disk: int = 0
    loaded_syntax: str | None = None
    corrupt_error: str | None = None
    corrupt_moved_to: str | None = None
    journal_segments: int = 0
    journal_records_replayed: int = 0
    journal_records_covered: int = 0
    journal_records_skipped: int = 0
    """Changes after a gap (the journal had failed) that no snapshot on disk continues."""
    journal_dropped_bytes: int = 0
    journal_corruption: str | None = None


class SegmentOnDisk(msgspec.Struct, frozen=True):
    """A closed journal segment: its generation, path, highest change seq, highest
    snapshot marker seq (0: none) and size."""

    generation: int
    path: str
    max_seq: int
    marker_seq: int = 0
    size_bytes: int = 0


class LoadedStore(msgspec.Struct, kw_only=True):
    entries: dict[str, StoredEntry]
    replayed_tokens: dict[str, RememberedWrite]
    seq: int
    """The store's sequence number: the highest change number seen (or covered)."""
    covered_seq: int
    """How far the snapshot on disk reaches (per its marker; 0 without one)."""
    snapshot_identity: FileIdentity | None
    segments: list[SegmentOnDisk]
    next_generation: int
    report: LoadReport
    history: list[Change] = msgspec.field(default_factory=list)
    """The changes the journal still holds (applied or covered), in order: what a watch
    can start from after a restart."""


def move_aside(fs: FileOps, path: str, reason: str) -> str:
    """Rename ``path`` to ``<path>.<reason>-<UTC timestamp>`` keeping its bytes.

    No directory fsync: if the rename is lost in a crash, the damaged file is found
    and moved aside again at the next start, and nothing else depends on it.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = f"{path}.{reason}-{stamp}"
    suffix = 1
    while fs.exists(target):
        target = f"{path}.{reason}-{stamp}.{suffix}"
        suffix += 1
    fs.rename(path, target)
    return target


def _load_snapshot(
    fs: FileOps, path: str, report: LoadReport, *, repair: bool, refuse: bool
) -> dict[str, StoredEntry]:
    data = fs.read_file(path)
    if data is None:
        return {}
    report.bytes_on_disk = len(data)
    try:
        parsed = parse_store(data)
    except CorruptStoreError as error:
        report.corrupt_error = str(error)
        if refuse:
            raise StoreQuarantinedError(
                f"{path} is corrupt ({error}); repair or move it, then restart"
            ) from error
        if repair:
            moved = move_aside(fs, path, "corrupt")
            report.corrupt_moved_to, report.bytes_on_disk = moved, 0
            log.error("%s is corrupt (%s); moved it to %s, starting empty", path, error, moved)
        return {}
    report.loaded_syntax = parsed.syntax
    return parsed.entries


class _Change(msgspec.Struct, frozen=True, gc=False):
    seq: int
    key: str
    entry: StoredEntry | None
    token: str | None
    op: str | None


def _is_token_entry(entry: list[str | None]) -> bool:
    """``[token, key]`` or ``[token, key, op]``: token and key strings, op a string or nil."""
    return len(entry) in (2, 3) and isinstance(entry[0], str) and isinstance(entry[1], str)


class _Segment:
    """One segment's decoded content."""

    def __init__(self, generation: int, path: str, size_bytes: int) -> None:
        self.generation = generation
        self.path = path
        self.size_bytes = size_bytes
        self.report = SegmentReport()
        self.changes: list[_Change] = []
        self.markers: list[SnapshotMarker] = []
        self.tokens: list[list[str | None]] = []
        self.gap_until = 0

    def take(self, records: list[JournalRecord], next_seq: int) -> int:
        """Keep the records (numbering legacy changes from ``next_seq``); the next seq."""
        for record in records:
            if isinstance(record, SnapshotMarker):
                self.markers.append(record)
            elif isinstance(record, GapRecord):
                self.gap_until = max(self.gap_until, record.until)
            elif isinstance(record, TokensRecord):
                # An unusable token is skipped: tokens only answer retries, never hold data.
                self.tokens.extend(entry for entry in record.tokens if _is_token_entry(entry))
            elif isinstance(record, ChangeRecord):
                try:
                    entry = (
                        None if record.entry_json is None else entry_from_json(record.entry_json)
                    )
                except (ValueError, RecursionError) as error:
                    self.report.corrupt = f"unusable record for key {record.key!r}: {error}"
                    break
                seq = record.seq or next_seq
                next_seq = max(next_seq, seq + 1)
                self.changes.append(_Change(seq, record.key, entry, record.token, record.op))
        return next_seq

    @property
    def max_seq(self) -> int:
        return max((change.seq for change in self.changes), default=0)

    def on_disk(self) -> SegmentOnDisk:
        marker_seq = max((marker.seq for marker in self.markers), default=0)
        return SegmentOnDisk(self.generation, self.path, self.max_seq, marker_seq, self.size_bytes)


def _read_segments(
    fs: FileOps, path: Path, store_id: str | None, report: LoadReport, *, repair: bool
) -> list[_Segment]:
    directory = str(path.parent)
    try:
        names = fs.listdir(directory)
    except FileNotFoundError:
        return []
    found = sorted(
        (generation, f"{directory}/{name}")
        for name in names
        if (generation := parse_segment_name(path, name)) is not None
    )
    segments: list[_Segment] = []
    next_seq = 1
    for index, (generation, segment_path) in enumerate(found):
        data = fs.read_file(segment_path) or b""
        segment = _Segment(generation, segment_path, len(data))
        records = list(
            read_segment(
                data,
                segment.report,
                store_id=store_id,
                generation=generation,
                last=index == len(found) - 1,
            )
        )
        next_seq = segment.take(records, next_seq)
        _note_segment(fs, segment, report, repair=repair)
        segments.append(segment)
    return segments


def _note_segment(fs: FileOps, segment: _Segment, report: LoadReport, *, repair: bool) -> None:
    seg = segment.report
    report.journal_segments += 1
    if seg.corrupt is None:
        report.journal_dropped_bytes += seg.torn_bytes
        if seg.torn_bytes:
            log.warning("%s: dropped a torn record of %d bytes", segment.path, seg.torn_bytes)
        return
    where = move_aside(fs, segment.path, "corrupt") if repair else segment.path
    report.journal_corruption = f"{segment.path}: {seg.corrupt} (kept as {where})"
    log.error(
        "journal %s is damaged: %s; kept %d changes before the damage, kept the file as %s",
        segment.path,
        seg.corrupt,
        len(segment.changes),
        where,
    )
    if repair:
        segment.path = ""  # no longer a segment of this store


def load_store(
    path: Path,
    *,
    store_id: str | None,
    repair: bool,
    refuse_corrupt: bool = False,
    fs: FileOps = REAL_FILES,
) -> LoadedStore:
    """Entries of the store at ``path``: its snapshot with the journal replayed."""
    report = LoadReport()
    entries = _load_snapshot(fs, str(path), report, repair=repair, refuse=refuse_corrupt)
    identity = fs.identity(str(path))
    segments = _read_segments(fs, path, store_id, report, repair=repair)
    covered = max(
        (
            marker.seq
            for segment in segments
            for marker in segment.markers
            if identity is not None and (marker.inode, marker.size_bytes) == identity
        ),
        default=0,
    )
    tokens: dict[str, RememberedWrite] = {}
    history: list[Change] = []
    seq = covered
    behind_gap = False
    for segment in segments:
        seq = max([seq, *(change.seq for change in segment.changes)])
        behind_gap = behind_gap or segment.gap_until > covered
        if behind_gap:  # continues a snapshot that is not on disk: a store never seen
            report.journal_records_skipped += len(segment.changes)
            continue
        for token, key, *op in segment.tokens:
            assert token is not None and key is not None  # checked by _is_token_entry
            tokens[token] = RememberedWrite(key, None, op=op[0] if op else None)
        for change in segment.changes:
            history.append(Change(change.seq, change.key, change.entry, change.token, change.op))
            if change.seq > covered:
                report.journal_records_replayed += 1
                if change.entry is None:
                    entries.pop(change.key, None)
                else:
                    entries[change.key] = change.entry
            else:
                report.journal_records_covered += 1
            if change.token is not None:
                tokens[change.token] = RememberedWrite(
                    change.key,
                    change.entry,
                    deleted=change.entry is None,
                    op=change.op,
                    seq=change.seq,
                )
        seq = max([seq, *(marker.seq for marker in segment.markers)])
    return LoadedStore(
        entries=entries,
        replayed_tokens=tokens,
        seq=seq,
        covered_seq=covered,
        snapshot_identity=identity,
        segments=[segment.on_disk() for segment in segments if segment.path],
        next_generation=max((segment.generation for segment in segments), default=0) + 1,
        report=report,
        history=sorted(history, key=lambda change: change.seq),
    )
