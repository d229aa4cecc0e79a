"""``sessiond check PATH``: validate a store file and its journal offline. Reads files only;
never writes, moves or locks anything, so it is safe on a file a daemon is serving. The
entry count is what the daemon would serve: the snapshot with the journal replayed.

A file is OK when it parses (strict JSON, or JSON5) to an object; everything else the
check finds — entries that are not objects, missing ``sessionId``/``updatedAt``, known
fields of the wrong type, damaged journal records — is reported as a warning with the key,
because the daemon serves such stores as they are (unknown and odd data is preserved).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from sessiond.entries import StoredEntry
from sessiond.loader import load_store
from sessiond_client.entry import validate_entry_fields

__all__ = ["StoreCheckReport", "check_store_file"]

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
        if self.journal_segments:
            body.append(
                f"  journal: {self.journal_segments} segment(s), "
                f"{self.journal_records} record(s) not yet in the snapshot"
            )
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
    if not path.is_file():
        report.error = "no such file" if not path.exists() else "not a regular file"
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
