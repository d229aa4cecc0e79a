"""Remembered write requests, so a retried write is applied at most once. Pure: no I/O.

Clients attach a ``request_token`` (a random id, the same on every retry of one call) to
each write. When a connection breaks mid-request the client cannot know whether the
daemon applied the write; it retries with the same token, and the daemon answers a token
it has seen from this memory instead of applying the write again.

The memory is bounded by count and age (``max_entries``, ``ttl_s``: tokens only need to
outlive a client's reconnect window). In ``journal`` mode tokens are also written to the
journal with the change they belong to, and carried into each new journal segment, so
they survive a restart or a kill -9 along with the write itself.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec

from sessiond.entries import StoredEntry

__all__ = ["RememberedWrite", "RequestMemory"]


class RememberedWrite(msgspec.Struct):
    """What a token's write did: the key, the entry it stored (``None`` for a delete or
    when only the key survived a restart), and the exact reply result when known."""

    key: str
    entry: StoredEntry | None
    result: Any = None
    at_s: float = 0.0
    deleted: bool = False


class RequestMemory:
    """Token → :class:`RememberedWrite`, oldest first, bounded by count and age."""

    def __init__(self, *, max_entries: int, ttl_s: float, clock_s: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.clock_s = clock_s
        self.writes: OrderedDict[str, RememberedWrite] = OrderedDict()

    def __len__(self) -> int:
        return len(self.writes)

    def lookup(self, token: str) -> RememberedWrite | None:
        remembered = self.writes.get(token)
        if remembered is None or self.clock_s() - remembered.at_s > self.ttl_s:
            return None
        return remembered

    def remember(self, token: str, write: RememberedWrite) -> None:
        write.at_s = self.clock_s()
        self.writes[token] = write
        self.writes.move_to_end(token)
        self._expire()

    def set_result(self, token: str, result: Any) -> None:
        remembered = self.writes.get(token)
        if remembered is not None:
            remembered.result = result

    def _expire(self) -> None:
        writes = self.writes
        while len(writes) > self.max_entries:
            writes.popitem(last=False)
        horizon = self.clock_s() - self.ttl_s
        while writes:
            oldest = next(iter(writes.values()))
            if oldest.at_s >= horizon:
                break
            writes.popitem(last=False)

    def live(self) -> list[tuple[str, str]]:
        """``(token, key)`` of every unexpired token, oldest first (for journal carry-over)."""
        self._expire()
        return [(token, write.key) for token, write in self.writes.items()]
