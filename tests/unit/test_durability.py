"""Unit tests for sessiond.durability: which waiters a journal sync or a snapshot releases.

Pure: waiter handles are plain strings; nothing waits on anything.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sessiond.durability import DurabilityTracker, Waiter


def tracker(**seqs: int) -> DurabilityTracker[str]:
    return DurabilityTracker[str](**seqs)


def waiting(tracker_: DurabilityTracker[str]) -> list[str]:
    return [waiter.handle for waiter in tracker_.waiters]


def wants_sync(tracker_: DurabilityTracker[str]) -> bool:
    """Read afresh each time (a property read once would be narrowed by mypy)."""
    return tracker_.wants_sync


def gap_of(tracker_: DurabilityTracker[str]) -> tuple[int, int] | None:
    return tracker_.gap  # read afresh: mypy would narrow an attribute read once


def wants_snapshot(tracker_: DurabilityTracker[str]) -> bool:
    return tracker_.wants_snapshot


# --- sequence numbers -------------------------------------------------------------------------


def test_a_new_tracker_starts_where_it_is_told() -> None:
    fresh = tracker()
    assert (fresh.accepted_seq, fresh.synced_seq, fresh.snapshot_seq) == (0, 0, 0)
    loaded = tracker(accepted_seq=9, synced_seq=7, snapshot_seq=5)
    assert (loaded.accepted_seq, loaded.synced_seq, loaded.snapshot_seq) == (9, 7, 5)
    assert loaded.waiters == []


def test_durable_seq_is_the_furthest_of_sync_and_snapshot() -> None:
    assert tracker(synced_seq=7, snapshot_seq=5).durable_seq == 7
    assert tracker(synced_seq=3, snapshot_seq=5).durable_seq == 5


def test_accept_only_moves_forward() -> None:
    t = tracker()
    t.accept(5)
    t.accept(3)
    assert t.accepted_seq == 5


def test_unsnapshotted_counts_changes_the_store_file_lacks() -> None:
    t = tracker(accepted_seq=10, synced_seq=10, snapshot_seq=4)
    assert t.unsnapshotted == 6
    t.snapshot_written(10)
    assert t.unsnapshotted == 0


def test_sync_and_snapshot_progress_never_goes_backwards() -> None:
    t = tracker(synced_seq=8, snapshot_seq=6)
    t.journal_synced(3)
    t.snapshot_written(2)
    assert (t.synced_seq, t.snapshot_seq) == (8, 6)


def test_covered() -> None:
    t = tracker(synced_seq=8, snapshot_seq=5)
    assert t.covered(8, needs_snapshot=False)
    assert not t.covered(9, needs_snapshot=False)
    assert t.covered(5, needs_snapshot=True)
    assert not t.covered(6, needs_snapshot=True)  # synced is not enough for a snapshot waiter


# --- group commit -----------------------------------------------------------------------------


def test_one_journal_sync_releases_every_waiter_it_covers() -> None:
    t = tracker()
    for seq in (1, 2, 3, 4, 5):
        t.accept(seq)
        t.wait(seq, f"w{seq}", needs_snapshot=False)
    assert t.journal_synced(3) == ["w1", "w2", "w3"]
    assert waiting(t) == ["w4", "w5"]
    assert t.journal_synced(5) == ["w4", "w5"]
    assert t.waiters == []


def test_a_sync_short_of_a_waiter_releases_nothing() -> None:
    t = tracker()
    t.wait(4, "w", needs_snapshot=False)
    assert t.journal_synced(3) == []
    assert waiting(t) == ["w"]


def test_released_waiters_are_released_once() -> None:
    t = tracker()
    t.wait(1, "w", needs_snapshot=False)
    assert t.journal_synced(1) == ["w"]
    assert t.journal_synced(1) == []
    assert t.snapshot_written(1) == []


def test_several_waiters_on_the_same_seq_are_released_together_in_order() -> None:
    t = tracker()
    for handle in ("a", "b", "c"):
        t.wait(2, handle, needs_snapshot=False)
    assert t.journal_synced(2) == ["a", "b", "c"]


def test_a_snapshot_releases_plain_waiters_too() -> None:
    t = tracker()
    t.wait(1, "plain", needs_snapshot=False)
    t.wait(2, "flush", needs_snapshot=True)
    t.wait(3, "later", needs_snapshot=False)
    assert t.snapshot_written(2) == ["plain", "flush"]
    assert waiting(t) == ["later"]


def test_snapshot_waiters_are_released_only_by_a_snapshot() -> None:
    t = tracker()
    t.wait(1, "flush", needs_snapshot=True)
    t.wait(1, "write", needs_snapshot=False)
    assert t.journal_synced(100) == ["write"]
    assert waiting(t) == ["flush"]
    assert t.snapshot_written(1) == ["flush"]


def test_a_waiter_already_covered_is_released_by_the_next_progress() -> None:
    t = tracker(synced_seq=5)
    assert t.covered(3, needs_snapshot=False)  # the shell answers at once in this case
    t.wait(3, "late", needs_snapshot=False)
    assert t.journal_synced(5) == ["late"]


# --- what is wanted ---------------------------------------------------------------------------


def test_nothing_is_wanted_without_waiters() -> None:
    t = tracker(accepted_seq=10)
    assert not wants_sync(t)
    assert not wants_snapshot(t)


def test_wants_sync_for_an_unsynced_plain_waiter() -> None:
    t = tracker(synced_seq=2)
    t.wait(2, "covered", needs_snapshot=False)
    assert not wants_sync(t)
    t.wait(3, "uncovered", needs_snapshot=False)
    assert wants_sync(t)
    assert not wants_snapshot(t)
    t.journal_synced(3)
    assert not wants_sync(t)


def test_a_plain_waiter_covered_by_a_snapshot_is_still_counted_by_wants_sync() -> None:
    # wants_sync compares with synced_seq only: the waiter stays until progress releases it.
    t = tracker(synced_seq=0)
    t.wait(1, "w", needs_snapshot=False)
    assert wants_sync(t)
    t.snapshot_written(1)
    assert t.waiters == []
    assert not wants_sync(t)


def test_wants_snapshot_for_an_unsnapshotted_snapshot_waiter() -> None:
    t = tracker(synced_seq=50, snapshot_seq=2)
    t.wait(3, "flush", needs_snapshot=True)
    assert wants_snapshot(t)
    assert not wants_sync(t)  # a sync would not release it
    t.snapshot_written(3)
    assert not wants_snapshot(t)


# --- failures ---------------------------------------------------------------------------------


def test_fail_removes_and_returns_only_the_selected_waiters() -> None:
    t = tracker()
    t.wait(1, "a", needs_snapshot=False)
    t.wait(2, "b", needs_snapshot=True)
    t.wait(3, "c", needs_snapshot=False)
    t.wait(4, "d", needs_snapshot=True)
    assert t.fail(lambda waiter: waiter.needs_snapshot) == ["b", "d"]
    assert waiting(t) == ["a", "c"]
    assert t.fail(lambda waiter: waiter.seq > 2) == ["c"]
    assert waiting(t) == ["a"]
    assert t.fail(lambda waiter: False) == []
    assert waiting(t) == ["a"]


def test_failed_waiters_are_not_released_later() -> None:
    t = tracker()
    t.wait(1, "a", needs_snapshot=False)
    assert t.fail(lambda waiter: True) == ["a"]
    assert t.journal_synced(10) == []
    assert not wants_sync(t)


def test_waiters_hold_what_they_wait_for() -> None:
    t = tracker()
    t.wait(7, "h", needs_snapshot=True)
    assert t.waiters == [Waiter(7, True, "h")]


# --- property ---------------------------------------------------------------------------------

events = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.integers(1, 20), st.booleans()),
        st.tuples(st.just("sync"), st.integers(0, 20), st.just(False)),
        st.tuples(st.just("snapshot"), st.integers(0, 20), st.just(False)),
    ),
    max_size=40,
)


@given(events)
def test_every_waiter_is_released_exactly_once_and_only_when_covered(
    script: list[tuple[str, int, bool]],
) -> None:
    t = tracker()
    synced = snapshotted = 0
    pending: dict[str, tuple[int, bool]] = {}
    released: list[str] = []
    for number, (kind, seq, needs_snapshot) in enumerate(script):
        if kind == "wait":
            handle = f"w{number}"
            pending[handle] = (seq, needs_snapshot)
            t.wait(seq, handle, needs_snapshot=needs_snapshot)
            continue
        if kind == "sync":
            synced = max(synced, seq)
            out = t.journal_synced(seq)
        else:
            snapshotted = max(snapshotted, seq)
            out = t.snapshot_written(seq)
        for handle in out:
            wanted, snapshot_only = pending.pop(handle)  # KeyError: released twice
            assert wanted <= (snapshotted if snapshot_only else max(synced, snapshotted))
        released.extend(out)
        # Whatever is still waiting is not yet covered.
        for handle, (wanted, snapshot_only) in pending.items():
            assert wanted > (snapshotted if snapshot_only else max(synced, snapshotted)), handle
    assert sorted(waiting(t)) == sorted(pending)


# --- gaps: changes the journal could not record ------------------------------------------------


def test_a_sync_proves_nothing_past_a_change_the_journal_lost() -> None:
    t = tracker(accepted_seq=5, synced_seq=5)
    t.unjournaled(6, 8)  # accepted while the journal was failing
    t.accept(10)
    t.wait(10, "later", needs_snapshot=False)
    assert t.journal_synced(10) == []  # its record is on disk, 6-8 are not
    assert t.durable_seq == 5 and not t.all_durable
    assert t.journal_cannot_cover(10) and not t.journal_cannot_cover(5)
    assert t.snapshot_written(7) == []  # a snapshot holding only part of the gap
    assert gap_of(t) == (8, 8)
    assert t.snapshot_written(9) == ["later"]
    assert gap_of(t) is None and t.durable_seq == 10 and t.all_durable


def test_gaps_join() -> None:
    t = tracker(accepted_seq=20)
    t.unjournaled(6)
    t.unjournaled(9, 12)
    assert gap_of(t) == (6, 12)
    t.unjournaled(13, 12)  # an empty range changes nothing
    assert gap_of(t) == (6, 12)
