"""Loading and comparing the reference vectors (see tests/conformance/vectors/README).

The vector file is ``$SESSIOND_VECTORS`` when set, else ``vectors/public.jsonl`` next
to this module. Records are decoded into Python values with JS distinctions kept:

- ``null`` at a JSON Pointer listed in ``undef`` becomes
  :data:`~sessiond_client.jscompat.UNDEFINED`; other ``null`` stays ``None``;
- ``{"$js": "NaN" | "Infinity" | "-Infinity" | "-0"}`` become the float values;
- ``{"$js": "function", "name": ...}`` becomes a :class:`JsFunction` marker.

:func:`first_difference` compares a port's result with the recorded one: UNDEFINED,
None and a missing key all differ, NaN equals NaN, ``-0.0`` differs from ``0.0``, and
``int``/``float`` compare as JS numbers (IEEE doubles). Test modules tag each test
with ``record_property(CONFORMANCE_FN_PROPERTY, fn)`` so conftest can count per
function. Test support only: reads the vector file, nothing else.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeGuard

from sessiond_client.jscompat import UNDEFINED

__all__ = [
    "CONFORMANCE_FN_PROPERTY",
    "DEFAULT_VECTORS_PATH",
    "FILE_BASED_FNS",
    "VECTORS_ENV",
    "JsFunction",
    "Vector",
    "decode_js_value",
    "first_difference",
    "js_equal",
    "load_vectors",
    "vectors_path",
]

VECTORS_ENV: Final = "SESSIOND_VECTORS"
DEFAULT_VECTORS_PATH: Final = Path(__file__).resolve().parent / "vectors" / "public.jsonl"
FILE_BASED_FNS: Final = frozenset(
    {"loadSessionStore", "updateLastRoute", "updateSessionStoreEntry", "sessionStoreSequence"}
)
CONFORMANCE_FN_PROPERTY: Final = "conformance_fn"

_NUMBER_TAGS: Final = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
    "-0": -0.0,
}


@dataclass(frozen=True)
class JsFunction:
    """A JS function value (only recorded as ``received`` for inherited keys)."""

    name: str


@dataclass(frozen=True)
class Vector:
    """One decoded record. ``args`` shorter than a signature means arguments omitted."""

    id: str
    fn: str
    args: list[object]
    result: object
    throws: str | None = None
    error_name: str | None = None
    env: dict[str, str] | None = None
    now: int | None = None
    setup: dict[str, object] | None = None
    note: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def arg(self, index: int) -> object:
        """The ``index``-th argument, UNDEFINED when fewer were passed."""
        return self.args[index] if index < len(self.args) else UNDEFINED

    @property
    def test_id(self) -> str:
        return f"{self.id}-{self.fn}"


def vectors_path() -> Path:
    override = os.environ.get(VECTORS_ENV)
    return Path(override) if override else DEFAULT_VECTORS_PATH


def decode_js_value(value: object) -> object:
    """Replace ``$js`` tags (non-JSON numbers, functions) inside a parsed JSON value."""
    if isinstance(value, list):
        return [decode_js_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    tag = value.get("$js")
    if isinstance(tag, str) and set(value) <= {"$js", "name"}:
        if tag in _NUMBER_TAGS:
            return _NUMBER_TAGS[tag]
        if tag == "function":
            return JsFunction(str(value.get("name", "")))
    return {key: decode_js_value(item) for key, item in value.items()}


def _pointer_parts(pointer: str) -> list[str]:
    if not pointer.startswith("/"):
        raise ValueError(f"not a JSON pointer: {pointer!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _mark_undefined(root: dict[str, Any], pointer: str) -> None:
    *parents, last = _pointer_parts(pointer)
    node: Any = root
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = UNDEFINED
    elif isinstance(node, dict):
        node[last] = UNDEFINED
    else:
        raise ValueError(f"undef pointer {pointer!r} does not name a container slot")


def _decode_record(record: dict[str, Any]) -> Vector:
    decoded: Any = decode_js_value(record)
    for pointer in record.get("undef") or []:
        _mark_undefined(decoded, str(pointer))
    args = decoded.get("args", [])
    return Vector(
        id=str(record["id"]),
        fn=str(record["fn"]),
        args=args if isinstance(args, list) else [args],
        result=decoded.get("result"),
        throws=record.get("throws"),
        error_name=record.get("errorName"),
        env=record.get("env"),
        now=record.get("now"),
        setup=decoded.get("setup"),
        note=record.get("note"),
        raw=record,
    )


def _read_records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"{path}:{number}: a record must be a JSON object")
                yield record


def load_vectors(path: Path | None = None, *, fns: Iterable[str] | None = None) -> list[Vector]:
    """Every record of the vector file (optionally only those whose ``fn`` is in ``fns``)."""
    wanted = None if fns is None else frozenset(fns)
    return [
        _decode_record(record)
        for record in _read_records(path or vectors_path())
        if wanted is None or record.get("fn") in wanted
    ]


# --- comparison ---------------------------------------------------------------------


def _as_double(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _same_number(actual: int | float, expected: int | float) -> bool:
    a, b = _as_double(actual), _as_double(expected)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and (a != 0 or math.copysign(1.0, a) == math.copysign(1.0, b))


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dict_difference(
    actual: dict[str, object], expected: dict[str, object], where: str, check_order: bool
) -> str | None:
    missing = [key for key in expected if key not in actual]
    extra = [key for key in actual if key not in expected]
    if missing or extra:
        return f"{where or '/'}: missing keys {missing}, unexpected keys {extra}"
    if check_order and list(actual) != list(expected):
        return f"{where or '/'}: key order {list(actual)} != {list(expected)}"
    for key, value in expected.items():
        found = first_difference(
            actual[key], value, check_order=check_order, where=f"{where}/{key}"
        )
        if found:
            return found
    return None


def first_difference(
    actual: object, expected: object, *, check_order: bool = False, where: str = ""
) -> str | None:
    """Where ``actual`` and ``expected`` differ as JS values, or None if they match."""
    mismatch = f"{where or '/'}: {actual!r} != {expected!r}"
    if _is_number(actual) and _is_number(expected):
        return None if _same_number(actual, expected) else mismatch
    if isinstance(expected, list) and isinstance(actual, list):
        if len(actual) != len(expected):
            return f"{where or '/'}: length {len(actual)} != {len(expected)}"
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            found = first_difference(got, want, check_order=check_order, where=f"{where}/{index}")
            if found:
                return found
        return None
    if isinstance(expected, dict) and isinstance(actual, dict):
        return _dict_difference(actual, expected, where, check_order)
    if type(actual) is not type(expected) or actual != expected:
        return mismatch
    return None


def js_equal(actual: object, expected: object, *, check_order: bool = False) -> bool:
    """True when :func:`first_difference` finds nothing."""
    return first_difference(actual, expected, check_order=check_order) is None
