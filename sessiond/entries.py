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
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import msgspec

__all__ = [
    "StoredEntry",
    "decode_entry",
    "encode_entry",
    "entry_from_json",
    "revision_of",
]

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


class _UpdatedAtOnly(msgspec.Struct, rename="camel"):
    updated_at: Any = None


_updated_at_decoder = msgspec.json.Decoder(_UpdatedAtOnly)


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
        """The entry as Python values (a fresh object each call: callers may keep it)."""
        return _json_decoder.decode(self.json_bytes)


def revision_of(json_bytes: bytes) -> str:
    return hashlib.blake2b(json_bytes, digest_size=8).hexdigest()


def _updated_at_ms_of(value: Any) -> float:
    if isinstance(value, dict):
        updated_at = value.get("updatedAt")
        if isinstance(updated_at, int | float) and not isinstance(updated_at, bool):
            return float(updated_at) if math.isfinite(updated_at) else 0.0
    return 0.0


def encode_entry(value: Any) -> StoredEntry:
    """Store a Python value (normally a dict). Non-finite floats encode as ``null`` like JS."""
    return StoredEntry(_json_encoder.encode(value), _updated_at_ms_of(value))


def decode_entry(entry: StoredEntry) -> Any:
    return _json_decoder.decode(entry.json_bytes)


def entry_from_json(raw: bytes | memoryview) -> StoredEntry:
    """Adopt an already-encoded JSON value (from a snapshot or journal) without a full decode.

    The bytes are re-emitted compact so the revision depends only on content, not on
    the indentation of the file it came from.
    """
    compact = msgspec.json.format(bytes(raw), indent=-1)
    try:
        updated_at = _updated_at_decoder.decode(compact).updated_at
    except msgspec.ValidationError:  # not an object: a string, array, null...
        return StoredEntry(compact, 0.0)
    if isinstance(updated_at, int | float) and not isinstance(updated_at, bool):
        return StoredEntry(compact, float(updated_at) if math.isfinite(updated_at) else 0.0)
    return StoredEntry(compact, 0.0)
