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

Lone UTF-16 surrogates: the original's files may hold them (``JSON.stringify`` writes a
string that ``slice`` cut inside an emoji as ``"\\ud83d"``). They are kept, as that
escape, through load → update → flush; msgspec cannot decode or encode them, so such an
entry (rare) takes the stdlib ``json`` path. :meth:`StoredEntry.exact_value` returns them
as they are; :meth:`StoredEntry.value` (what replies carry) shows each as U+FFFD, because
msgpack strings are UTF-8.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Final

import msgspec

from sessiond_client.jscompat import js_truthy

__all__ = [
    "StoredEntry",
    "encode_entry",
    "encode_entry_for_wire",
    "encode_json_slowly",
    "entry_from_json",
    "revision_of",
]

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


class _UpdatedAtOnly(msgspec.Struct, rename="camel"):
    updated_at: Any = None


_updated_at_decoder = msgspec.json.Decoder(_UpdatedAtOnly)
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
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
            return _without_lone_surrogates(json.loads(self.json_bytes))

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


def revision_of(json_bytes: bytes) -> str:
    return hashlib.blake2b(json_bytes, digest_size=8).hexdigest()


def _updated_at_ms_of(value: Any) -> float:
    if isinstance(value, dict):
        updated_at = value.get("updatedAt")
        if isinstance(updated_at, (int, float)) and not isinstance(updated_at, bool):
            return float(updated_at) if math.isfinite(updated_at) else 0.0
    return 0.0


def encode_entry(value: Any) -> StoredEntry:
    """Store a Python value (normally a dict) as ``JSON.stringify`` would write it:
    non-finite floats as ``null``, ``-0.0`` as ``0``."""
    return encode_entry_for_wire(value)[0]


def encode_entry_for_wire(value: Any) -> tuple[StoredEntry, bool]:
    """:func:`encode_entry`, and whether ``value`` itself is what was stored and can go on
    the wire as the entry (false after ``-0.0`` was rewritten, or with a lone surrogate,
    which msgpack cannot carry)."""
    try:
        json_bytes = _json_encoder.encode(value)
        if b"-0.0" in json_bytes:  # rare; a string or -0.05 also match, and stay as they are
            finite = _finite(value)
            return StoredEntry(_json_encoder.encode(finite), _updated_at_ms_of(value)), False
    except UnicodeEncodeError:  # a lone surrogate: write it as JSON.stringify does
        return StoredEntry(encode_json_slowly(value), _updated_at_ms_of(value)), False
    return StoredEntry(json_bytes, _updated_at_ms_of(value)), True


def encode_json_slowly(value: Any, *, indent: int | None = None) -> bytes:
    """JSON as ``JSON.stringify`` writes it, for values msgspec cannot encode: lone
    surrogates as ``\\udXXX`` escapes, non-finite numbers as null."""
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(
        _finite(value), ensure_ascii=False, indent=indent, separators=separators, allow_nan=False
    )
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text).encode()


def _finite(value: Any) -> Any:
    """``value`` as ``JSON.stringify`` sees its numbers: non-finite floats None, -0.0 0."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, float) and value == 0:
        return 0
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _without_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    return value


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
    if isinstance(updated_at, (int, float)) and not isinstance(updated_at, bool):
        return StoredEntry(compact, float(updated_at) if math.isfinite(updated_at) else 0.0)
    return StoredEntry(compact, 0.0)
