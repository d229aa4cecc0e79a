"""Unit tests for sessiond.journal: the record codec, segment reading and segment naming.

Pure: every test runs on bytes in memory (nothing is appended, fsynced or listed).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sessiond.journal import (
    ChangeRecord,
    HeaderRecord,
    JournalRecord,
    SegmentReport,
    SnapshotMarker,
    TokensRecord,
    encode_record,
    parse_segment_name,
    read_segment,
    segment_path,
)

RECORDS = [
    ("agent:main:main", b'{"sessionId":"a","updatedAt":1}'),
    ("k2", b'{"label":"\xc3\xbc"}'),
    ("agent:main:main", None),  # a delete
    ("", b"[]"),
    ("k3", b'"just a string"'),
]
STORE_ID = "agents/main/sessions/sessions.json"


def change(key: str, entry_json: bytes | None) -> bytes:
    return encode_record(ChangeRecord(key, entry_json))


def journal_bytes(records: list[tuple[str, bytes | None]] = RECORDS) -> bytes:
    return b"".join(change(key, entry_json) for key, entry_json in records)


def framed(payload: bytes) -> bytes:
    """``payload`` with a valid record header (any msgpack, not only a record's)."""
    head = struct.pack(">II", len(payload), zlib.crc32(payload))
    return head + struct.pack(">I", zlib.crc32(head)) + payload


def read(
    data: bytes,
    *,
    store_id: str | None = STORE_ID,
    generation: int = 1,
    last: bool = True,
) -> tuple[list[JournalRecord], SegmentReport]:
    report = SegmentReport()
    records = list(read_segment(data, report, store_id=store_id, generation=generation, last=last))
    return records, report


def replay(
    data: bytes, *, last: bool = True
) -> tuple[list[tuple[str, bytes | None]], SegmentReport]:
    records, report = read(data, last=last)
    changes = []
    for record in records:
        assert isinstance(record, ChangeRecord)
        changes.append((record.key, record.entry_json))
    return changes, report


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
    assert msgspec.msgpack.decode(payload)[:3] == ["e", "k", b"{}"]


def test_a_change_record_is_e_key_json_token_seq_op() -> None:
    record = encode_record(ChangeRecord("k", b"{}", "tok", 42, "patch"))
    assert msgspec.msgpack.decode(record[12:]) == ["e", "k", b"{}", "tok", 42, "patch"]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (HeaderRecord(STORE_ID, 7), ["h", STORE_ID, 7]),
        (TokensRecord([["t1", "k1", "patch"]]), ["t", [["t1", "k1", "patch"]]]),
        (SnapshotMarker(9, 1234, 567), ["s", 9, 1234, 567]),
    ],
)
def test_other_records_have_the_documented_arrays(record: JournalRecord, expected: Any) -> None:
    assert msgspec.msgpack.decode(encode_record(record)[12:]) == expected


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
    carried = TokensRecord([["tok-a", "k1", "patch"], ["tok-b", "k2", None]])
    written = ChangeRecord("k1", b"{}", token="tok-c", seq=3, op="replace")
    records, report = read(encode_record(carried) + encode_record(written))
    assert records == [carried, written]
    assert report.records == 2


def test_a_snapshot_marker_survives_the_round_trip() -> None:
    marker = SnapshotMarker(seq=12, inode=99, size_bytes=4096)
    records, report = read(encode_record(marker) + change("k", b"1"))
    assert records == [marker, ChangeRecord("k", b"1")]
    assert report.corrupt is None


def test_round_trip() -> None:
    records, report = replay(journal_bytes())
    assert records == RECORDS
    assert report == SegmentReport(
        records=len(RECORDS), valid_bytes=len(journal_bytes()), torn_bytes=0, corrupt=None
    )


def test_records_are_change_records_with_defaults() -> None:
    (record,), _ = read(change("k", b"1"))
    assert record == ChangeRecord("k", b"1", token=None, seq=0, op=None)


def test_empty_segment() -> None:
    assert replay(b"") == ([], SegmentReport())


def test_an_empty_segment_that_is_not_the_last_is_fine() -> None:
    assert replay(b"", last=False) == ([], SegmentReport())


# --- older formats ----------------------------------------------------------------------------


def test_an_old_four_element_change_record_still_decodes() -> None:
    old = framed(msgspec.msgpack.encode(["e", "k", b'{"a":1}', "tok"]))
    records, report = read(old)
    assert records == [ChangeRecord("k", b'{"a":1}', token="tok", seq=0, op=None)]
    assert report.corrupt is None


def test_an_old_three_element_change_record_still_decodes() -> None:
    old = framed(msgspec.msgpack.encode(["e", "k", None]))
    records, _ = read(old)
    assert records == [ChangeRecord("k", None)]


def test_old_two_element_token_pairs_still_decode() -> None:
    old = framed(msgspec.msgpack.encode(["t", [["tok-a", "k1"], ["tok-b", "k2"]]]))
    records, report = read(old)
    assert records == [TokensRecord([["tok-a", "k1"], ["tok-b", "k2"]])]
    assert report.corrupt is None


def test_a_segment_without_a_header_is_accepted_as_written_by_an_older_version() -> None:
    records, report = replay(journal_bytes(), last=False)
    assert records == RECORDS
    assert report.corrupt is None


# --- segment headers --------------------------------------------------------------------------


def test_a_matching_header_is_consumed_not_yielded() -> None:
    data = encode_record(HeaderRecord(STORE_ID, 5)) + journal_bytes()
    records, report = read(data, generation=5)
    assert records == [ChangeRecord(key, entry_json) for key, entry_json in RECORDS]
    assert report.corrupt is None
    assert report.records == len(RECORDS) + 1  # the header is a record too
    assert report.valid_bytes == len(data)


