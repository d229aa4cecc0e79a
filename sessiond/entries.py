"""How the daemon holds one entry in memory. Pure: no I/O.

Each entry is kept as its compact JSON encoding (any JSON value: the original's files
may hold strings or arrays where objects belong, and those must survive untouched),
plus the two facts the store needs without decoding it: ``updatedAt`` for ordering and
idle checks, and its revision.

Why bytes and not dicts: a ~1 KB entry costs ~3.3 KB as a Python dict but ~1.1 KB as
bytes, so a 100k-entry store fits in about the JSON size; a snapshot is a concatenation
of what is already encoded; and an entry is never mutated in place, so a snapshot can
share the objects with the live store. A ``get`` pays one ~1 µs JSON decode.

The revision is a 64-bit BLAKE2b digest of the compact encoding (hex). It needs no
extra state on disk, so it stays valid across restarts: a client may read, restart the
daemon, and still compare-and-set with what it read. It is computed on first use, so
loading a large store does not hash every entry.

How an entry is encoded, its revision and its ``updatedAt`` are the rules of
:mod:`sessiond_client.entry_json`, shared with the client's Redis backend, so an entry
has the same bytes and revision in either store; this module only holds the result.

Lone UTF-16 surrogates: the original's files may hold them (``JSON.stringify`` writes a
string that ``slice`` cut inside an emoji as ``"\\ud83d"``). They are kept, as that
escape, through load → update → flush; msgspec cannot decode or encode them, so such an
entry (rare) takes the stdlib ``json`` path. :meth:`StoredEntry.exact_value` returns them
as they are; :meth:`StoredEntry.value` (what replies carry) shows each as U+FFFD, because
msgpack strings are UTF-8.
"""

from __future__ import annotations

import json
from typing import Any, Final

import msgspec

from sessiond_client.entry_json import (
    encode_entry_json,
    encode_json_slowly,
    revision_of,
    updated_at_ms_of,
    without_lone_surrogates,
)
from sessiond_client.jscompat import js_truthy

__all__ = [
    "StoredEntry",
    "encode_entry",
    "encode_entry_for_wire",
    "encode_json_slowly",
    "entry_from_json",
    "revision_of",
]

_json_decoder = msgspec.json.Decoder()


class _UpdatedAtOnly(msgspec.Struct, rename="camel"):
    updated_at: Any = None


_updated_at_decoder = msgspec.json.Decoder(_UpdatedAtOnly)
_OBJECT_OR_ARRAY: Final = frozenset(b"{[")


class StoredEntry(msgspec.Struct, gc=False):
    """One entry: compact JSON bytes, its ``updatedAt`` in ms (0 if absent), cached revision."""

    json_bytes: bytes
    updated_at_ms: float
    cached_revision: str | None = None

    @property
    def revision(self) -> str:
        revision = self.cached_revision
        if revision is None:
            revision = self.cached_revision = revision_of(self.json_bytes)
        return revision

    def value(self) -> Any:
        """The entry as Python values (a fresh object each call: callers may keep it).

        Lone surrogates are shown as U+FFFD so the value can cross the wire."""
        try:
            return _json_decoder.decode(self.json_bytes)
        except msgspec.DecodeError:
            return without_lone_surrogates(json.loads(self.json_bytes))

    def exact_value(self) -> Any:
        """The entry exactly as stored, lone surrogates included (for merges)."""
        try:
            return _json_decoder.decode(self.json_bytes)
        except msgspec.DecodeError:
            return json.loads(self.json_bytes)

    @property
    def is_object(self) -> bool:
        """Whether the value is a JSON object (compact JSON starts with ``{``)."""
        return self.json_bytes[:1] == b"{"

    @property
    def is_truthy(self) -> bool:
        """JS truthiness of the value: ``null``, ``false``, ``0`` and ``""`` are not
        sessions (the original's ``if (!existing) return null``)."""
        return self.json_bytes[0] in _OBJECT_OR_ARRAY or js_truthy(self.value())


def encode_entry(value: Any) -> StoredEntry:
    """Store a Python value (normally a dict) as ``JSON.stringify`` would write it:
    non-finite floats as ``null``, ``-0.0`` as ``0``."""
    return encode_entry_for_wire(value)[0]


def encode_entry_for_wire(value: Any) -> tuple[StoredEntry, bool]:
    """:func:`encode_entry`, and whether ``value`` itself is what was stored and can go on
    the wire as the entry (see :func:`~sessiond_client.entry_json.encode_entry_json`)."""
    json_bytes, exact = encode_entry_json(value)
    return StoredEntry(json_bytes, updated_at_ms_of(value)), exact


def entry_from_json(raw: bytes | memoryview) -> StoredEntry:
    """Adopt an already-encoded JSON value (from a snapshot or journal) without a full decode.

    The bytes are re-emitted compact so the revision depends only on content, not on
    the indentation of the file it came from.
    """
    try:
        compact = msgspec.json.format(bytes(raw), indent=-1)
    except msgspec.DecodeError:  # lone surrogate escapes: msgspec cannot read them
        return encode_entry(json.loads(bytes(raw)))
    try:
        updated_at = _updated_at_decoder.decode(compact).updated_at
    except msgspec.ValidationError:  # not an object: a string, array, null...
        return StoredEntry(compact, 0.0)
    # The one rule for updatedAt (a finite number, else 0) takes the entry's object; this
    # one-field dict costs ~0.15 us of the ~3.5 us a 1 KB entry takes to load.
    return StoredEntry(compact, updated_at_ms_of({"updatedAt": updated_at}))
