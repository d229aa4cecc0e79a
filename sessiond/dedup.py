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

import msgspec

from sessiond.entries import StoredEntry

__all__ = ["RememberedWrite", "RequestMemory"]


class RememberedWrite(msgspec.Struct, gc=False):
    """What a token's write did: the key, the entry it stored (``None`` for a delete or
    when only the key survived a restart), its op and the store's ``seq`` after it, and
    for ``resolve`` its decision. A token reused for another op or key is refused.

    Only immutable scalars and the (immutable, bytes-backed) entry are kept — never a
    decoded reply — so thousands of remembered writes cost little memory and nothing to
    the garbage collector; replies are rebuilt from them on a repeat.
    """

    key: str
    entry: StoredEntry | None
    deleted: bool = False
    op: str | None = None
    seq: int | None = None
    at_s: float = 0.0
    resolution: tuple[str, bool, bool, str | None] | None = None
    """``resolve`` only: (session_id, is_new, reset_triggered, body_stripped)."""


EXPIRE_EVERY = 256
"""Old tokens are dropped every this many writes (and before a carry-over); ``lookup``
checks the age itself, so a token is never honoured past ``ttl_s``."""


class RequestMemory:
    """Token → :class:`RememberedWrite`, oldest first, bounded by count and age."""

    def __init__(self, *, max_entries: int, ttl_s: float, clock_s: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.clock_s = clock_s
        self.writes: OrderedDict[str, RememberedWrite] = OrderedDict()
        self.remembered_since_expiry = 0

    def __len__(self) -> int:
        return len(self.writes)

    def lookup(self, token: str) -> RememberedWrite | None:
        remembered = self.writes.get(token)
        if remembered is None or self.clock_s() - remembered.at_s > self.ttl_s:
            return None
        return remembered

    def remember(self, token: str, write: RememberedWrite) -> None:
        write.at_s = self.clock_s()
        writes = self.writes
        writes[token] = write  # tokens are new: insertion order is age order
        if len(writes) > self.max_entries:
            writes.popitem(last=False)
        self.remembered_since_expiry += 1
        if self.remembered_since_expiry >= EXPIRE_EVERY:
            self._expire()

    def note_resolution(self, token: str, resolution: tuple[str, bool, bool, str | None]) -> None:
        remembered = self.writes.get(token)
        if remembered is not None:
            remembered.resolution = resolution

    def _expire(self) -> None:
        self.remembered_since_expiry = 0
        writes = self.writes
        while len(writes) > self.max_entries:
            writes.popitem(last=False)
        horizon = self.clock_s() - self.ttl_s
        while writes:
            oldest = next(iter(writes.values()))
            if oldest.at_s >= horizon:
                break
            writes.popitem(last=False)

    def live(self) -> list[tuple[str, str, str | None]]:
        """``(token, key, op)`` of every unexpired token, oldest first (journal carry-over)."""
        self._expire()
        return [(token, write.key, write.op) for token, write in self.writes.items()]
