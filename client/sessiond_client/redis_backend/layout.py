"""Where the Redis backend keeps each agent's store, and in which format. Pure: no I/O.

Every key of agent ``A`` starts with the hash tag ``{sessiond:A}``, so one agent's keys
live in one cluster slot and every server-side function touches one slot (Redis Cluster,
Valkey cluster mode). Agent ids are in normal form (``[A-Za-z0-9_-]``), so they cannot
break out of the tag.

| key | type | holds |
|---|---|---|
| ``{sessiond:A}:e`` | hash | session key → stored value (below) |
| ``{sessiond:A}:i`` | sorted set | ``list`` order: members (sort position + key) scored 0 |
| ``{sessiond:A}:s`` | string | the store's ``seq``: one per change |
| ``{sessiond:A}:w`` | stream | the change feed for ``watch``: entry id ``0-<seq>`` |
| ``{sessiond:A}:t:<token>`` | string, expires | a request token's write (``<seq>|<msgpack>``) |
| ``{sessiond:A}:x:<id>``, ``:x:<id>:e``, ``:x:<id>:i`` | expire | an export's copy |
| ``{sessiond:A}:m:<id>`` | hash, expires | an import's staged entries |

A **stored value** is ``<revision: 16 hex chars><sort position: 8 bytes><compact JSON>``,
so a compare-and-set compares 16 bytes and any function can find the entry's index
member without decoding JSON. The **sort position** is ``-updatedAt`` (0 when absent) as
an IEEE-754 double made byte-comparable (sign bit flipped, or every bit for negatives),
so ``ZRANGE ... BYLEX`` walks entries newest first, then by key in code-point order
(UTF-8 byte order): the daemon's order. A ``list`` cursor is the daemon's own cursor
(the sort position and the key of the last item), mapped to the member to start after.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Final

import msgspec

from sessiond_client.entry_json import (
    REVISION_CHARS,
    encode_entry_json,
    revision_of,
    updated_at_ms_of,
    without_lone_surrogates,
)
from sessiond_client.jscompat import js_truthy
from sessiond_client.listing import SortKey

__all__ = [
    "SORT_BYTES",
    "AgentKeys",
    "StoredValue",
    "index_member",
    "sort_bytes",
    "sort_key_of_member",
    "stored_value",
]

SORT_BYTES: Final = 8
_PREFIX_BYTES: Final = REVISION_CHARS + SORT_BYTES
_DOUBLE: Final = struct.Struct(">d")
_UNSIGNED: Final = struct.Struct(">Q")
_SIGN_BIT: Final = 1 << 63
_ALL_BITS: Final = (1 << 64) - 1
_json_decoder = msgspec.json.Decoder()
_OBJECT_OR_ARRAY: Final = frozenset(b"{[")


class AgentKeys:
    """The key names of one agent's store."""

    __slots__ = ("agent_id", "entries", "index", "seq", "stream", "tag")

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.tag = f"{{sessiond:{agent_id}}}"
        self.entries = f"{self.tag}:e"
        self.index = f"{self.tag}:i"
        self.seq = f"{self.tag}:s"
        self.stream = f"{self.tag}:w"

    def token(self, token: str | None) -> str:
        """The key of a request token (a placeholder in the same slot when there is none:
        a function must name every key it may touch)."""
        return f"{self.tag}:t:{token}" if token is not None else f"{self.tag}:t"

    def export_keys(self, export_id: str) -> tuple[str, str, str]:
        """(entries copy, index copy, marker holding the seq) of one export."""
        base = f"{self.tag}:x:{export_id}"
        return f"{base}:e", f"{base}:i", base

    def staged(self, import_id: str) -> str:
        return f"{self.tag}:m:{import_id}"

    @staticmethod
    def agent_of_seq_key(name: bytes | str) -> str | None:
        """The agent whose ``seq`` key this is (for listing agents), else None."""
        text = name.decode() if isinstance(name, bytes) else name
        if text.startswith("{sessiond:") and text.endswith("}:s"):
            return text[len("{sessiond:") : -len("}:s")]
        return None


def sort_bytes(updated_at_ms: float) -> bytes:
    """``-updated_at_ms`` as 8 bytes whose byte order is the numbers' order."""
    negated = -updated_at_ms + 0.0  # + 0.0: -0.0 and 0.0 are one position
    (bits,) = _UNSIGNED.unpack(_DOUBLE.pack(negated))
    bits = bits ^ _ALL_BITS if bits & _SIGN_BIT else bits | _SIGN_BIT
    return _UNSIGNED.pack(bits)


def _negated_updated_at(position: bytes) -> float:
    (bits,) = _UNSIGNED.unpack(position)
    bits = bits ^ _SIGN_BIT if bits & _SIGN_BIT else bits ^ _ALL_BITS
    value: float = _DOUBLE.unpack(_UNSIGNED.pack(bits))[0]
    return value


def index_member(position: SortKey) -> bytes:
    """The sorted-set member of a ``list`` position (``(-updatedAt, key)``)."""
    negated_updated_at, key = position
    return sort_bytes(-negated_updated_at) + key.encode("utf-8", "surrogatepass")


def sort_key_of_member(member: bytes) -> SortKey:
    """The ``list`` position of a sorted-set member (inverse of :func:`index_member`)."""
    return (
        _negated_updated_at(member[:SORT_BYTES]) + 0.0,
        member[SORT_BYTES:].decode("utf-8", "surrogatepass"),
    )


def stored_value(value: Any) -> tuple[bytes, bytes, bool]:
    """``value`` as stored (revision + sort position + compact JSON), its JSON, and
    whether ``value`` itself is exactly what was stored (see ``encode_entry_json``)."""
    json_bytes, exact = encode_entry_json(value)
    prefix = revision_of(json_bytes).encode() + sort_bytes(updated_at_ms_of(value))
    return prefix + json_bytes, json_bytes, exact


class StoredValue:
    """One stored value as read from Redis."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @property
    def revision(self) -> str:
        return self.raw[:REVISION_CHARS].decode()

    @property
    def json_bytes(self) -> bytes:
        return self.raw[_PREFIX_BYTES:]

    @property
    def updated_at_ms(self) -> float:
        return -_negated_updated_at(self.raw[REVISION_CHARS:_PREFIX_BYTES]) + 0.0

    @property
    def is_object(self) -> bool:
        return self.raw[_PREFIX_BYTES : _PREFIX_BYTES + 1] == b"{"

    @property
    def is_truthy(self) -> bool:
        """JS truthiness: ``null``, ``false``, ``0`` and ``""`` are not sessions."""
        first = self.raw[_PREFIX_BYTES : _PREFIX_BYTES + 1]
        return bool(first) and (first[0] in _OBJECT_OR_ARRAY or js_truthy(self.exact_value()))

    def value(self) -> Any:
        """The entry as a reply shows it (lone surrogates as U+FFFD, as the daemon does)."""
        try:
            return _json_decoder.decode(self.json_bytes)
        except msgspec.DecodeError:  # lone surrogate escapes: msgspec cannot read them
            return without_lone_surrogates(json.loads(self.json_bytes))

    def exact_value(self) -> Any:
        """The entry exactly as stored (for merges)."""
        try:
            return _json_decoder.decode(self.json_bytes)
        except msgspec.DecodeError:
            return json.loads(self.json_bytes)