@pytest.mark.parametrize(
    ("store_id", "generation"),
    [("agents/ops/sessions/sessions.json", 5), (STORE_ID, 4), (STORE_ID, 6)],
)
def test_a_header_of_another_store_or_generation_is_corruption(
    store_id: str, generation: int
) -> None:
    data = encode_record(HeaderRecord(store_id, generation)) + journal_bytes()
    records, report = read(data, generation=5)
    assert records == []
    assert report.corrupt is not None
    assert repr(store_id) in report.corrupt
    assert str(generation) in report.corrupt


def test_an_unknown_store_id_accepts_any_store_but_not_another_generation() -> None:
    data = encode_record(HeaderRecord("agents/other/sessions.json", 5)) + change("k", b"1")
    records, report = read(data, store_id=None, generation=5)
    assert records == [ChangeRecord("k", b"1")]
    assert report.corrupt is None
    records, report = read(data, store_id=None, generation=6)
    assert records == []
    assert report.corrupt is not None


def test_a_header_in_the_middle_of_a_segment_is_corruption() -> None:
    header = encode_record(HeaderRecord(STORE_ID, 1))
    data = change("a", b"1") + header + change("b", b"2")
    records, report = replay(data)
    assert records == [("a", b"1")]
    assert report.corrupt is not None and "middle" in report.corrupt


def test_a_second_header_after_the_first_is_corruption() -> None:
    header = encode_record(HeaderRecord(STORE_ID, 1))
    records, report = replay(header + change("a", b"1") + header)
    assert records == [("a", b"1")]
    assert report.corrupt is not None


# --- torn tails -------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 3, 7, 8, 9, 12, 13])
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


@pytest.mark.parametrize("cut", [1, 8, 13])
def test_a_torn_tail_in_a_segment_that_is_not_the_last_is_corruption(cut: int) -> None:
    good = journal_bytes()
    records, report = replay(good + change("torn", b'{"x":1}')[:cut], last=False)
    assert records == RECORDS  # the valid records before the cut are kept
    assert report.valid_bytes == len(good)
    assert report.torn_bytes == cut
    assert report.corrupt is not None and str(len(good)) in report.corrupt


def test_a_complete_segment_that_is_not_the_last_is_fine() -> None:
    records, report = replay(journal_bytes(), last=False)
    assert records == RECORDS
    assert report.corrupt is None


def test_a_record_running_past_the_end_but_followed_by_a_valid_record_is_corruption() -> None:
    # A record whose length was replaced by a larger one with a matching header checksum
    # (so it looks cut short) while whole, valid records follow it: not a torn tail.
    first, second, third = change("a", b"1"), change("b", b"2"), change("c", b"3")
    payload = second[12:]
    head = struct.pack(">II", len(payload) + 1000, zlib.crc32(payload))
    lying = head + struct.pack(">I", zlib.crc32(head)) + payload
    records, report = replay(first + lying + third)
    assert records == [("a", b"1")]
    assert report.corrupt is not None and str(len(first)) in report.corrupt
    assert report.torn_bytes == 0


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
    bogus = framed(msgspec.msgpack.encode({"not": "a record"}))
    records, report = replay(change("ok", b"1") + bogus + change("after", b"2"))
    assert records == [("ok", b"1")]
    assert report.corrupt is not None


@pytest.mark.parametrize(
    "payload",
    [
        msgspec.msgpack.encode(["x", "unknown tag"]),
        msgspec.msgpack.encode(["e", 1, b"{}"]),  # key of the wrong type
        msgspec.msgpack.encode(["s", 1, 2]),  # a marker missing its size
        b"\xa2\xff\xfe",  # a msgpack string that is not UTF-8
    ],
)
def test_a_checksummed_but_undecodable_record_is_corruption(payload: bytes) -> None:
    records, report = replay(change("ok", b"1") + framed(payload))
    assert records == [("ok", b"1")]
    assert report.corrupt is not None and "undecodable" in report.corrupt


# --- segment names ----------------------------------------------------------------------------


def test_segment_path_sits_beside_the_store(tmp_path: Path) -> None:
    store = tmp_path / "sessions.json"
    assert segment_path(store, 7) == tmp_path / "sessions.json.journal.00000007"
    assert segment_path(store, 123_456_789) == tmp_path / "sessions.json.journal.123456789"


@pytest.mark.parametrize("generation", [1, 2, 10, 100_000_000, 123_456_789])
def test_parse_segment_name_reads_back_segment_path(generation: int) -> None:
    store = Path("/state/agents/main/sessions/sessions.json")
    assert parse_segment_name(store, segment_path(store, generation).name) == generation


@pytest.mark.parametrize(
    "name",
    [
        "sessions.json",
        "sessions.json.journal.1",  # too few digits: not ours
        "sessions.json.journal.00000003.tmp",
        "sessions.json.journal.0000000x",
        "sessions.json.journal.",
        "other.json.journal.00000004",
        "xsessions.json.journal.00000005",
        "sessions.json.corrupt-2026-01-01",
        "sessions.json.journal.00000006.corrupt-20260101T000000Z",
        "sessions.json.journal.\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0666",  # Arabic digits
        "sessions.json.journal.00000007\n",
    ],
)
def test_parse_segment_name_ignores_other_names(name: str) -> None:
    assert parse_segment_name(Path("/state/sessions.json"), name) is None
