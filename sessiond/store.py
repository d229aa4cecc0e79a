"""One agent's session store in memory and its write operations. Pure: no I/O.

A :class:`SessionStore` maps session keys to :class:`~sessiond.entries.StoredEntry`.
Every accepted change is reported to the ``on_change`` callback the composition root
injects (persistence appends it to the journal and marks the store dirty), so this
module stays free of I/O and is unit-tested without an event loop.

Write semantics are the original's ``mergeSessionEntry``: ``sessionId`` kept or minted,
``updatedAt = max(existing, patch, now)``, then ``{...existing, ...patch}``. On the wire
a ``null`` patch value deletes the field (it plays the part of JS ``undefined``).
Compare-and-set: every write takes an optional ``if_revision``; a mismatch (including
"expected an entry but there is none") raises :class:`ConflictError`.

The rules of each write (what it stores, its compare-and-set preconditions) are
:mod:`sessiond_client.writes`, shared with the client's Redis backend; the methods here
apply them to the in-memory entries.

A stored value that JS finds falsy (``null``, ``false``, ``0``, ``""``: possible in a file
the original wrote) is not a session: :meth:`SessionStore.get` and ``update`` treat it
as missing, as the original's ``if (!existing) return null`` did, while ``patch``,
``update_last_route`` and ``resolve`` replace it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from sessiond.dedup import RememberedWrite, RequestMemory
from sessiond.entries import StoredEntry, encode_entry_for_wire
from sessiond.values import wire_safe
from sessiond_client import writes
from sessiond_client.errors import InvalidRequestError
from sessiond_client.jscompat import UNDEFINED

__all__ = ["WIRE_CACHE_ENTRIES", "Change", "ChangeListener", "SessionStore", "encode_for_wire"]

WIRE_CACHE_ENTRIES = 16384
"""Reads served from pre-encoded msgpack (~1 KB each, so ~16 MB at most per store)."""
_wire_encoder = msgspec.msgpack.Encoder()


class Change(msgspec.Struct, frozen=True, gc=False):
    """One accepted change: the store's sequence number it got, the key, the new entry
    (``None`` for a delete), and the request token and op of the write it belongs to."""

    seq: int
    key: str
    entry: StoredEntry | None
    token: str | None = None
    op: str | None = None


ChangeListener = Callable[[Change], None]


def encode_for_wire(value: Any) -> msgspec.Raw:
    """``value`` as msgpack; integers wider than 64 bits (from a file) become doubles."""
    try:
        return msgspec.Raw(_wire_encoder.encode(value))
    except OverflowError:
        return msgspec.Raw(_wire_encoder.encode(wire_safe(value)))


class SessionStore:
    """The entries of one agent and the operations that change them.

    ``seq`` counts changes: every change gets the next number (it starts where the
    loaded store left off), and listeners see each one as a :class:`Change`.
    """

    def __init__(
        self,
        agent_id: str,
        entries: dict[str, StoredEntry] | None = None,
        *,
        clock_ms: Callable[[], int],
        new_session_id: Callable[[], str],
        on_change: ChangeListener | None = None,
        max_entry_bytes: int | None = None,
        requests: RequestMemory | None = None,
        seq: int = 0,
    ) -> None:
        self.agent_id = agent_id
        self.entries: dict[str, StoredEntry] = entries if entries is not None else {}
        self.clock_ms = clock_ms
        self.new_session_id = new_session_id
        self.listeners: list[ChangeListener] = [] if on_change is None else [on_change]
        self.max_entry_bytes = max_entry_bytes
        self.seq = seq
        self._wire_cache: dict[str, tuple[StoredEntry, msgspec.Raw]] = {}
        self.requests = (
            requests
            if requests is not None
            else RequestMemory(max_entries=0, ttl_s=0.0, clock_s=time.monotonic)
        )

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> StoredEntry | None:
        """The entry under ``key``; None when there is none or its value is JS-falsy."""
        entry = self.entries.get(key)
        return entry if entry is not None and entry.is_truthy else None

    def _changed(
        self, key: str, entry: StoredEntry | None, token: str | None, op: str | None
    ) -> None:
        self.seq += 1
        change = Change(self.seq, key, entry, token, op)
        for listener in self.listeners:
            listener(change)
        if token is not None:
            self.requests.remember(
                token, RememberedWrite(key, entry, deleted=entry is None, op=op, seq=self.seq)
            )

    def set(
        self, key: str, entry: StoredEntry, token: str | None = None, op: str | None = None
    ) -> StoredEntry:
        """Store ``entry`` under ``key`` and report the change; refuse oversized entries.

        ``token`` is the request token of the write this change completes (remembered so
        a retry of the same request is answered instead of applied again)."""
        if self.max_entry_bytes is not None and len(entry.json_bytes) > self.max_entry_bytes:
            raise InvalidRequestError(
                f"entry of {len(entry.json_bytes)} bytes exceeds the limit of "
                f"{self.max_entry_bytes} bytes"
            )
        self.entries[key] = entry
        self._changed(key, entry, token, op)
        return entry

    def remove(self, key: str, token: str | None = None, op: str | None = None) -> bool:
        if self.entries.pop(key, None) is None:
            return False
        self._wire_cache.pop(key, None)
        self._changed(key, None, token, op)
        return True

    def check_revision(
        self, key: str, if_revision: str | None, *, if_absent: bool = False
    ) -> StoredEntry | None:
        """The current entry; :class:`ConflictError` if it is not at ``if_revision``, or
        (``if_absent``) if there is one."""
        current = self.entries.get(key)
        if if_revision is not None or if_absent:  # else nothing to check, nor to hash
            writes.check_revision(
                key,
                None if current is None else current.revision,
                current_is_session=current is not None and current.is_truthy,
                if_revision=if_revision,
                if_absent=if_absent,
            )
        return current

    def store_value(
        self, key: str, value: Any, token: str | None = None, op: str | None = None
    ) -> StoredEntry:
        """Encode and store ``value``; its wire form is cached for the reply and later reads
        (when ``value`` is exactly what was stored: see ``encode_entry_for_wire``)."""
        entry, wire_exact = encode_entry_for_wire(value)
        self.set(key, entry, token, op)
        if wire_exact:
            self._cache_wire(key, entry, encode_for_wire(value))
        return entry

    def wire_value(self, key: str, entry: StoredEntry) -> msgspec.Raw:
        """``entry`` encoded as msgpack for a reply, from a small cache of recent entries.

        A read would otherwise decode the JSON and re-encode it as msgpack (~2 µs per
        KB) every time; bots read their active sessions over and over. The cache holds at
        most :data:`WIRE_CACHE_ENTRIES` entries (first in, first out) and is checked by
        identity, so a changed entry is never served from it.
        """
        cached = self._wire_cache.get(key)
        if cached is not None and cached[0] is entry:
            return cached[1]
        raw = encode_for_wire(entry.value())
        self._cache_wire(key, entry, raw)
        return raw

    def _cache_wire(self, key: str, entry: StoredEntry, raw: msgspec.Raw) -> None:
        cache = self._wire_cache
        cache.pop(key, None)
        if len(cache) >= WIRE_CACHE_ENTRIES:
            del cache[next(iter(cache))]  # the oldest insertion
        cache[key] = (entry, raw)

    def patch(
        self,
        key: str,
        patch: Mapping[str, Any],
        *,
        if_revision: str | None = None,
        if_absent: bool = False,
        token: str | None = None,
    ) -> StoredEntry:
        """Merge ``patch`` into the entry, creating it if missing."""
        current = self.check_revision(key, if_revision, if_absent=if_absent)
        value = writes.patched_value(
            patch,
            UNDEFINED if current is None else current.exact_value(),
            now_ms=self.clock_ms(),
            new_session_id=self.new_session_id,
        )
        return self.store_value(key, value, token, "patch")

    def update(
        self,
        key: str,
        patch: Mapping[str, Any],
        *,
        if_revision: str | None = None,
        token: str | None = None,
    ) -> StoredEntry | None:
        """Merge ``patch`` only if the entry exists; ``None`` if it does not."""
        current = self.check_revision(key, if_revision)
        if current is None or not current.is_truthy:
            return None
        value = writes.patched_value(
            patch, current.exact_value(), now_ms=self.clock_ms(), new_session_id=self.new_session_id
        )
        return self.store_value(key, value, token, "update")

    def replace(
        self,
        key: str,
        entry: Mapping[str, Any],
        *,
        if_revision: str | None = None,
        if_absent: bool = False,
        token: str | None = None,
        op: str = "replace",
    ) -> StoredEntry:
        """Store a whole entry as given. ``sessionId`` is required; a missing ``updatedAt``
        is set to now; ``null`` fields are dropped (they mean "absent" on the wire)."""
        self.check_revision(key, if_revision, if_absent=if_absent)
        value = writes.replaced_value(entry, now_ms=self.clock_ms())
        return self.store_value(key, value, token, op)

    def update_last_route(
        self,
        key: str,
        *,
        provider: str | None,
        to: str | None,
        account_id: str | None,
        touch: bool = False,
        if_revision: str | None = None,
        token: str | None = None,
    ) -> StoredEntry:
        """Record where the last reply went (see
        :func:`~sessiond_client.writes.routed_value`): ``updatedAt`` of an existing entry
        moves only if ``touch``."""
        current = self.check_revision(key, if_revision)
        value = writes.routed_value(
            UNDEFINED if current is None else current.exact_value(),
            provider=provider,
            to=to,
            account_id=account_id,
            touch=touch,
            now_ms=self.clock_ms(),
            new_session_id=self.new_session_id,
        )
        return self.store_value(key, value, token, "update_last_route")

    def delete(self, key: str, *, if_revision: str | None = None, token: str | None = None) -> bool:
        self.check_revision(key, if_revision)
        return self.remove(key, token, "delete")

    def items(self) -> Iterable[tuple[str, StoredEntry]]:
        return self.entries.items()
