"""What is durable, and who waits for it: sequence numbers and waiters. Pure: no I/O, no
event loop (waiters carry an opaque handle the shell resolves).

Every accepted change has a sequence number (the store's ``seq``). ``synced_seq`` is how
far the journal is fsynced, ``snapshot_seq`` how far the last durable snapshot reaches
(Redis's dirty counter minus what the snapshot covered). A change is durable once either
covers it — and durability is a prefix: while changes accepted without a journal record
(the journal had failed) are not in a snapshot, a journal sync proves nothing past the
first of them (a later record on disk without the changes before it is not a store the
daemon ever had). A waiter asks for ``seq`` to become durable — by any means, or
(``needs_snapshot``: the ``flush`` op, or a durable write while the journal is off) by a
snapshot — and is released by the one sync or snapshot that covers it (group commit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import msgspec

__all__ = ["DurabilityTracker", "Waiter"]

H = TypeVar("H")


class Waiter(msgspec.Struct, Generic[H]):
    seq: int
    needs_snapshot: bool
    handle: H


class DurabilityTracker(Generic[H]):
    """Sequence numbers of one store and the waiters on them."""

    def __init__(
        self, *, accepted_seq: int = 0, synced_seq: int = 0, snapshot_seq: int = 0
    ) -> None:
        self.accepted_seq = accepted_seq
        self.synced_seq = synced_seq
        self.snapshot_seq = snapshot_seq
        self.waiters: list[Waiter[H]] = []
        self.gap: tuple[int, int] | None = None
        """First and last change accepted without a journal record, not yet snapshotted."""

    @property
    def durable_seq(self) -> int:
        journaled = self.synced_seq if self.gap is None else min(self.synced_seq, self.gap[0] - 1)
        return max(journaled, self.snapshot_seq)

    @property
    def all_durable(self) -> bool:
        """Whether every accepted change is in the store file or a synced journal."""
        return self.durable_seq >= self.accepted_seq

    def journal_cannot_cover(self, seq: int) -> bool:
        """Whether only a snapshot can make change ``seq`` durable (it is after a gap)."""
        return self.gap is not None and seq >= self.gap[0]

    def unjournaled(self, first: int, last: int | None = None) -> None:
        """Changes ``first`` to ``last`` (default: just ``first``) were accepted, but the
        journal lost or could not record them."""
        last = first if last is None else last
        if last < first:
            return
        if self.gap is not None:
            first, last = min(first, self.gap[0]), max(last, self.gap[1])
        self.gap = (first, last)

    @property
    def unsnapshotted(self) -> int:
        """Changes the store file does not hold yet."""
        return self.accepted_seq - self.snapshot_seq

    @property
    def wants_sync(self) -> bool:
        """A waiter that a journal sync would release."""
        return any(not w.needs_snapshot and w.seq > self.synced_seq for w in self.waiters)

    @property
    def wants_snapshot(self) -> bool:
        return any(w.needs_snapshot and w.seq > self.snapshot_seq for w in self.waiters)

    def accept(self, seq: int) -> None:
        self.accepted_seq = max(self.accepted_seq, seq)

    def covered(self, seq: int, *, needs_snapshot: bool) -> bool:
        return seq <= (self.snapshot_seq if needs_snapshot else self.durable_seq)

    def wait(self, seq: int, handle: H, *, needs_snapshot: bool) -> None:
        self.waiters.append(Waiter(seq, needs_snapshot, handle))

    def journal_synced(self, seq: int) -> list[H]:
        """The journal is fsynced up to ``seq``: the handles that are now released."""
        self.synced_seq = max(self.synced_seq, seq)
        return self._release()

    def snapshot_written(self, seq: int) -> list[H]:
        """A durable snapshot holds every change up to ``seq``."""
        self.snapshot_seq = max(self.snapshot_seq, seq)
        if self.gap is not None and self.snapshot_seq >= self.gap[0]:
            last = self.gap[1]
            self.gap = None if self.snapshot_seq >= last else (self.snapshot_seq + 1, last)
        return self._release()

    def fail(self, predicate: Callable[[Waiter[H]], bool]) -> list[H]:
        """Remove and return the waiters ``predicate`` selects (their wait failed)."""
        failed = [w.handle for w in self.waiters if predicate(w)]
        self.waiters = [w for w in self.waiters if not predicate(w)]
        return failed

    def _release(self) -> list[H]:
        released: list[H] = []
        remaining: list[Waiter[H]] = []
        for waiter in self.waiters:
            if self.covered(waiter.seq, needs_snapshot=waiter.needs_snapshot):
                released.append(waiter.handle)
            else:
                remaining.append(waiter)
        self.waiters = remaining
        return released
