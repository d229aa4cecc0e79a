"""Checking a config file's data, with errors a person can act on. Pure: no I/O.

msgspec validates, but says ``Expected `float`, got `str` - at `$.agents[...].idle_minutes```.
Here every section (and every ``[agents.<id>]`` table) is checked on its own, so an
error names the file and the key as TOML spells them (``[agents.ops] idle_minutes``),
says what was expected (a type, or the allowed values), and for an unknown key suggests
the nearest known one.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = ["check_table", "describe_error"]

TYPE_NAMES = {
    "float": "a number",
    "int": "an integer",
    "str": "a string",
    "bool": "a boolean",
    "object": "a table",
    "array": "an array",
    "null": "nothing",
}
_AT = re.compile(r" - at `\$(.*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]*)`")
_ENUM = re.compile(r"Invalid enum value (.*)")


def _where(table: str, key: str | None) -> str:
    return f"[{table}] {key}" if table and key else f"[{table}]" if table else str(key)


def _struct_of(annotation: Any) -> type[msgspec.Struct] | None:
    """The Struct type inside ``annotation`` (``T``, ``T | None``), if any."""
    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
            return candidate
    return None


def _field_type(struct: type[msgspec.Struct], name: str) -> Any:
    for field in msgspec.structs.fields(struct):
        if field.encode_name == name:
            return field.type
    return None


def _allowed_values(annotation: Any) -> list[Any]:
    values: list[Any] = []
    for part in [annotation, *typing.get_args(annotation)]:
        if typing.get_origin(part) is typing.Literal:
            values.extend(typing.get_args(part))
    return values


def describe_error(struct: type[msgspec.Struct], table: str, error: msgspec.ValidationError) -> str:
    """``error`` from converting ``table`` to ``struct``, as ``[table] key: what``."""
    message = str(error)
    at = _AT.search(message)
    path = at.group(1) if at else ""
    message = _AT.sub("", message)
    keys = [part for part in re.split(r"\.|\[[^\]]*\]", path) if part]
    owner: type[msgspec.Struct] | None = struct
    for key in keys[:-1]:
        owner = _struct_of(_field_type(owner, key)) if owner is not None else None
        table = f"{table}.{key}" if table else key
    key = keys[-1] if keys else None
    enum = _ENUM.match(message)
    if enum and owner is not None and key is not None:
        allowed = ", ".join(repr(value) for value in _allowed_values(_field_type(owner, key)))
        return f"{_where(table, key)}: {enum.group(1)} is not one of {allowed}"
    message = message.replace("Expected `", "expected ").replace("`, got `", ", got ")
    for msgspec_name, toml_name in TYPE_NAMES.items():
        message = re.sub(rf"\b{msgspec_name}\b", toml_name, message)
    return f"{_where(table, key)}: {message.rstrip('`')}"


def _unknown_keys(struct: type[msgspec.Struct], table: str, data: Mapping[str, Any]) -> str | None:
    known = [field.encode_name for field in msgspec.structs.fields(struct)]
    for key in data:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f" (known: {', '.join(known)})"
            return f"{_where(table, key)}: unknown key{hint}"
    return None


def check_table(struct: type[msgspec.Struct], table: str, data: Any) -> str | None:
    """The first problem of ``data`` as the table ``table`` of type ``struct``, or None.

    Nested tables are checked first, so an error names the innermost table."""
    if not isinstance(data, Mapping):
        return f"{_where(table, None)}: expected a table, got {type(data).__name__}"
    unknown = _unknown_keys(struct, table, data)
    if unknown is not None:
        return unknown
    for key, value in data.items():
        nested = _struct_of(_field_type(struct, key))
        if nested is not None and isinstance(value, Mapping):
            problem = check_table(nested, f"{table}.{key}" if table else key, value)
            if problem is not None:
                return problem
    try:
        msgspec.convert(dict(data), struct)
    except msgspec.ValidationError as error:
        return describe_error(struct, table, error)
    return None
