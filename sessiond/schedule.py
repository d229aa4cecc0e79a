"""When the next snapshot is due. Pure: no I/O; the clock is passed in (tests use a fake).

A snapshot is due at ``min(last_change + flush_delay_s, first_change + flush_max_delay_s)``
after the store became dirty; at once when forced (``flush``, shutdown, a durable write
without a journal); never before the backoff after a failure has passed. While a healthy
journal holds the changes, snapshots are also spaced ``journal_snapshot_interval_s``
apart (until the journal outgrows ``journal_max_bytes``): rewriting a large store every
second would cost disk bandwidth and CPU for nothing the journal does not already give.
"""

from __future__ import annotations

from sessiond.config import PersistenceConfig

__all__ = ["SnapshotSchedule"]


class SnapshotSchedule:
    """Dirty times, forcing, spacing and backoff of one store's snapshots."""

    def __init__(self, config: PersistenceConfig) -> None:
        self.config = config
        self.first_dirty_at: float | None = None
        self.last_change_at = 0.0
        self.forced = False
        self.last_snapshot_at = float("-inf")
        self.retry_at: float | None = None
        self.retry_delay_s = config.retry_initial_s

    def changed(self, now: float) -> bool:
        """A change was accepted; True if the store just became dirty (wake the writer)."""
        self.last_change_at = now
        if self.first_dirty_at is None:
            self.first_dirty_at = now
            return True
        return False

    def force(self) -> None:
        self.forced = True

    def due_in(self, now: float, *, journal_healthy: bool, journal_bytes: int) -> float | None:
        """Seconds until the next snapshot is due (0: now), or None when nothing is due."""
        config = self.config
        if self.forced:
            deadline = now
        elif self.first_dirty_at is None:
            return None
        else:
            deadline = min(
                self.last_change_at + config.flush_delay_s,
                self.first_dirty_at + config.flush_max_delay_s,
            )
            if journal_healthy and journal_bytes < config.journal_max_bytes:
                deadline = max(deadline, self.last_snapshot_at + config.journal_snapshot_interval_s)
        if self.retry_at is not None:
            deadline = max(deadline, self.retry_at)
        return max(0.0, deadline - now)

    def started(self) -> float | None:
        """A snapshot starts and takes every change so far; returns the dirty time to
        restore if it fails (changes made meanwhile stay dirty for the next one)."""
        dirty_since = self.first_dirty_at
        self.first_dirty_at, self.forced = None, False
        return dirty_since

    def succeeded(self, now: float) -> None:
        self.last_snapshot_at = now
        self.retry_at, self.retry_delay_s = None, self.config.retry_initial_s

    def failed(self, now: float, dirty_since: float | None) -> float:
        """Back off: the next attempt waits; returns the delay chosen."""
        delay_s = self.retry_delay_s
        self.retry_at = now + delay_s
        self.retry_delay_s = min(delay_s * 2, self.config.retry_max_s)
        dirty_times = [t for t in (dirty_since, self.first_dirty_at) if t is not None]
        self.first_dirty_at = min(dirty_times, default=now)
        return delay_s
