"""Unit tests for sessiond.schedule: when the next snapshot of a store is due.

Pure: a fake clock (plain seconds) is passed to every call.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond.config import PersistenceConfig
from sessiond.schedule import SnapshotSchedule

DELAY = 0.1
MAX_DELAY = 1.0
INTERVAL = 5.0
JOURNAL_MAX = 1000
RETRY_INITIAL = 0.5
RETRY_MAX = 4.0

CONFIG = PersistenceConfig(
    flush_delay_s=DELAY,
    flush_max_delay_s=MAX_DELAY,
    journal_snapshot_interval_s=INTERVAL,
    journal_max_bytes=JOURNAL_MAX,
    retry_initial_s=RETRY_INITIAL,
    retry_max_s=RETRY_MAX,
)


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def schedule() -> SnapshotSchedule:
    return SnapshotSchedule(CONFIG)


def due(
    schedule: SnapshotSchedule,
    clock: FakeClock,
    *,
    journal_healthy: bool = False,
    journal_bytes: int = 0,
) -> float | None:
    return schedule.due_in(clock.now, journal_healthy=journal_healthy, journal_bytes=journal_bytes)


def snapshot_succeeds(schedule: SnapshotSchedule, clock: FakeClock) -> None:
    schedule.started()
    schedule.succeeded(clock.now)


# --- debounce ---------------------------------------------------------------------------------


def test_nothing_is_due_for_a_clean_store(schedule: SnapshotSchedule, clock: FakeClock) -> None:
    assert due(schedule, clock) is None
    assert due(schedule, clock, journal_healthy=True) is None


def test_the_first_change_makes_the_store_dirty_once(
    schedule: SnapshotSchedule, clock: FakeClock
) -> None:
    assert schedule.changed(clock.now) is True
    assert schedule.changed(clock.advance(0.01)) is False
    assert schedule.changed(clock.advance(0.01)) is False


def test_a_single_change_is_due_after_the_flush_delay(
    schedule: SnapshotSchedule, clock: FakeClock
) -> None:
    schedule.changed(clock.now)
    assert due(schedule, clock) == pytest.approx(DELAY)
    clock.advance(DELAY / 2)
    assert due(schedule, clock) == pytest.approx(DELAY / 2)
    clock.advance(DELAY)
    assert due(schedule, clock) == 0.0  # overdue is "now", never negative


def test_each_change_pushes_the_deadline_back(schedule: SnapshotSchedule, clock: FakeClock) -> None:
    schedule.changed(clock.now)
    schedule.changed(clock.advance(0.05))
    assert due(schedule, clock) == pytest.approx(DELAY)


def test_a_steady_stream_of_changes_is_due_by_the_max_delay(
    schedule: SnapshotSchedule, clock: FakeClock
) -> None:
    first = clock.now
    schedule.changed(first)
    for _ in range(30):  # a change every 50 ms: the debounce alone would never fire
        schedule.changed(clock.advance(0.05))
        deadline = min(clock.now + DELAY, first + MAX_DELAY)
        assert due(schedule, clock) == pytest.approx(max(0.0, deadline - clock.now))
    assert clock.now - first > MAX_DELAY
    assert due(schedule, clock) == 0.0


@given(st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=20))
def test_the_deadline_is_the_earlier_of_last_plus_delay_and_first_plus_max_delay(
    gaps: list[float],
) -> None:
    schedule = SnapshotSchedule(CONFIG)
    now = first = 1000.0
    schedule.changed(now)
    for gap in gaps:
        now += gap
        schedule.changed(now)
    expected = max(0.0, min(now + DELAY, first + MAX_DELAY) - now)
    assert schedule.due_in(now, journal_healthy=False, journal_bytes=0) == pytest.approx(expected)


# --- forcing ----------------------------------------------------------------------------------


def test_a_forced_snapshot_is_due_now(schedule: SnapshotSchedule, clock: FakeClock) -> None:
    schedule.force()
    assert due(schedule, clock) == 0.0  # even without a change
    schedule.changed(clock.now)
    assert due(schedule, clock) == 0.0
    assert due(schedule, clock, journal_healthy=True) == 0.0  # no journal spacing either


def test_a_forced_snapshot_ignores_the_journal_spacing(
    schedule: SnapshotSchedule, clock: FakeClock
) -> None:
    schedule.changed(clock.now)
    snapshot_succeeds(schedule, clock)
    schedule.changed(clock.advance(0.1))
    assert due(schedule, clock, journal_healthy=True) == pytest.approx(INTERVAL - 0.1)
    schedule.force()
    assert due(schedule, clock, journal_healthy=True) == 0.0


def test_starting_a_snapshot_clears_the_force_and_the_dirty_state(
    schedule: SnapshotSchedule, clock: FakeClock
) -> None:
    schedule.changed(clock.now)
    schedule.force()
    assert schedule.started() == clock.now
    assert due(schedule, clock) is None


def test_a_force_during_a_snapshot_asks_for_another_one(
    schedule: SnapshotSchedule, clock: FakeClock
) -> None:
    schedule.changed(clock.now)
    schedule.started()
    schedule.force()  # a flush arrives while the snapshot is being written
    schedule.succeeded(clock.advance(0.2))
    assert due(schedule, clock) == 0.0


# --- journal spacing --------------------------------------------------------------------------


def test_a_healthy_journal_spaces_snapshots_by_the_interval(
    schedule: SnapshotSchedule, clock: FakeClock
) -> None:
    schedule.changed(clock.now)
    # No snapshot yet: nothing to space from.
    assert due(schedule, clock, journal_healthy=True) == pytest.approx(DELAY)
    snapshot_succeeds(schedule, clock)
    last_snapshot = clock.now
    schedule.changed(clock.advance(1.0))
    assert due(schedule, clock, journal_healthy=True, journal_bytes=10) == pytest.approx(
        last_snapshot + INTERVAL - clock.now
    )
    # Without a healthy journal the changes only live in memory: debounce only.
    assert due(schedule, clock, journal_healthy=False, journal_bytes=10) == pytest.approx(DELAY)


def test_the_spacing_ends_once_the_journal_outgrows_its_limit(
    schedule: SnapshotSchedule, clock: FakeClock
) -> None:
    schedule.changed(clock.now)
    snapshot_succeeds(schedule, clock)
    schedule.changed(clock.advance(1.0))
    spaced = INTERVAL - 1.0
    assert due(schedule, clock, journal_healthy=True, journal_bytes=JOURNAL_MAX - 1) == (
        pytest.approx(spaced)
    )
    assert due(schedule, clock, journal_healthy=True, journal_bytes=JOURNAL_MAX) == (
        pytest.approx(DELAY)
    )


def test_a_change_long_after_the_last_snapshot_is_not_spaced(
    schedule: SnapshotSchedule, clock: FakeClock
) -> None:
    schedule.changed(clock.now)
    snapshot_succeeds(schedule, clock)
    schedule.changed(clock.advance(INTERVAL * 3))
    assert due(schedule, clock, journal_healthy=True) == pytest.approx(DELAY)


# --- failures and backoff ---------------------------------------------------------------------


def test_backoff_doubles_up_to_the_maximum(schedule: SnapshotSchedule, clock: FakeClock) -> None:
    schedule.changed(clock.now)
    delays = []
    for _ in range(6):
        dirty_since = schedule.started()
        delays.append(schedule.failed(clock.now, dirty_since))
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_after_a_failure_the_next_attempt_waits_for_the_backoff(
    schedule: SnapshotSchedule, clock: FakeClock
) -> None:
    schedule.changed(clock.now)
    clock.advance(MAX_DELAY * 2)  # long overdue
    delay = schedule.failed(clock.now, schedule.started())
    assert due(schedule, clock) == pytest.approx(delay)
    schedule.force()
    assert due(schedule, clock) == pytest.approx(delay)  # not even a forced one earlier
    clock.advance(delay)
    assert due(schedule, clock) == 0.0


def test_a_success_resets_the_backoff(schedule: SnapshotSchedule, clock: FakeClock) -> None:
    schedule.changed(clock.now)
    schedule.failed(clock.now, schedule.started())
    schedule.failed(clock.advance(1.0), schedule.started())
    clock.advance(5.0)
    schedule.started()
    schedule.succeeded(clock.now)
    schedule.changed(clock.advance(0.01))
    assert due(schedule, clock) == pytest.approx(DELAY)  # no retry wait left
    assert schedule.failed(clock.now, schedule.started()) == RETRY_INITIAL


def test_a_failed_snapshot_leaves_its_changes_dirty(
    schedule: SnapshotSchedule, clock: FakeClock
) -> None:
    dirty_at = clock.now
    schedule.changed(dirty_at)
    dirty_since = schedule.started()
    assert dirty_since == dirty_at
    schedule.failed(clock.advance(0.2), dirty_since)
    assert schedule.first_dirty_at == dirty_at
    assert due(schedule, clock) is not None


def test_changes_during_a_failed_snapshot_stay_dirty_from_the_earliest_time(
    schedule: SnapshotSchedule, clock: FakeClock
) -> None:
    dirty_at = clock.now
    schedule.changed(dirty_at)
    dirty_since = schedule.started()
    assert schedule.changed(clock.advance(0.3)) is True  # dirty again: wake the writer
    schedule.failed(clock.advance(0.3), dirty_since)
    # Both the changes the snapshot took and those made meanwhile are still dirty, and the
    # max delay counts from the first of them.
    assert schedule.first_dirty_at == dirty_at
    clock.advance(RETRY_INITIAL)
    assert due(schedule, clock) == 0.0


def test_changes_during_a_successful_snapshot_stay_dirty(
    schedule: SnapshotSchedule, clock: FakeClock
) -> None:
    schedule.changed(clock.now)
    schedule.started()
    during = clock.advance(0.3)
    schedule.changed(during)
    schedule.succeeded(clock.advance(0.3))
    assert schedule.first_dirty_at == during
    assert due(schedule, clock) is not None
