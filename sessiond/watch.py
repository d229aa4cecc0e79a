"""The change feed of one store: a bounded window of recent changes and the watchers
following it. Pure: no I/O; a watcher is whatever implements :class:`Watcher` (the
server's connection sends its events).

Every change the store accepts is appended to the window (at most ``max_changes``
changes and ``max_bytes`` of entries; the oldest go first) and offered to every
watcher. A watcher starts after a sequence number ``since``: the window must still hold
every change after it (else :class:`CompactedError`, with the oldest ``since`` that
works), and those are delivered first, in order, then live ones — no gap, no duplicate.

A watcher that cannot take an event now (its connection is not reading its replies) is
*behind*: it is skipped, and catches up from the window when it can write again. If the
window has moved past its position meanwhile, it gets ``lagged`` and is dropped: a slow
watcher costs the daemon nothing but its position.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Protocol

from sessiond.store import Change
from sessiond_client.errors import CompactedError, LaggedError

__all__ = ["WatchHub", "Watcher"]


class Watcher(Protocol):
    position: int
    """The seq of the last change delivered (or skipped as outside the prefix)."""

    def offer(self, change: Change) -> bool:
        """Deliver ``change`` if it can be written now; False if the watcher is behind."""
        ...

    def dropped(self, error: LaggedError) -> None:
        """The window moved past the watcher's position: it is over."""
        ...


def _size(change: Change) -> int:
    return len(change.key) + (len(change.entry.json_bytes) if change.entry is not None else 0)


class WatchHub:
    """One store's window of recent changes and its watchers."""

    def __init__(
        self, *, seq: int, max_changes: int, max_bytes: int, history: Iterable[Change] = ()
    ) -> None:
        self.seq = seq
        self.max_changes = max_changes
        self.max_bytes = max_bytes
        self.window: deque[Change] = deque()
        self.window_bytes = 0
        self.first_seq = seq + 1
        """The oldest change the window can still hold; a watch may start after
        ``first_seq - 1``."""
        self.watchers: set[Watcher] = set()
        self.behind: set[Watcher] = set()
        for change in history:
            self._keep(change)
        self._trust_only_the_unbroken_end()

    def _trust_only_the_unbroken_end(self) -> None:
        """The loaded history serves a watch only as far back as it runs without a hole up
        to ``seq`` (changes skipped at load, or never journaled, leave holes)."""
        expected = self.seq
        for change in reversed(self.window):
            if change.seq != expected:
                break
            expected -= 1
        self.first_seq = expected + 1
        while self.window and self.window[0].seq < self.first_seq:
            self.window_bytes -= _size(self.window.popleft())

    @property
    def oldest_since(self) -> int:
        return self.first_seq - 1

    def record(self, change: Change) -> None:
        """The store's change listener: keep the change, offer it to every watcher."""
        self._keep(change)
        for watcher in list(self.watchers):
            if watcher not in self.behind and not watcher.offer(change):
                self.behind.add(watcher)

    def _keep(self, change: Change) -> None:
        self.seq = max(self.seq, change.seq)
        self.window.append(change)
        self.window_bytes += _size(change)
        while self.window and (
            len(self.window) > self.max_changes or self.window_bytes > self.max_bytes
        ):
            old = self.window.popleft()
            self.window_bytes -= _size(old)
            self.first_seq = old.seq + 1
        if not self.window:
            self.first_seq = self.seq + 1

    def changes_after(self, since: int) -> Iterator[Change]:
        """The window's changes with a seq above ``since``, in order."""
        for change in self.window:
            if change.seq > since:
                yield change

    def subscribe(self, watcher: Watcher, since: int | None) -> None:
        """Start ``watcher`` after ``since`` (None: now). It must then :meth:`catch_up`."""
        if since is None:
            since = self.seq
        if since < self.oldest_since or since > self.seq:
            raise CompactedError(
                f"changes after {since} are not available: the store is at seq {self.seq} "
                f"and keeps changes after {self.oldest_since} (list it, then watch from "
                "the seq of the list)",
                oldest_seq=self.oldest_since,
            )
        watcher.position = since
        self.watchers.add(watcher)
        self.behind.add(watcher)

    def catch_up(self, watcher: Watcher) -> None:
        """Deliver what a behind watcher missed, while it can write; drop it if the
        window no longer reaches back to its position."""
        if watcher not in self.watchers:
            return
        if watcher.position < self.oldest_since:
            self.unsubscribe(watcher)
            watcher.dropped(
                LaggedError(
                    f"the watch fell behind: it is at seq {watcher.position} and the "
                    f"daemon keeps changes after {self.oldest_since}; watch again from "
                    "your last seq, or list and watch from the list's seq"
                )
            )
            return
        for change in self.changes_after(watcher.position):
            if not watcher.offer(change):
                return
        self.behind.discard(watcher)

    def unsubscribe(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)
        self.behind.discard(watcher)
