"""Unit tests for sessiond.journal's pure parts: the record codec and segment naming.

The codec runs on bytes in memory. ``list_segments`` reads a directory listing, so those
tests use pytest's ``tmp_path``; nothing is appended or fsynced here.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import msgspec
import pytest

from sessiond.journal import (
    JournalRecord,
    ReplayReport,
    TokensRecord,
    encode_record,
    list_segments,
    read_records,
    segment_path,
)

RECORDS = [
    ("agent:main:main", b'{"sessionId":"a","updatedAt":1}'),
    ("k2", b'{"label":"\xc3\xbc"}'),
    ("agent:main:main", None),  # a delete
    ("", b"[]"),
    ("k3", b'"just a string"'),
]


def change(key: str, entry_json: bytes | None) -> bytes:
    return encode_record(JournalRecord(key, entry_json))


def journal_bytes(records: list[tuple[str, bytes | None]] = RECORDS) -> bytes:
    return b"".join(change(key, entry_json) for key, entry_json in records)


def replay(data: bytes) -> tuple[list[tuple[str, bytes | None]], ReplayReport]:
    report = ReplayReport()
    records = []
    for record in read_records(data, report):
        assert isinstance(record, JournalRecord)
        records.append((record.key, record.entry_json))
    return records, report


def record_offsets(records: list[tuple[str, bytes | None]] = RECORDS) -> list[int]:
    offsets, position = [], 0
    for key, entry_json in records:
        offsets.append(position)
        position += len(change(key, entry_json))
    return offsets


# --- record format ----------------------------------------------------------------------------


def test_record_layout_is_length_crc_header_crc_then_msgpack_payload() -> None:
    record = change("k", b"{}")
    length, checksum, header_checksum = struct.unpack_from(">III", record)
    payload = record[12:]
    assert length == len(payload)
    assert checksum == zlib.crc32(payload)
    assert header_checksum == zlib.crc32(record[:8])
    assert msgspec.msgpack.decode(payload)[1:3] == ["k", b"{}"]


def test_a_damaged_length_is_corruption_not_a_torn_tail() -> None:
    data = change("a", b"1") + change("b", b"2") + change("c", b"3")
    second = len(change("a", b"1"))
    damaged = bytearray(data)
    damaged[second] ^= 0x40  # the length now points far past the end of the segment
    records, report = replay(bytes(damaged))
    assert records == [("a", b"1")]
    assert report.corrupt is not None and "header" in report.corrupt
    assert report.torn_bytes == 0


def test_a_delete_record_carries_nil() -> None:
    payload = change("k", None)[12:]
    assert msgspec.msgpack.decode(payload)[1:3] == ["k", None]


def test_tokens_survive_the_round_trip() -> None:
    carried = TokensRecord([("tok-a", "k1"), ("tok-b", "k2")])
    written = JournalRecord("k1", b"{}", token="tok-c")
    report = ReplayReport()
    assert list(read_records(encode_record(carried) + encode_record(written), report)) == [
        carried,
        written,
    ]
    assert report.records == 2


def test_round_trip() -> None:
    records, report = replay(journal_bytes())
    assert records == RECORDS
    assert report == ReplayReport(
        records=len(RECORDS), valid_bytes=len(journal_bytes()), torn_bytes=0, corrupt=None
    )


def test_records_are_journal_records() -> None:
    report = ReplayReport()
    (record,) = read_records(change("k", b"1"), report)
    assert record == JournalRecord("k", b"1")


def test_empty_segment() -> None:
    assert replay(b"") == ([], ReplayReport())


# --- torn tails -------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 3, 7, 8, 9])
def test_torn_tail_keeps_the_good_records(cut: int) -> None:
    good = journal_bytes()
    last = change("torn", b'{"x":1}')
    records, report = replay(good + last[:cut])
    assert records == RECORDS
    assert report.records == len(RECORDS)
    assert report.valid_bytes == len(good)
    assert report.torn_bytes == cut
    assert report.corrupt is None


def test_every_truncation_point_is_a_clean_torn_tail() -> None:
    data = journal_bytes()
    boundaries = [*record_offsets(), len(data)]
    for size in range(len(data) + 1):
        records, report = replay(data[:size])
        complete = max(index for index, end in enumerate(boundaries) if end <= size)
        assert records == RECORDS[:complete], size
        assert report.valid_bytes == boundaries[complete]
        assert report.torn_bytes == size - boundaries[complete]
        assert report.corrupt is None


# --- corruption -------------------------------------------------------------------------------


def flipped(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x40]) + data[position + 1 :]


@pytest.mark.parametrize("victim", [1, 2, 3])
def test_a_flipped_payload_byte_is_corruption_and_earlier_records_are_kept(victim: int) -> None:
    data = journal_bytes()
    offset = record_offsets()[victim]
    records, report = replay(flipped(data, offset + 8 + 2))
    assert records == RECORDS[:victim]
    assert report.records == victim
    assert report.valid_bytes == offset
    assert report.corrupt is not None
    assert str(offset) in report.corrupt
    # Corruption is not a torn tail: the bytes after it are not "torn", they are suspect.
    assert report.torn_bytes == 0


def test_a_flipped_checksum_byte_is_corruption() -> None:
    data = journal_bytes()
    offset = record_offsets()[2]
    records, report = replay(flipped(data, offset + 5))
    assert records == RECORDS[:2]
    assert report.corrupt is not None


def test_a_shortened_length_is_corruption() -> None:
    data = journal_bytes()
    offset = record_offsets()[1]
    (length,) = struct.unpack_from(">I", data, offset)
    damaged = data[:offset] + struct.pack(">I", length - 1) + data[offset + 4 :]
    records, report = replay(damaged)
    assert records == RECORDS[:1]
    assert report.corrupt is not None


def test_an_absurd_length_is_corruption_not_a_torn_tail() -> None:
    data = journal_bytes()
    offset = record_offsets()[1]
    damaged = data[:offset] + b"\xff" + data[offset + 1 :]
    records, report = replay(damaged)
    assert records == RECORDS[:1]
    assert report.corrupt is not None
    assert report.torn_bytes == 0


def test_a_checksummed_payload_of_the_wrong_shape_is_corruption() -> None:
    payload = msgspec.msgpack.encode({"not": "a record"})
    head = struct.pack(">II", len(payload), zlib.crc32(payload))
    bogus = head + struct.pack(">I", zlib.crc32(head)) + payload
    records, report = replay(change("ok", b"1") + bogus + change("after", b"2"))
    assert records == [("ok", b"1")]
    assert report.corrupt is not None


# --- segments ---------------------------------------------------------------------------------


def test_segment_path_sits_beside_the_store(tmp_path: Path) -> None:
    store = tmp_path / "sessions.json"
    assert segment_path(store, 7) == tmp_path / "sessions.json.journal.00000007"
    assert segment_path(store, 123_456_789) == tmp_path / "sessions.json.journal.123456789"


def test_list_segments_orders_by_generation_and_ignores_other_files(tmp_path: Path) -> None:
    store = tmp_path / "sessions.json"
    generations = [10, 2, 100_000_000, 1]
    for generation in generations:
        segment_path(store, generation).write_bytes(b"")
    for name in [
        "sessions.json",
        "sessions.json.journal.1",  # too few digits: not ours
        "sessions.json.journal.00000003.tmp",
        "sessions.json.journal.0000000x",
        "sessions.json.journal.",
        "other.json.journal.00000004",
        "xsessions.json.journal.00000005",
        "sessions.json.corrupt-2026-01-01",
        "sessions.json.journal.\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0666",  # Arabic digits
    ]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sessions.json.journal.00000009.d").mkdir()
    assert list_segments(store) == [
        (generation, segment_path(store, generation)) for generation in sorted(generations)
    ]


def test_list_segments_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert list_segments(tmp_path / "missing" / "sessions.json") == []


def test_list_segments_of_an_empty_directory_is_empty(tmp_path: Path) -> None:
    assert list_segments(tmp_path / "sessions.json") == []
