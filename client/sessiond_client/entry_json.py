"""How an entry is stored: its compact JSON, its revision and its ``updatedAt``. Pure.

An entry is kept as the compact JSON ``JSON.stringify`` would write (non-finite floats
as ``null``, ``-0.0`` as ``0``, lone UTF-16 surrogates as ``\\udXXX`` escapes), and its
revision is the 64-bit BLAKE2b digest of those bytes in hex: a content hash, so it
needs no state of its own and is the same wherever the entry is stored (the daemon's
files, Redis) — an entry moved from one to the other keeps its revision.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Final

import msgspec

__all__ = [
    "REVISION_CHARS",
    "encode_entry_json",
    "encode_json_slowly",
    "revision_of",
    "updated_at_ms_of",
    "without_lone_surrogates",
]

REVISION_CHARS: Final = 16
_json_encoder = msgspec.json.Encoder()
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def revision_of(json_bytes: bytes) -> str:
    """The revision of an entry stored as ``json_bytes`` (16 hex characters)."""
    return hashlib.blake2b(json_bytes, digest_size=8).hexdigest()


def updated_at_ms_of(value: Any) -> float:
    """The entry's ``updatedAt`` for ordering and idle checks: 0 when it is absent or not
    a finite number (such entries sort last)."""
    if isinstance(value, dict):
        updated_at = value.get("updatedAt")
        # A tuple, not ``int | float``: that builds a union object on every call (~50 ns,
        # and the daemon calls this on every write).
        if isinstance(updated_at, (int, float)) and not isinstance(updated_at, bool):
            return float(updated_at) if math.isfinite(updated_at) else 0.0
    return 0.0


def encode_entry_json(value: Any) -> tuple[bytes, bool]:
    """``value`` as ``JSON.stringify`` writes it (compact), and whether ``value`` itself
    is exactly what was stored (false after ``-0.0`` was rewritten, or with a lone
    surrogate, which msgpack cannot carry)."""
    try:
        json_bytes = _json_encoder.encode(value)
        if b"-0.0" in json_bytes:  # rare; a string or -0.05 also match, and stay as they are
            return _json_encoder.encode(_finite(value)), False
    except UnicodeEncodeError:  # a lone surrogate: write it as JSON.stringify does
        return encode_json_slowly(value), False
    return json_bytes, True


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


def without_lone_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate shown as U+FFFD (msgpack strings are UTF-8)."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {without_lone_surrogates(k): without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_lone_surrogates(item) for item in value]
    return value
