"""The append-only journal beside a snapshot: record format, segment files, replay. Does I/O
(file append, fsync, read); the record codec functions are pure.

Every accepted change is one record: a ``>III`` header (payload length, CRC-32 of the
payload, CRC-32 of those 8 header bytes) then a msgpack payload
``["e", key, entry_json, token]``: the entry's compact JSON (bytes), or nil for a delete,
and the request token of the write (nil if none). A record holds the entry's whole new
value, not the operation, so replaying a record twice, or replaying records a snapshot
already covers, is harmless: the last record of a key wins. A segment may start with a
``["t", [[token, key], ...]]`` record carrying the request tokens still remembered from
earlier segments (see :mod:`sessiond.dedup`).

Segments are files ``<store>.journal.<generation>``. When a snapshot starts, the store
switches to a new segment; once the snapshot is durable every older segment is covered
and deleted. At start-up all segments are replayed in generation order on top of the
snapshot. A record cut short by a crash (the torn tail) is dropped silently except for
a log line; a checksum mismatch is corruption: replay stops there, reports it, and the
segment is kept aside for inspection.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec

__all__ = [
    "JournalRecord",
    "JournalSegment",
    "ReplayReport",
    "TokensRecord",
    "encode_record",
    "list_segments",
    "read_records",
    "segment_path",
]

RECORD_HEADER: Final = struct.Struct(">III")
"""Payload length, CRC-32 of the payload, CRC-32 of the first two fields."""
MAX_RECORD_BYTES: Final = 1 << 30
_encoder = msgspec.msgpack.Encoder()


class JournalRecord(msgspec.Struct, array_like=True, tag="e"):
    """One change: the key's new value (compact JSON) or ``None`` for a delete."""

    key: str
    entry_json: bytes | None
    token: str | None = None


class TokensRecord(msgspec.Struct, array_like=True, tag="t"):
    """Request tokens (with their keys) carried over from covered segments."""

    tokens: list[tuple[str, str]]


_payload_decoder = msgspec.msgpack.Decoder(JournalRecord | TokensRecord)


class ReplayReport(msgspec.Struct):
    """What reading one segment found."""

    records: int = 0
    valid_bytes: int = 0
    torn_bytes: int = 0
    corrupt: str | None = None


def encode_record(record: JournalRecord | TokensRecord) -> bytes:
    payload = _encoder.encode(record)
    length_and_checksum = _LENGTH_AND_CHECKSUM.pack(len(payload), zlib.crc32(payload))
    return length_and_checksum + _HEADER_CHECKSUM.pack(zlib.crc32(length_and_checksum)) + payload


_LENGTH_AND_CHECKSUM: Final = struct.Struct(">II")
_HEADER_CHECKSUM: Final = struct.Struct(">I")


def read_records(data: bytes, report: ReplayReport) -> Iterator[JournalRecord | TokensRecord]:
    """Decode records from a segment's bytes, stopping at a torn tail or corruption."""
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
                break
            payload = view[start:end]
            if zlib.crc32(payload) != checksum:
                report.corrupt = f"checksum mismatch in the record at byte {offset}"
                return
            try:
                record = _payload_decoder.decode(payload)
            except msgspec.DecodeError as error:
                report.corrupt = f"undecodable record at byte {offset}: {error}"
                return
            report.records += 1
            report.valid_bytes = offset = end
            yield record
    report.torn_bytes = size - offset


_SEGMENT_SUFFIX = re.compile(r"\.journal\.([0-9]{8,})$")  # [0-9], not \d: \d matches any script


def segment_path(store_path: Path, generation: int) -> Path:
    return store_path.with_name(f"{store_path.name}.journal.{generation:08d}")


def list_segments(store_path: Path) -> list[tuple[int, Path]]:
    """The store's journal segments, oldest first."""
    prefix = f"{store_path.name}.journal."
    found: list[tuple[int, Path]] = []
    try:
        names = os.listdir(store_path.parent)
    except FileNotFoundError:
        return []
    for name in names:
        if not name.startswith(prefix):
            continue
        match = _SEGMENT_SUFFIX.search(name)
        if match and name == prefix + match.group(1):
            found.append((int(match.group(1)), store_path.parent / name))
    return sorted(found)


class JournalSegment:
    """One open segment, appended with plain ``os.write`` and synced with ``os.fsync``.

    Appends happen on the event loop (a few KB into the page cache: microseconds);
    ``fsync`` is called from a worker thread by the persistence shell.
    """

    def __init__(self, path: Path, generation: int) -> None:
        self.path = path
        self.generation = generation
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.size_bytes = os.fstat(self.fd).st_size
        self.closed = False

    def append(self, data: bytes | bytearray) -> None:
        """Write all of ``data``. On error, cut the segment back to its previous length
        (best effort) so no torn record is left in the middle of it, and re-raise."""
        with memoryview(data) as view:
            written = 0
            try:
                while written < len(view):
                    written += os.write(self.fd, view[written:])
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self.fd, self.size_bytes)
                raise
        self.size_bytes += len(data)

    def fsync(self) -> None:
        # fdatasync: the data and the size that makes it readable, without the timestamps
        # a full fsync also writes (~25% cheaper here); a new segment's directory entry is
        # synced separately by the writer.
        os.fdatasync(self.fd)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)
