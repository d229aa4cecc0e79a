"""``sessiond check PATH``: validate a store file and its journal, or every store under a
state directory, offline. Reads files only;
never writes, moves or locks anything, so it is safe on a file a daemon is serving. The
entry count is what the daemon would serve: the snapshot with the journal replayed.

A file is OK when it parses (strict JSON, or JSON5) to an object; everything else the
check finds — entries that are not objects, missing ``sessionId``/``updatedAt``, known
fields of the wrong type, damaged journal records — is reported as a warning with the key,
because the daemon serves such stores as they are (unknown and odd data is preserved).

A state directory is searched for store files whatever the store path template: every
``sessions.json``, and every file that has journal segments (``<file>.journal.<n>``) beside
it, also when the file itself is missing (a store that only has a journal).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import msgspec

from sessiond.entries import StoredEntry
from sessiond.loader import load_store
from sessiond_client.entry import validate_entry_fields

__all__ = ["StoreCheckReport", "check_path", "check_store_file", "store_files_under"]

STORE_FILE_NAME = "sessions.json"
JOURNAL_SEGMENT = re.compile(r"^(?P<store>.+)\.journal\.\d+$")

MAX_WARNINGS = 50


class StoreCheckReport(msgspec.Struct, kw_only=True):
    path: str
    ok: bool = False
    error: str | None = None
    size_bytes: int = 0
    syntax: str | None = None
    entries: int = 0
    warnings: list[str] = msgspec.field(default_factory=list)
    journal_segments: int = 0
    journal_records: int = 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data

    def lines(self) -> list[str]:
        head = f"{self.path}: " + ("OK" if self.ok else f"INVALID: {self.error}")
        body = [head]
        if self.ok:
            body.append(f"  {self.entries} entries, {self.size_bytes} bytes, {self.syntax}")
        if self.journal_records:
            body.append(
                f"  journal: {self.journal_records} change(s) not yet in the store file "
                f"({self.journal_segments} segment(s)); the daemon replays them"
            )
        elif self.journal_segments:
            body.append("  journal: nothing pending")
        body.extend(f"  warning: {warning}" for warning in self.warnings)
        return body


def _entry_warnings(key: str, entry: StoredEntry) -> list[str]:
    value = entry.value()
    if not isinstance(value, dict):
        return [f"{key!r}: entry is a {type(value).__name__}, not an object"]
    warnings = [
        f"{key!r}: missing {name}" for name in ("sessionId", "updatedAt") if name not in value
    ]
    try:
        validate_entry_fields(value)
    except msgspec.ValidationError as error:
        warnings.append(f"{key!r}: {error}")
    return warnings


def check_store_file(path: Path) -> StoreCheckReport:
    """What the daemon would load from ``path`` (snapshot + journal), and what is odd in it."""
    report = StoreCheckReport(path=str(path))
    has_journal = any(
        JOURNAL_SEGMENT.match(p.name) for p in path.parent.glob(f"{path.name}.journal.*")
    )
    if path.exists() and not path.is_file():
        report.error = "not a regular file"
        return report
    if not path.exists() and not has_journal:
        report.error = "no such file"
        return report
    try:
        loaded = load_store(path, store_id=None, repair=False)
    except OSError as error:
        report.error = f"cannot read: {error}"
        return report
    load = loaded.report
    report.size_bytes, report.syntax = load.bytes_on_disk, load.loaded_syntax
    report.journal_segments = load.journal_segments
    report.journal_records = load.journal_records_replayed
    if load.corrupt_error is not None:
        report.error = load.corrupt_error
        return report
    report.ok, report.entries = True, len(loaded.entries)
    if load.journal_corruption:
        report.warnings.append(f"journal: {load.journal_corruption}")
    if load.journal_dropped_bytes:
        report.warnings.append(f"journal: torn last record ({load.journal_dropped_bytes} bytes)")
    for key, entry in loaded.entries.items():
        report.warnings.extend(_entry_warnings(key, entry))
        if len(report.warnings) >= MAX_WARNINGS:
            report.warnings.append("(more warnings not shown)")
            break
    return report


def store_files_under(state_dir: Path) -> list[Path]:
    """Every store file (or journal-only store) below ``state_dir``, sorted."""
    found: set[Path] = set()
    for directory, subdirectories, names in os.walk(state_dir):
        subdirectories.sort()
        for name in names:
            match = JOURNAL_SEGMENT.match(name)
            if match:
                found.add(Path(directory) / match.group("store"))
            elif name == STORE_FILE_NAME:
                found.add(Path(directory) / name)
    return sorted(found)


def check_path(path: Path) -> list[StoreCheckReport]:
    """A report for the store file ``path``, or for every store below the directory."""
    if path.is_dir():
        return [check_store_file(store) for store in store_files_under(path)]
    return [check_store_file(path)]
