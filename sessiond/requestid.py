"""The ``id`` of a request that cannot be decoded. Pure: no I/O.

A request whose payload fails to decode still deserves an error reply that carries its
id, so that a pipelining client can tell which call failed. The failure may be anywhere
(invalid UTF-8 in ``op``, a value nested a hundred thousand levels deep), so the id is
found by a shallow, iterative walk of the payload's top-level msgpack map: every value
but ``id`` is skipped by counting, never decoded or recursed into.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["request_id_of"]

_FIXED_SIZES: Final = {
    0xC0: 0, 0xC2: 0, 0xC3: 0,  # nil, false, true
    0xCA: 4, 0xCB: 8,  # float 32/64
    0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,  # uint
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,  # int
    0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17,  # fixext (type byte included)
}  # fmt: skip
_LENGTH_PREFIXED: Final = {
    0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0),  # bin: (length bytes, extra type byte)
    0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1),  # ext
    0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),  # str
}  # fmt: skip
_INTS: Final = {
    0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
    0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q",
}  # fmt: skip


class _Truncated(Exception):
    pass


def _unsigned(data: bytes, offset: int, size: int) -> int:
    if offset + size > len(data):
        raise _Truncated
    return int.from_bytes(data[offset : offset + size], "big")


def _header(data: bytes, offset: int) -> tuple[int, int, int]:
    """(bytes taken by the item itself, child items it contains, header size) at ``offset``."""
    if offset >= len(data):
        raise _Truncated
    byte = data[offset]
    if byte <= 0x7F or byte >= 0xE0:
        return 1, 0, 1
    if 0x80 <= byte <= 0x8F:
        return 1, 2 * (byte & 0x0F), 1
    if 0x90 <= byte <= 0x9F:
        return 1, byte & 0x0F, 1
    if 0xA0 <= byte <= 0xBF:
        return 1 + (byte & 0x1F), 0, 1
    if byte in _FIXED_SIZES:
        return 1 + _FIXED_SIZES[byte], 0, 1
    if byte in _LENGTH_PREFIXED:
        length_bytes, type_byte = _LENGTH_PREFIXED[byte]
        length = _unsigned(data, offset + 1, length_bytes)
        return 1 + length_bytes + type_byte + length, 0, 1
    if byte in (0xDC, 0xDD):  # array 16/32
        size = 2 if byte == 0xDC else 4
        return 1 + size, _unsigned(data, offset + 1, size), 1 + size
    if byte in (0xDE, 0xDF):  # map 16/32
        size = 2 if byte == 0xDE else 4
        return 1 + size, 2 * _unsigned(data, offset + 1, size), 1 + size
    raise _Truncated  # 0xC1: never used


def _skip(data: bytes, offset: int) -> int:
    """The offset after the whole item at ``offset``, walking nested items by counting."""
    pending = 1
    while pending:
        taken, children, _ = _header(data, offset)
        offset += taken
        pending += children - 1
    if offset > len(data):
        raise _Truncated
    return offset


def _int_at(data: bytes, offset: int) -> int | None:
    byte = data[offset]
    if byte <= 0x7F:
        return byte
    if byte >= 0xE0:
        return byte - 0x100
    fmt = _INTS.get(byte)
    if fmt is None:
        return None
    size = struct.calcsize(fmt)
    if offset + 1 + size > len(data):
        raise _Truncated
    return int(struct.unpack_from(fmt, data, offset + 1)[0])


def request_id_of(payload: bytes) -> int | None:
    """The integer ``id`` of the top-level map in ``payload``, or None if there is none."""
    try:
        _, children, header = _header(payload, 0)
        byte = payload[0]
        if not (0x80 <= byte <= 0x8F or byte in (0xDE, 0xDF)):
            return None
        offset = header
        for _ in range(children // 2):
            key_end = _skip(payload, offset)
            is_id = payload[offset:key_end] in (b"\xa2id", b"\xd9\x02id")
            if is_id:
                return _int_at(payload, key_end)
            offset = _skip(payload, key_end)
    except (_Truncated, IndexError, struct.error):
        return None
    return None
