"""Unit tests for sessiond.loader: the snapshot, then the journal changes it does not hold.

Mostly pure: the files live in an in-memory :class:`FileOps` (a dict of paths to bytes,
each file with its own inode number). The tests about things that are not regular files
(symlinks, FIFOs, directories) need the real file system and use pytest's ``tmp_path``.
"""

from __future__ import annotations

import json
import os
from itertools import count
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sessiond.dedup import RememberedWrite
from sessiond.entries import encode_entry
from sessiond.fileops import REAL_FILES, FileIdentity, FileOps, NotRegularFileError
from sessiond.journal import (
    ChangeRecord,
    GapRecord,
    HeaderRecord,
    JournalRecord,
    SnapshotMarker,
    TokensRecord,
    encode_record,
    segment_path,
)
from sessiond.loader import (
    LoadedStore,
    SegmentOnDisk,
    StoreQuarantinedError,
    load_store,
    move_aside,
)

STATE = "/state"
STORE_ID = "agents/main/sessions/sessions.json"
STORE = Path(STATE) / STORE_ID


class MemoryFiles(FileOps):
    """The loader's file operations over a dict; renames keep a file's inode."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.inodes: dict[str, int] = {}
        self._inode = count(1000)
        self.renames: list[tuple[str, str]] = []

    def put(self, path: str | Path, data: bytes) -> None:
        self.files[str(path)] = data
        self.inodes[str(path)] = next(self._inode)

    def read_file(self, path: str) -> bytes | None:
        return self.files.get(path)

    def identity(self, path: str) -> FileIdentity | None:
        data = self.files.get(path)
        return None if data is None else FileIdentity(self.inodes[path], len(data))

    def listdir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        names = [name[len(prefix) :] for name in self.files if name.startswith(prefix)]
        if not names:
            raise FileNotFoundError(path)
        return [name for name in names if "/" not in name]

    def exists(self, path: str) -> bool:
        return path in self.files

    def rename(self, source: str, target: str) -> None:
        self.files[target] = self.files.pop(source)
        self.inodes[target] = self.inodes.pop(source)
        self.renames.append((source, target))


@pytest.fixture
def fs() -> MemoryFiles:
    return MemoryFiles()


def snapshot(fs: MemoryFiles, entries: dict[str, Any]) -> FileIdentity:
    fs.put(STORE, json.dumps(entries, indent=2).encode())
    identity = fs.identity(str(STORE))
    assert identity is not None
    return identity


def change(
    key: str, value: Any, seq: int = 0, token: str | None = None, op: str | None = None
) -> ChangeRecord:
    entry_json = None if value is None else json.dumps(value, separators=(",", ":")).encode()
    return ChangeRecord(key, entry_json, token, seq, op)


def segment(
    fs: MemoryFiles,
    generation: int,
    *records: JournalRecord,
    header: bool = True,
    tail: bytes = b"",
    store_id: str = STORE_ID,
) -> str:
    path = str(segment_path(STORE, generation))
    head = [HeaderRecord(store_id, generation)] if header else []
    fs.put(path, b"".join(encode_record(record) for record in [*head, *records]) + tail)
    return path


def load(fs: MemoryFiles, *, repair: bool = True, **options: Any) -> LoadedStore:
    kwargs: dict[str, Any] = {"store_id": STORE_ID, "repair": repair, **options}
    return load_store(STORE, fs=fs, **kwargs)


def values(loaded: LoadedStore) -> dict[str, Any]:
    return {key: entry.value() for key, entry in loaded.entries.items()}


def moved_aside(fs: MemoryFiles, path: str) -> list[str]:
    return [target for source, target in fs.renames if source == path]


# --- snapshot only ----------------------------------------------------------------------------


def test_a_store_that_was_never_written_is_empty(fs: MemoryFiles) -> None:
    loaded = load(fs)
    assert loaded.entries == {}
    assert (loaded.seq, loaded.covered_seq, loaded.next_generation) == (0, 0, 1)
    assert loaded.segments == []
    assert loaded.snapshot_identity is None
    assert loaded.replayed_tokens == {}


def test_the_snapshot_alone(fs: MemoryFiles) -> None:
    identity = snapshot(fs, {"a": {"sessionId": "s", "updatedAt": 1}})
    loaded = load(fs)
    assert values(loaded) == {"a": {"sessionId": "s", "updatedAt": 1}}
    assert loaded.snapshot_identity == identity
    assert loaded.report.loaded_syntax == "json"
    assert loaded.report.bytes_on_disk == identity.size_bytes
    assert loaded.seq == 0


def test_a_corrupt_snapshot_is_moved_aside_and_the_journal_still_applies(fs: MemoryFiles) -> None:
    fs.put(STORE, b"{not json at all")
    segment(fs, 1, change("k", {"v": 1}, seq=1))
    loaded = load(fs)
    assert values(loaded) == {"k": {"v": 1}}
    assert loaded.report.corrupt_error is not None
    (target,) = moved_aside(fs, str(STORE))
    assert target.startswith(f"{STORE}.corrupt-")
    assert loaded.report.corrupt_moved_to == target
    assert fs.files[target] == b"{not json at all"  # bytes kept


def test_a_corrupt_snapshot_is_left_alone_without_repair(fs: MemoryFiles) -> None:
    fs.put(STORE, b"[1, 2]")
    loaded = load(fs, repair=False)
    assert loaded.entries == {}
    assert loaded.report.corrupt_error is not None
    assert loaded.report.corrupt_moved_to is None
    assert fs.renames == []


def test_a_corrupt_snapshot_can_make_the_store_refuse(fs: MemoryFiles) -> None:
    fs.put(STORE, b"{broken")
    with pytest.raises(StoreQuarantinedError):
        load(fs, refuse_corrupt=True)
    assert fs.renames == []


# --- replay -----------------------------------------------------------------------------------


def test_changes_are_applied_in_order_over_the_snapshot(fs: MemoryFiles) -> None:
    snapshot(fs, {"a": {"v": 0}, "gone": {"v": 0}})
    segment(fs, 1, change("a", {"v": 1}, seq=1), change("b", {"v": 1}, seq=2))
    segment(fs, 2, change("a", {"v": 2}, seq=3), change("gone", None, seq=4))
    loaded = load(fs)
    assert values(loaded) == {"a": {"v": 2}, "b": {"v": 1}}
    assert loaded.seq == 4
    assert loaded.covered_seq == 0  # no marker: every change is applied
    assert loaded.report.journal_records_replayed == 4
    assert loaded.report.journal_segments == 2
    assert loaded.next_generation == 3


def test_segments_are_replayed_by_generation_not_by_listing_order(fs: MemoryFiles) -> None:
    segment(fs, 10, change("k", {"v": "ten"}, seq=2))
    segment(fs, 9, change("k", {"v": "nine"}, seq=1))
    assert values(load(fs)) == {"k": {"v": "ten"}}


def test_legacy_changes_without_seq_are_numbered_in_order(fs: MemoryFiles) -> None:
    snapshot(fs, {})
    segment(fs, 1, change("a", {"v": 1}), change("a", {"v": 2}), header=False)
    segment(fs, 2, change("b", {"v": 3}), header=False)
    loaded = load(fs)
    assert values(loaded) == {"a": {"v": 2}, "b": {"v": 3}}
    assert loaded.seq == 3
    assert [(s.generation, s.max_seq) for s in loaded.segments] == [(1, 2), (2, 3)]


def test_other_files_beside_the_store_are_not_segments(fs: MemoryFiles) -> None:
    segment(fs, 1, change("k", {"v": 1}, seq=1))
    fs.put(f"{STORE}.journal.00000002.corrupt-20260101T000000Z", b"garbage")
    fs.put(f"{STORE}.journal.3", b"garbage")
    fs.put(Path(STATE) / "agents/main/sessions/other.json.journal.00000004", b"garbage")
    loaded = load(fs)
    assert values(loaded) == {"k": {"v": 1}}
    assert [s.generation for s in loaded.segments] == [1]
    assert loaded.next_generation == 2


def test_segments_on_disk_are_described(fs: MemoryFiles) -> None:
    identity = snapshot(fs, {})
    first = segment(fs, 1, change("a", {}, seq=1), change("b", {}, seq=2))
    second = segment(fs, 2, SnapshotMarker(2, *identity), change("c", {}, seq=3))
    loaded = load(fs)
    assert loaded.segments == [
        SegmentOnDisk(1, first, 2, 0, len(fs.files[first])),
        SegmentOnDisk(2, second, 3, 2, len(fs.files[second])),
    ]


# --- snapshot markers -------------------------------------------------------------------------


def test_a_marker_naming_the_snapshot_skips_the_changes_it_holds(fs: MemoryFiles) -> None:
    # The snapshot holds seq 1..5 (k was last written at seq 5, in a segment already
    # deleted); an older segment still holding seq 1 must not overwrite it.
    identity = snapshot(fs, {"k": {"v": 5}})
    segment(fs, 1, change("k", {"v": 1}, seq=1))
    segment(fs, 3, SnapshotMarker(5, identity.inode, identity.size_bytes), change("o", {}, seq=6))
    loaded = load(fs)
    assert values(loaded) == {"k": {"v": 5}, "o": {}}
    assert loaded.covered_seq == 5
    assert loaded.seq == 6
    assert loaded.report.journal_records_covered == 1
    assert loaded.report.journal_records_replayed == 1


def test_a_marker_of_another_snapshot_file_is_ignored(fs: MemoryFiles) -> None:
    identity = snapshot(fs, {"k": {"v": 5}})
    segment(fs, 1, change("k", {"v": 1}, seq=1))
    segment(fs, 2, SnapshotMarker(5, identity.inode, identity.size_bytes + 1))
    segment(fs, 3, SnapshotMarker(5, identity.inode + 1, identity.size_bytes))
    loaded = load(fs)
    assert values(loaded) == {"k": {"v": 1}}  # without a matching marker, all is applied
    assert loaded.covered_seq == 0
    assert loaded.seq == 5  # markers still count: later changes get higher numbers


def test_the_newest_matching_marker_wins(fs: MemoryFiles) -> None:
    identity = snapshot(fs, {"k": {"v": "snap"}})
    segment(
        fs,
        1,
        change("k", {"v": 1}, seq=1),
        SnapshotMarker(1, *identity),
        change("k", {"v": 2}, seq=2),
        SnapshotMarker(2, *identity),
        change("k", {"v": 3}, seq=3),
    )
    loaded = load(fs)
    assert loaded.covered_seq == 2
    assert values(loaded) == {"k": {"v": 3}}
    assert loaded.report.journal_records_covered == 2


def test_without_a_snapshot_file_no_marker_matches(fs: MemoryFiles) -> None:
    segment(fs, 1, change("k", {"v": 1}, seq=1), SnapshotMarker(1, 1000, 2))
    loaded = load(fs)
    assert values(loaded) == {"k": {"v": 1}}
    assert loaded.covered_seq == 0


# --- damage -----------------------------------------------------------------------------------


def test_a_torn_end_of_the_last_segment_is_dropped(fs: MemoryFiles) -> None:
    torn = encode_record(change("torn", {"v": 9}, seq=3))[:-2]
    path = segment(fs, 2, change("k", {"v": 2}, seq=2), tail=torn)
    segment(fs, 1, change("k", {"v": 1}, seq=1))
    loaded = load(fs)
    assert values(loaded) == {"k": {"v": 2}}
    assert loaded.report.journal_dropped_bytes == len(torn)
    assert loaded.report.journal_corruption is None
    assert fs.renames == []
    assert [s.path for s in loaded.segments] == [str(segment_path(STORE, 1)), path]


def test_a_torn_segment_that_is_not_the_last_is_moved_aside_and_later_ones_apply(
    fs: MemoryFiles,
) -> None:
    torn = encode_record(change("torn", {"v": 9}, seq=2))[:-2]
    first = segment(fs, 1, change("a", {"v": 1}, seq=1), tail=torn)
    segment(fs, 2, change("b", {"v": 3}, seq=3))
    loaded = load(fs)
    assert values(loaded) == {"a": {"v": 1}, "b": {"v": 3}}
    assert loaded.report.journal_corruption is not None
    assert moved_aside(fs, first)
    assert [s.generation for s in loaded.segments] == [2]


def test_a_damaged_segment_keeps_its_valid_prefix_and_later_segments_apply(
    fs: MemoryFiles,
) -> None:
    path = segment(fs, 1, change("a", {"v": 1}, seq=1), change("b", {"v": 2}, seq=2))
    data = bytearray(fs.files[path])
    data[-3] ^= 0x40  # inside the last record's payload
    fs.files[path] = bytes(data)
    segment(fs, 2, change("c", {"v": 3}, seq=3))
    loaded = load(fs)
    assert values(loaded) == {"a": {"v": 1}, "c": {"v": 3}}
    (target,) = moved_aside(fs, path)
    assert target.startswith(f"{path}.corrupt-")
    assert fs.files[target] == bytes(data)  # bytes kept
    assert loaded.report.journal_corruption is not None
    assert target in loaded.report.journal_corruption
    assert [s.generation for s in loaded.segments] == [2]
    assert loaded.next_generation == 3


def test_without_repair_a_damaged_segment_stays_but_is_reported(fs: MemoryFiles) -> None:
    path = segment(fs, 1, change("a", {"v": 1}, seq=1))
    fs.files[path] = fs.files[path][:-1] + bytes([fs.files[path][-1] ^ 1])
    segment(fs, 2, change("b", {"v": 2}, seq=2))
    loaded = load(fs, repair=False)
    assert values(loaded) == {"b": {"v": 2}}  # the header was valid; the change was not
    assert fs.renames == []
    assert loaded.report.journal_corruption is not None
    assert [s.generation for s in loaded.segments] == [1, 2]


@pytest.mark.parametrize(
    ("store_id", "generation"),
    [("agents/ops/sessions/sessions.json", 1), (STORE_ID, 7)],
)
def test_a_segment_of_another_store_or_generation_is_refused(
    fs: MemoryFiles, store_id: str, generation: int
) -> None:
    snapshot(fs, {"k": {"v": "snap"}})
    path = str(segment_path(STORE, 1))
    records: list[JournalRecord] = [
        HeaderRecord(store_id, generation),
        change("k", {"v": "foreign"}, seq=1),
    ]
    fs.put(path, b"".join(encode_record(record) for record in records))
    segment(fs, 2, change("mine", {}, seq=2))
    loaded = load(fs)
    assert values(loaded) == {"k": {"v": "snap"}, "mine": {}}
    assert moved_aside(fs, path)


def test_an_unknown_store_id_accepts_the_header_of_any_store(fs: MemoryFiles) -> None:
    segment(fs, 1, change("k", {"v": 1}, seq=1), store_id="somewhere/else.json")
    loaded = load(fs, repair=False, store_id=None)
    assert values(loaded) == {"k": {"v": 1}}
    assert loaded.report.journal_corruption is None


def test_a_checksummed_change_that_is_not_json_is_corruption(fs: MemoryFiles) -> None:
    path = segment(
        fs,
        1,
        change("a", {"v": 1}, seq=1),
        ChangeRecord("b", b"{not json", None, 2),
        change("c", {"v": 3}, seq=3),
    )
    loaded = load(fs)
    assert values(loaded) == {"a": {"v": 1}}
    assert loaded.report.journal_corruption is not None
    assert moved_aside(fs, path)


# --- request tokens ---------------------------------------------------------------------------


def test_tokens_of_changes_and_carry_overs_are_remembered(fs: MemoryFiles) -> None:
    identity = snapshot(fs, {})
    segment(fs, 1, change("a", {"v": 1}, seq=1, token="t-covered", op="patch"))
    segment(
        fs,
        2,
        TokensRecord([["t-old", "x", "replace"], ["t-older", "y"], [None, "z", None]]),
        SnapshotMarker(1, *identity),
        change("a", None, seq=2, token="t-delete", op="delete"),
        change("b", {"v": 2}, seq=3, token="t-new", op="update_last_route"),
    )
    tokens = load(fs).replayed_tokens
    assert set(tokens) == {"t-covered", "t-old", "t-older", "t-delete", "t-new"}
    assert tokens["t-old"] == RememberedWrite("x", None, op="replace")
    assert tokens["t-older"] == RememberedWrite("y", None, op=None)  # an older version's pair
    covered = tokens["t-covered"]
    assert (covered.key, covered.op, covered.seq) == ("a", "patch", 1)
    assert covered.entry == encode_entry({"v": 1})
    deleted = tokens["t-delete"]
    assert (deleted.entry, deleted.deleted, deleted.op, deleted.seq) == (None, True, "delete", 2)
    new = tokens["t-new"]
    assert (new.key, new.op, new.seq, new.deleted) == ("b", "update_last_route", 3, False)


def test_a_malformed_carried_token_does_not_stop_the_store_loading(fs: MemoryFiles) -> None:
    # A checksum-valid tokens record whose pair lacks its key: the store must still load.
    segment(fs, 1, TokensRecord([["lonely"]]), change("k", {"v": 1}, seq=1))
    loaded = load(fs, repair=False)
    assert values(loaded) == {"k": {"v": 1}}
    assert "lonely" not in loaded.replayed_tokens


# --- move_aside -------------------------------------------------------------------------------


def test_move_aside_keeps_the_bytes_under_a_new_name(fs: MemoryFiles) -> None:
    fs.put("/d/f", b"one")
    first = move_aside(fs, "/d/f", "corrupt")
    fs.put("/d/f", b"two")
    second = move_aside(fs, "/d/f", "corrupt")
    assert first != second
    assert first.startswith("/d/f.corrupt-") and second.startswith(first)
    assert (fs.files[first], fs.files[second]) == (b"one", b"two")
    assert "/d/f" not in fs.files


# --- things that are not regular files (real file system) ------------------------------------


def real_store(tmp_path: Path) -> Path:
    store = tmp_path / "sessions.json"
    store.write_text(json.dumps({"k": {"v": 1}}))
    return store


def load_real(store: Path) -> LoadedStore:
    return load_store(store, store_id=None, repair=True, fs=REAL_FILES)


def test_real_files_load(tmp_path: Path) -> None:
    store = real_store(tmp_path)
    segment_path(store, 1).write_bytes(encode_record(change("j", {"v": 2}, seq=1)))
    loaded = load_real(store)
    assert values(loaded) == {"k": {"v": 1}, "j": {"v": 2}}
    info = os.stat(store)
    assert loaded.snapshot_identity == FileIdentity(info.st_ino, info.st_size)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_a_store_file_that_is_not_regular_is_refused(tmp_path: Path, kind: str) -> None:
    store = tmp_path / "sessions.json"
    make_irregular(store, kind, tmp_path)
    with pytest.raises(NotRegularFileError):
        load_real(store)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_a_segment_that_is_not_regular_is_refused(tmp_path: Path, kind: str) -> None:
    store = real_store(tmp_path)
    make_irregular(segment_path(store, 1), kind, tmp_path)
    with pytest.raises(NotRegularFileError):
        load_real(store)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["sessions.json", segment_path(store, 1).name, "target"]
        if kind == "symlink"
        else ["sessions.json", segment_path(store, 1).name]
    )  # nothing was moved aside


def make_irregular(path: Path, kind: str, tmp_path: Path) -> None:
    if kind == "symlink":
        target = tmp_path / "target"
        target.write_bytes(msgspec.json.encode({}))
        path.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()


# --- gaps (the journal had failed) ------------------------------------------------------------


def test_segments_behind_a_gap_no_snapshot_covers_are_skipped(fs: MemoryFiles) -> None:
    # seq 2-3 were accepted while the journal could not record them; the snapshot meant
    # to hold them never made it, so segment 2 (seq 4) would leave a hole: skipped.
    snapshot(fs, {})
    segment(fs, 1, change("a", {"v": 1}, seq=1))
    segment(fs, 2, GapRecord(3), change("b", {"v": 4}, seq=4, token="t-b"))
    segment(fs, 3, change("c", {"v": 5}, seq=5))
    loaded = load(fs)
    assert values(loaded) == {"a": {"v": 1}}
    assert loaded.report.journal_records_skipped == 2
    assert "t-b" not in loaded.replayed_tokens  # a retry of it must apply it again
    assert loaded.seq == 5  # numbers are never reused


def test_a_gap_a_snapshot_covers_is_no_gap(fs: MemoryFiles) -> None:
    identity = snapshot(fs, {"a": {"v": 3}})
    segment(fs, 1, change("a", {"v": 1}, seq=1))
    segment(
        fs,
        2,
        GapRecord(3),
        change("b", {"v": 4}, seq=4),
        SnapshotMarker(3, identity.inode, identity.size_bytes),
    )
    loaded = load(fs)
    assert values(loaded) == {"a": {"v": 3}, "b": {"v": 4}}
    assert loaded.report.journal_records_skipped == 0
