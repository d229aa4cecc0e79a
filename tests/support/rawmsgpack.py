"""MessagePack built by hand, for payloads encoders refuse to produce (invalid UTF-8 in a
string, nesting no encoder would recurse into) and for reading replies' raw bytes."""

from __future__ import annotations

import struct
from typing import Any

import msgspec

__all__ = ["RawEntryReply", "array_chain", "map_of", "raw_str", "value"]


def raw_str(data: bytes) -> bytes:
    """A msgpack *str* holding exactly ``data`` (which need not be valid UTF-8)."""
    size = len(data)
    if size < 32:
        return bytes([0xA0 | size]) + data
    if size < 1 << 8:
        return b"\xd9" + bytes([size]) + data
    if size < 1 << 16:
        return b"\xda" + struct.pack(">H", size) + data
    return b"\xdb" + struct.pack(">I", size) + data


def value(item: Any) -> bytes:
    """``item`` encoded by msgspec (for the parts of a payload that are ordinary)."""
    return msgspec.msgpack.encode(item)


def map_of(*pairs: tuple[bytes, bytes]) -> bytes:
    """A msgpack map of already-encoded (key, value) pairs, in this order."""
    size = len(pairs)
    if size < 16:
        head = bytes([0x80 | size])
    elif size < 1 << 16:
        head = b"\xde" + struct.pack(">H", size)
    else:
        head = b"\xdf" + struct.pack(">I", size)
    return head + b"".join(key + item for key, item in pairs)


def array_chain(depth: int, leaf: bytes = b"\x01") -> bytes:
    """``[[[...[leaf]...]]]`` with ``depth`` arrays (one byte per level)."""
    return b"\x91" * depth + leaf


class RawEntry(msgspec.Struct):
    key: str
    entry: msgspec.Raw
    revision: str


class RawEntryReply(msgspec.Struct):
    """A reply whose result is one ``{key, entry, revision}``, the entry kept as raw bytes."""

    id: int | None
    ok: bool
    result: RawEntry | None = None
    error: dict[str, str] | None = None
    seq: int | None = None
