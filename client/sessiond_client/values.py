"""The value model: what an entry may hold, checked before anything is applied. Pure: no I/O.

Entries are JSON values, and one answer holds everywhere: what a write's reply shows is
what a later ``get`` returns and what the store file holds. So a write is refused with
``invalid_request`` (nothing applied, the connection kept) when it carries anything JSON
cannot hold: a non-finite float, msgpack binary, ext or timestamp values, a map key that
is not a string, nesting deeper than ``max_depth`` or more than ``max_fields`` members
and array items in all. (Strings that are not valid UTF-8 never get this far: decoding
the request fails, see :mod:`sessiond.server`.) The walk is iterative, so a hostile
nesting cannot exhaust the interpreter's stack, and it stops at the first excess, so
it costs at most ``max_fields`` steps whatever the request holds.

Integers read from a file may be wider than the 64 bits msgpack carries (JSON has no
limit; ``JSON.parse`` reads them as doubles): :func:`wire_safe` turns such integers into
the double the gateway would have read, for replies only.
"""

from __future__ import annotations

import math
from typing import Any, Final

from sessiond_client.errors import InvalidRequestError

__all__ = ["MAX_WIRE_INT", "MIN_WIRE_INT", "check_json_value", "wire_safe"]

MIN_WIRE_INT: Final = -(2**63)
MAX_WIRE_INT: Final = 2**64 - 1
_SCALARS: Final = (str, bool, int, float, type(None))


def _kind(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return "binary data"
    return f"a {type(value).__name__} value"


def check_json_value(value: Any, *, where: str, max_depth: int, max_fields: int) -> None:
    """Raise :class:`InvalidRequestError` unless ``value`` is a JSON value within the bounds.

    ``value`` itself is at depth 1 (an entry is an object: its fields are at depth 2).
    ``where`` names the value in the message (``"patch"``, ``"entry"``...).
    """
    _check_scalar(value, where)
    fields = 0
    stack: list[tuple[Any, int, str]] = [(value, 1, where)]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, _SCALARS):
            continue
        is_map = isinstance(item, dict)
        if not is_map and not isinstance(item, list):
            raise InvalidRequestError(f"{path} is {_kind(item)}, which JSON cannot hold")
        if item and depth >= max_depth:  # its members would be deeper than the limit
            raise InvalidRequestError(f"{path} is nested deeper than the limit of {max_depth}")
        fields += len(item)
        if fields > max_fields:
            raise InvalidRequestError(
                f"{where} has more than the limit of {max_fields} fields and array items"
            )
        for name, member in item.items() if is_map else enumerate(item):
            if is_map and not isinstance(name, str):
                raise InvalidRequestError(
                    f"{path} has a {type(name).__name__} key: object keys must be strings"
                )
            member_path = f"{path}.{name}" if is_map else f"{path}[{name}]"
            _check_scalar(member, member_path)
            if not isinstance(member, _SCALARS):
                stack.append((member, depth + 1, member_path))


def _check_scalar(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequestError(f"{path} is {value!r}: JSON numbers must be finite")


def wire_safe(value: Any) -> Any:
    """``value`` with integers beyond msgpack's 64 bits turned into doubles, as
    ``JSON.parse`` reads them. Returns ``value`` itself when nothing needed changing."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value) if not MIN_WIRE_INT <= value <= MAX_WIRE_INT else value
    if isinstance(value, dict):
        converted = {key: wire_safe(item) for key, item in value.items()}
        changed = any(converted[key] is not item for key, item in value.items())
        return converted if changed else value
    if isinstance(value, list):
        items = [wire_safe(item) for item in value]
        changed = any(new is not old for new, old in zip(items, value, strict=True))
        return items if changed else value
    return value
