"""The journal beside a snapshot: record format, segment names, and replay. Pure: no I/O
(the loader reads the files; :mod:`sessiond.journal_writer` writes them).

A segment is a file ``<store>.journal.<generation>`` holding records. Each record is a
``>III`` header (payload length, CRC-32 of the payload, CRC-32 of those 8 header bytes)
then a msgpack array payload, one of:

- ``["h", store_id, generation]`` — first in every segment: which store (its path
  relative to the state directory) and which generation it belongs to, so a segment
  copied from another store, or renamed, is refused;
- ``["e", key, entry_json, token, seq, op]`` — one change: the key's whole new value as
  compact JSON (nil for a delete), the request token and op of the write (nil if none),
  and the store's sequence number of the change;
- ``["t", [[token, key, op], ...]]`` — request tokens carried over from older segments;
- ``["s", seq, inode, size]`` — a snapshot marker: the snapshot file with that inode and
  size holds every change up to ``seq``;
- ``["g", until]`` — a gap: changes up to ``until`` were accepted while the journal could
  not record them (the disk failed), so this segment and every later one only continue a
  snapshot that holds ``until``; without one they are skipped, not replayed (a later
  change on disk without the ones before it is a store the daemon never had).

Replay: the snapshot is loaded; the newest marker that names the snapshot file on disk
says which changes it already holds, and only changes with a higher ``seq`` are applied,
in order (a record holds a whole value, so order is all that matters). This is what
makes old segments harmless whatever the timing of their deletion: a snapshot is never
overwritten by the records it covers. Without a matching marker (a store written by the
gateway, or by an older sessiond) every change is applied.

Damage: only the true end of the last segment may be torn (a crash mid-append): those
bytes are dropped with a log line. Anything else — a checksum mismatch, a header that
does not match its store, a checksum-valid record that does not decode, a cut in a
segment that is not the last — is corruption: the valid records before it are kept,
the segment is reported as corrupt (the loader moves it aside, bytes kept) and later
segments are still replayed (their records hold newer whole values).
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec

__all__ = [
    "ChangeRecord",
    "GapRecord",
    "HeaderRecord",
    "JournalRecord",
    "SegmentReport",
    "SnapshotMarker",
    "TokensRecord",
    "encode_record",
    "parse_segment_name",
    "read_segment",
    "segment_path",
]

RECORD_HEADER: Final = struct.Struct(">III")
"""Payload length, CRC-32 of the payload, CRC-32 of the first two fields."""
MAX_RECORD_BYTES: Final = 1 << 30
_LENGTH_AND_CHECKSUM: Final = struct.Struct(">II")
_HEADER_CHECKSUM: Final = struct.Struct(">I")
_encoder = msgspec.msgpack.Encoder()


class HeaderRecord(msgspec.Struct, array_like=True, tag="h"):
    """First record of a segment: the store it belongs to and its generation."""

    store_id: str
    generation: int


class ChangeRecord(msgspec.Struct, array_like=True, tag="e"):
    """One change: the key's new value (compact JSON) or ``None`` for a delete.

    ``seq`` 0 marks a record written by a sessiond that did not number changes."""

    key: str
    entry_json: bytes | None
    token: str | None = None
    seq: int = 0
    op: str | None = None


class TokensRecord(msgspec.Struct, array_like=True, tag="t"):
    """Request tokens (with their keys and ops) carried over from covered segments."""

    tokens: list[list[str | None]]
    """``[token, key, op]`` each (``op`` absent in segments of older sessiond versions)."""


class GapRecord(msgspec.Struct, array_like=True, tag="g"):
    """This segment continues only a snapshot holding every change up to ``until``."""

    until: int


class SnapshotMarker(msgspec.Struct, array_like=True, tag="s"):
    """The snapshot file with this inode and size holds every change up to ``seq``."""

    seq: int
    inode: int
    size_bytes: int


JournalRecord = HeaderRecord | ChangeRecord | TokensRecord | SnapshotMarker | GapRecord
_payload_decoder = msgspec.msgpack.Decoder(JournalRecord)


class SegmentReport(msgspec.Struct):
    """What reading one segment found."""

    records: int = 0
    valid_bytes: int = 0
    torn_bytes: int = 0
    corrupt: str | None = None


def encode_record(record: JournalRecord) -> bytes:
    payload = _encoder.encode(record)
    length_and_checksum = _LENGTH_AND_CHECKSUM.pack(len(payload), zlib.crc32(payload))
    return length_and_checksum + _HEADER_CHECKSUM.pack(zlib.crc32(length_and_checksum)) + payload


def read_segment(
    data: bytes, report: SegmentReport, *, store_id: str | None, generation: int, last: bool
) -> Iterator[JournalRecord]:
    """Decode a segment's records, stopping at a torn tail or at corruption.

    ``last``: whether this is the newest segment (the only one whose end may be torn).
    A segment must start with its header (older sessiond versions wrote none: such a
    segment is accepted as it is). ``store_id`` None (a tool that does not know where
    the state directory is) accepts the header of any store, but not a wrong generation.
    """
    for index, record in enumerate(_records(data, report)):
        if isinstance(record, HeaderRecord):
            if index != 0:
                report.corrupt = "a segment header in the middle of the segment"
                return
            wrong_store = store_id is not None and record.store_id != store_id
            if wrong_store or record.generation != generation:
                report.corrupt = (
                    f"the segment belongs to store {record.store_id!r} generation "
                    f"{record.generation}, not {store_id!r} generation {generation}"
                )
                return
            continue
        yield record
    if report.torn_bytes and not last and report.corrupt is None:
        report.corrupt = f"cut short at byte {report.valid_bytes}, but a newer segment follows it"


def _records(data: bytes, report: SegmentReport) -> Iterator[JournalRecord]:
    offset, size = 0, len(data)
    with memoryview(data) as view:
        while offset < size:
            if size - offset < RECORD_HEADER.size:
                break
            length, checksum, header_checksum = RECORD_HEADER.unpack_from(view, offset)
            start, end = offset + RECORD_HEADER.size, offset + RECORD_HEADER.size + length
            # A bad length must not pass for a torn tail (and drop every later record).
            if zlib.crc32(view[offset : offset + 8]) != header_checksum:
                report.corrupt = f"damaged header in the record at byte {offset}"
                return
            if length > MAX_RECORD_BYTES:
                report.corrupt = f"record at byte {offset} announces {length} bytes"
                return
            if end > size:
                if _valid_record_within(view, start):
                    report.corrupt = (
                        f"the record at byte {offset} runs past the end of the segment, "
                        "but valid records follow it"
                    )
                    return
                break
            payload = view[start:end]
            if zlib.crc32(payload) != checksum:
                report.corrupt = f"checksum mismatch in the record at byte {offset}"
                return
            try:
                record = _payload_decoder.decode(payload)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
                report.corrupt = f"undecodable record at byte {offset}: {error}"
                return
            report.records += 1
            report.valid_bytes = offset = end
            yield record
    report.torn_bytes = size - offset


def _valid_record_within(view: memoryview, start: int) -> bool:
    """Whether a complete, checksum-valid record starts anywhere at or after ``start``
    (then a record that seems to run past the end is damage, not a torn tail)."""
    size = len(view)
    for offset in range(start, size - RECORD_HEADER.size + 1):
        length, checksum, header_checksum = RECORD_HEADER.unpack_from(view, offset)
        end = offset + RECORD_HEADER.size + length
        if (
            end <= size
            and zlib.crc32(view[offset : offset + 8]) == header_checksum
            and zlib.crc32(view[offset + RECORD_HEADER.size : end]) == checksum
        ):
            return True
    return False


_SEGMENT_SUFFIX = re.compile(r"\.journal\.([0-9]{8,})$")  # [0-9], not \d: \d matches any script


def segment_path(store_path: Path, generation: int) -> Path:
    return store_path.with_name(f"{store_path.name}.journal.{generation:08d}")


def parse_segment_name(store_path: Path, name: str) -> int | None:
    """The generation of a segment file name of this store, or None for other names."""
    prefix = f"{store_path.name}.journal."
    if not name.startswith(prefix):
        return None
    match = _SEGMENT_SUFFIX.search(name)
    return int(match.group(1)) if match and name == prefix + match.group(1) else None
