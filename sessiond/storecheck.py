"""``sessiond check PATH``: validate a store file and its journal offline. Reads files only;
never writes, moves or locks anything, so it is safe on a file a daemon is serving.

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
from sessiond.journal import ReplayReport, list_segments, read_records
from sessiond.snapshot import CorruptStoreError, parse_store
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


def _check_journal(path: Path, report: StoreCheckReport) -> None:
    for _, segment in list_segments(path):
        report.journal_segments += 1
        replay = ReplayReport()
        report.journal_records += sum(1 for _ in read_records(segment.read_bytes(), replay))
        if replay.corrupt:
            report.warnings.append(f"{segment.name}: {replay.corrupt}")
        if replay.torn_bytes:
            report.warnings.append(f"{segment.name}: torn last record ({replay.torn_bytes} bytes)")


def check_store_file(path: Path) -> StoreCheckReport:
    report = StoreCheckReport(path=str(path))
    try:
        data = path.read_bytes()
    except OSError as error:
        report.error = f"cannot read: {error}"
        return report
    report.size_bytes = len(data)
    try:
        parsed = parse_store(data)
    except CorruptStoreError as error:
        report.error = str(error)
        return report
    report.ok, report.syntax, report.entries = True, parsed.syntax, len(parsed.entries)
    for key, entry in parsed.entries.items():
        report.warnings.extend(_entry_warnings(key, entry))
        if len(report.warnings) >= MAX_WARNINGS:
            report.warnings.append("(more warnings not shown)")
            break
    _check_journal(path, report)
    return report
