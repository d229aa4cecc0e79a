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
from sessiond_client.errors import ConflictError, InvalidRequestError
from sessiond_client.jscompat import UNDEFINED, js_trim
from sessiond_client.merge import merge_session_entry

__all__ = ["WIRE_CACHE_ENTRIES", "ChangeListener", "SessionStore"]

WIRE_CACHE_ENTRIES = 16384
"""Reads served from pre-encoded msgpack (~1 KB each, so ~16 MB at most per store)."""
_wire_encoder = msgspec.msgpack.Encoder()

ChangeListener = Callable[[str, str, "StoredEntry | None", "str | None"], None]
"""Called as ``on_change(agent_id, key, new_entry_or_None_if_deleted, request_token)``."""


def _require_text_or_none(value: object, name: str) -> None:
    # The original called value?.trim(): anything but a string or nullish threw.
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")


def _ignore_change(agent_id: str, key: str, entry: StoredEntry | None, token: str | None) -> None:
    return None


class SessionStore:
    """The entries of one agent and the operations that change them."""

    def __init__(
        self,
        agent_id: str,
        entries: dict[str, StoredEntry] | None = None,
        *,
        clock_ms: Callable[[], int],
        new_session_id: Callable[[], str],
        on_change: ChangeListener = _ignore_change,
        max_entry_bytes: int | None = None,
        requests: RequestMemory | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.entries: dict[str, StoredEntry] = entries if entries is not None else {}
        self.clock_ms = clock_ms
        self.new_session_id = new_session_id
        self.on_change = on_change
        self.max_entry_bytes = max_entry_bytes
        self._last_written: tuple[StoredEntry | None, Any] = (None, None)
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

    def set(self, key: str, entry: StoredEntry, token: str | None = None) -> StoredEntry:
        """Store ``entry`` under ``key`` and report the change; refuse oversized entries.

        ``token`` is the request token of the write this change completes (remembered so
        a retry of the same request is answered instead of applied again)."""
        if self.max_entry_bytes is not None and len(entry.json_bytes) > self.max_entry_bytes:
            raise InvalidRequestError(
                f"entry of {len(entry.json_bytes)} bytes exceeds the limit of "
                f"{self.max_entry_bytes} bytes"
            )
        self.entries[key] = entry
        self.on_change(self.agent_id, key, entry, token)
        if token is not None:
            self.requests.remember(token, RememberedWrite(key, entry))
        return entry

    def remove(self, key: str, token: str | None = None) -> bool:
        if self.entries.pop(key, None) is None:
            return False
        self.on_change(self.agent_id, key, None, token)
        if token is not None:
            self.requests.remember(token, RememberedWrite(key, None, deleted=True))
        return True

    def check_revision(self, key: str, if_revision: str | None) -> StoredEntry | None:
        """The current entry; :class:`ConflictError` if it is not at ``if_revision``."""
        current = self.entries.get(key)
        if if_revision is None:
            return current
        if current is None:
            raise ConflictError(f"{key!r} does not exist (expected revision {if_revision})")
        if current.revision != if_revision:
            raise ConflictError(f"{key!r} is at revision {current.revision}, not {if_revision}")
        return current

    def merged_value(self, patch: Mapping[str, Any], current: StoredEntry | None) -> Any:
        """The value ``patch`` (wire form: ``None`` deletes) merged into ``current``."""
        js_patch = {name: UNDEFINED if value is None else value for name, value in patch.items()}
        existing = current.exact_value() if current is not None else UNDEFINED
        merged = merge_session_entry(
            existing, js_patch, now_ms=self.clock_ms(), new_session_id=self.new_session_id
        )
        if UNDEFINED not in js_patch.values():
            return merged
        # Only top-level values can be undefined here (the wire's nulls; stored JSON and
        # msgpack hold none), so a shallow pass is enough — the deep one walked every
        # nested value of every entry on every write.
        return {name: value for name, value in merged.items() if value is not UNDEFINED}

    def merge(
        self,
        key: str,
        patch: Mapping[str, Any],
        current: StoredEntry | None,
        token: str | None = None,
    ) -> StoredEntry:
        """Merge a wire patch into ``current`` and store the result."""
        return self.store_value(key, self.merged_value(patch, current), token)

    def store_value(self, key: str, value: Any, token: str | None = None) -> StoredEntry:
        """Encode and store ``value``, keeping it to answer the write without a decode."""
        entry, wire_safe = encode_entry_for_wire(value)
        self.set(key, entry, token)
        if wire_safe:
            self._last_written = (entry, value)
        return entry

    def wire_value(self, key: str, entry: StoredEntry) -> msgspec.Raw:
        """``entry`` encoded as msgpack for a reply, from a small cache of recent reads.

        A read would otherwise decode the JSON and re-encode it as msgpack (~2 µs per
        KB) every time; bots read their active sessions over and over. The cache holds at
        most :data:`WIRE_CACHE_ENTRIES` entries (first in, first out) and is checked by
        identity, so a changed entry is never served from it.
        """
        cached = self._wire_cache.get(key)
        if cached is not None and cached[0] is entry:
            return cached[1]
        raw = msgspec.Raw(_wire_encoder.encode(entry.value()))
        cache = self._wire_cache
        cache.pop(key, None)
        if len(cache) >= WIRE_CACHE_ENTRIES:
            del cache[next(iter(cache))]  # the oldest insertion
        cache[key] = (entry, raw)
        return raw

    def value_of(self, entry: StoredEntry) -> Any:
        """The value of ``entry`` for a reply: the one just written if it is that entry
        (the write path already has it decoded), else a fresh decode."""
        last_entry, last_value = self._last_written
        return last_value if last_entry is entry else entry.value()

    def patch(
        self,
        key: str,
        patch: Mapping[str, Any],
        *,
        if_revision: str | None = None,
        token: str | None = None,
    ) -> StoredEntry:
        """Merge ``patch`` into the entry, creating it if missing."""
        current = self.check_revision(key, if_revision)
        return self.merge(key, patch, current, token)

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
        return self.merge(key, patch, current, token)

    def replace(
        self,
        key: str,
        entry: Mapping[str, Any],
        *,
        if_revision: str | None = None,
        token: str | None = None,
    ) -> StoredEntry:
        """Store a whole entry as given. ``sessionId`` is required; a missing ``updatedAt``
        is set to now; ``null`` fields are dropped (they mean "absent" on the wire)."""
        self.check_revision(key, if_revision)
        value = {name: field for name, field in entry.items() if field is not None}
        if not isinstance(value.get("sessionId"), str):
            raise InvalidRequestError("replace needs an entry with a string sessionId")
        value.setdefault("updatedAt", self.clock_ms())
        return self.store_value(key, value, token)

    def update_last_route(
        self,
        key: str,
        *,
        provider: str | None,
        to: str | None,
        account_id: str | None,
        touch: bool = False,
        token: str | None = None,
    ) -> StoredEntry:
        """Record where the last reply went, as the original ``updateLastRoute`` did.

        A blank ``to`` clears ``lastTo``; a blank ``account_id`` keeps the previous one;
        a missing ``provider`` clears ``lastProvider``. Unlike the original, an existing
        entry's ``updatedAt`` is left alone unless ``touch``: a delivery receipt is not
        user activity, and bumping it kept idle sessions alive forever.
        """
        _require_text_or_none(to, "to")
        _require_text_or_none(account_id, "account_id")
        current = self.entries.get(key)
        trimmed_to = js_trim(to) if to is not None else ""
        trimmed_account = js_trim(account_id) if account_id is not None else ""
        route: dict[str, Any] = {"lastProvider": provider, "lastTo": trimmed_to or None}
        if trimmed_account:
            route["lastAccountId"] = trimmed_account
        merged = self.merged_value(route, current)
        existing = current.exact_value() if current is not None else None
        if not touch and isinstance(existing, dict) and "updatedAt" in existing:
            merged["updatedAt"] = existing["updatedAt"]
        return self.store_value(key, merged, token)

    def delete(self, key: str, *, if_revision: str | None = None, token: str | None = None) -> bool:
        self.check_revision(key, if_revision)
        return self.remove(key, token)

    def items(self) -> Iterable[tuple[str, StoredEntry]]:
        return self.entries.items()
