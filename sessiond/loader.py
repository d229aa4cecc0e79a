"""Reading a store from disk: the snapshot, then every journal segment in order. Does I/O
(reads files; with ``repair=True`` it also moves damaged files aside, never deletes them).

The daemon loads with ``repair=True`` while holding the store directory's lock. Tools that
must not change anything (``sessiond check``, the crash-test harness) load with
``repair=False`` and get the same entries the daemon would serve, plus a report.
"""

from __future__ import annotations

import logging
from pathlib import Path

import msgspec

from sessiond.dedup import RememberedWrite
from sessiond.entries import StoredEntry, entry_from_json
from sessiond.journal import (
    JournalRecord,
    ReplayReport,
    TokensRecord,
    list_segments,
    read_records,
)
from sessiond.snapshot import CorruptStoreError, parse_store
from sessiond.storefiles import move_aside, read_bytes_if_exists

__all__ = ["LoadReport", "LoadedStore", "StoreQuarantinedError", "load_store"]

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
    journal_dropped_bytes: int = 0
    journal_corruption: str | None = None


class LoadedStore(msgspec.Struct, kw_only=True):
    entries: dict[str, StoredEntry]
    replayed_tokens: dict[str, RememberedWrite]
    next_generation: int
    report: LoadReport


def _read_snapshot(path: Path) -> bytes | None:
    try:
        return read_bytes_if_exists(path)
    except IsADirectoryError as error:  # unusable like a corrupt file: moved aside the same way
        raise CorruptStoreError("the store path is a directory, not a file") from error


def _load_snapshot(
    path: Path, report: LoadReport, *, repair: bool, refuse: bool
) -> dict[str, StoredEntry]:
    try:
        data = _read_snapshot(path)
        if data is None:
            return {}
        report.bytes_on_disk = len(data)
        parsed = parse_store(data)
    except CorruptStoreError as error:
        report.corrupt_error = str(error)
        if refuse:
            raise StoreQuarantinedError(
                f"{path} is corrupt ({error}); repair or move it, then restart"
            ) from error
        if repair:
            moved = move_aside(path, "corrupt")
            report.corrupt_moved_to, report.bytes_on_disk = str(moved), 0
            log.error("%s is corrupt (%s); moved it to %s, starting empty", path, error, moved)
        return {}
    report.loaded_syntax = parsed.syntax
    return parsed.entries


class _Replayer:
    """Applies journal records to entries and collects the request tokens they carry."""

    def __init__(self, entries: dict[str, StoredEntry]) -> None:
        self.entries = entries
        self.tokens: dict[str, RememberedWrite] = {}

    def apply(self, record: JournalRecord | TokensRecord) -> None:
        if isinstance(record, TokensRecord):
            for token, key in record.tokens:
                self.tokens[token] = RememberedWrite(key, None)
            return
        entry = None if record.entry_json is None else entry_from_json(record.entry_json)
        if entry is None:
            self.entries.pop(record.key, None)
        else:
            self.entries[record.key] = entry
        if record.token is not None:
            self.tokens[record.token] = RememberedWrite(record.key, entry, deleted=entry is None)


def _note_segment(path: Path, segment: ReplayReport, report: LoadReport, *, repair: bool) -> None:
    report.journal_records_replayed += segment.records
    report.journal_dropped_bytes += segment.torn_bytes
    if segment.torn_bytes:
        log.warning("%s: dropped a torn record of %d bytes", path, segment.torn_bytes)
    if segment.corrupt is None:
        return
    where = str(move_aside(path, "corrupt")) if repair else str(path)
    report.journal_corruption = f"{path}: {segment.corrupt} (kept as {where})"
    log.error(
        "journal %s is damaged: %s; replayed %d records before it, kept it as %s",
        path,
        segment.corrupt,
        segment.records,
        where,
    )


def load_store(path: Path, *, repair: bool, refuse_corrupt: bool = False) -> LoadedStore:
    """Entries of the store at ``path``: its snapshot with every journal segment replayed."""
    report = LoadReport()
    replayer = _Replayer(_load_snapshot(path, report, repair=repair, refuse=refuse_corrupt))
    next_generation = 1
    for generation, segment_path in list_segments(path):
        next_generation = max(next_generation, generation + 1)
        report.journal_segments += 1
        segment = ReplayReport()
        for record in read_records(segment_path.read_bytes(), segment):
            replayer.apply(record)
        _note_segment(segment_path, segment, report, repair=repair)
    return LoadedStore(
        entries=replayer.entries,
        replayed_tokens=replayer.tokens,
        next_generation=next_generation,
        report=report,
    )
