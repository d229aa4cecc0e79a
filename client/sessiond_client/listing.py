"""The ``list`` operation: filter, order newest first, and page with a cursor. Pure: no I/O.

Order is ``updatedAt`` descending, then key ascending, a total order, so a cursor (the
position of the last item returned) resumes exactly after it even when entries were
added or changed in between: entries that moved ahead of the cursor are not repeated.
The cursor is opaque to clients; it is the sort position encoded as a short string.
Selecting a page is ``heapq.nsmallest`` — O(n log limit), not a full sort.

Shared by the daemon (over its in-memory entries) and the client's Redis backend (over
the entries it reads from the sorted-set index): an entry is anything with
``updated_at_ms``, ``is_truthy`` and ``value()`` (:class:`ListableEntry`).
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

import msgspec

from sessiond_client.errors import InvalidRequestError

__all__ = [
    "ListFilter",
    "ListableEntry",
    "SortKey",
    "decode_cursor",
    "encode_cursor",
    "select_page",
]

SortKey = tuple[float, str]


class ListableEntry(Protocol):
    """What listing needs of an entry: its ``updatedAt`` in ms (0 if absent), whether JS
    finds its value truthy, and the value itself (decoded only for value filters)."""

    @property
    def updated_at_ms(self) -> float: ...

    @property
    def is_truthy(self) -> bool: ...

    def value(self) -> Any: ...


E = TypeVar("E", bound=ListableEntry)


class ListFilter(msgspec.Struct, kw_only=True):
    prefix: str | None = None
    active_since_ms: float | None = None
    label: str | None = None
    spawned_by: str | None = None

    @property
    def needs_value(self) -> bool:
        return self.label is not None or self.spawned_by is not None

    def matches(self, key: str, entry: ListableEntry) -> bool:
        if self.prefix is not None and not key.startswith(self.prefix):
            return False
        if self.active_since_ms is not None and entry.updated_at_ms < self.active_since_ms:
            return False
        if not self.needs_value:
            return True
        value: Any = entry.value()
        if not isinstance(value, dict):
            return False
        if self.label is not None and value.get("label") != self.label:
            return False
        return self.spawned_by is None or value.get("spawnedBy") == self.spawned_by


def encode_cursor(position: SortKey) -> str:
    raw = msgspec.msgpack.encode(position)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        negated_updated_at, key = msgspec.msgpack.decode(raw, type=tuple[float, str])
    except (ValueError, msgspec.DecodeError) as error:
        raise InvalidRequestError(f"invalid list cursor {cursor!r}") from error
    return negated_updated_at, key


def select_page(
    items: Iterable[tuple[str, E]],
    selection: ListFilter,
    *,
    limit: int,
    after: SortKey | None,
) -> tuple[list[tuple[SortKey, str, E]], bool]:
    """The next ``limit`` matching items after the cursor position (each with its sort
    position, for :func:`encode_cursor`), and whether more follow. A JS-falsy stored value
    is not a session (as for ``get``) and is never listed."""
    candidates = (
        ((-entry.updated_at_ms, key), key, entry)
        for key, entry in items
        if (after is None or (-entry.updated_at_ms, key) > after)
        and entry.is_truthy
        and selection.matches(key, entry)
    )
    page = heapq.nsmallest(limit + 1, candidates, key=lambda candidate: candidate[0])
    return page[:limit], len(page) > limit
