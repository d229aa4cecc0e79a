"""JavaScript value semantics the parity layer depends on. Pure: no I/O.

The session store sessiond replaces was TypeScript. Its key and path helpers lean on
JS behaviour that Python does not share, and the reference vectors pin that
behaviour down. This module owns those differences and nothing else:

- :data:`UNDEFINED` is JS ``undefined``; ``None`` stands for JS ``null``.
- Strings: ``String#trim`` and ``/\\s/`` whitespace, ``toLowerCase``, UTF-16 length
  and slicing, ``String#replace`` substitution patterns.
- Values: truthiness, ``??``, property access (plain and ``?.``), ``ToString``
  (template literals), ``ToNumber`` and ``Math.max``, ``Number#toString``.
- Objects: JS key enumeration order (integer-like keys first).
- Paths: Node's POSIX ``path.normalize`` / ``join`` / ``resolve``.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from typing import Final, Literal

__all__ = [
    "JS_WHITESPACE",
    "UNDEFINED",
    "Undefined",
    "is_array_index_key",
    "is_nullish",
    "js_code_units",
    "js_get",
    "js_key_order",
    "js_length",
    "js_lower",
    "js_math_max",
    "js_number_to_python",
    "js_number_to_string",
    "js_optional_get",
    "js_path_join",
    "js_path_normalize",
    "js_path_resolve",
    "js_slice",
    "js_substitution",
    "js_to_number",
    "js_to_string",
    "js_trim",
    "js_truthy",
]


class Undefined(enum.Enum):
    """The type of :data:`UNDEFINED`; an enum so ``x is UNDEFINED`` narrows types."""

    UNDEFINED = "undefined"

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = Undefined.UNDEFINED
"""JS ``undefined``: a missing argument, or a key present with no value."""

JS_WHITESPACE: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
"""What ``String#trim`` strips and ``/\\s/`` matches (WhiteSpace + LineTerminator).

Python's ``str.strip()`` differs: it also strips ``\\x1c``-``\\x1f`` and ``\\x85`` and
does not strip ``\\ufeff``.
"""

_MAX_ARRAY_INDEX: Final = 4294967294  # 2**32 - 2: larger integer keys are plain strings
_MAX_SAFE_INTEGER: Final = 2**53

# Case pairs that Node 20's ICU (Unicode 16) lowercases but Python 3.11 (Unicode 14)
# does not know yet; everything else in ``str.lower`` matches ``toLowerCase``.
_NEWER_LOWERCASE: Final[dict[int, int]] = {
    0x1C89: 0x1C8A,
    0xA7CB: 0x0264,
    0xA7CC: 0xA7CD,
    0xA7CE: 0xA7CF,
    0xA7D2: 0xA7D3,
    0xA7D4: 0xA7D5,
    0xA7DA: 0xA7DB,
    0xA7DC: 0x019B,
    **{cp: cp + 0x20 for cp in range(0x10D50, 0x10D66)},
    **{cp: cp + 0x1B for cp in range(0x16EA0, 0x16EB9)},
}

_DECIMAL_LITERAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_RADIX_LITERAL = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")
_RADIX_BASES: Final = {"x": 16, "o": 8, "b": 2}


# --- values -------------------------------------------------------------------------


def is_nullish(value: object) -> bool:
    """``value == null`` in JS: ``None`` or :data:`UNDEFINED` (what ``??`` skips)."""
    return value is None or value is UNDEFINED


def js_truthy(value: object) -> bool:
    """JS ``Boolean(value)``: objects and arrays are truthy even when empty."""
    if value is None or value is UNDEFINED:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value != 0 and not math.isnan(value)
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        return value != ""
    return True


def js_get(obj: object, key: str) -> object:
    """``obj[key]``: a TypeError on null/undefined, :data:`UNDEFINED` when absent.

    Mappings stand for plain objects (own keys only: ``Object.prototype`` members such
    as ``constructor`` are not modelled); other values have no properties but ``length``.
    """
    if isinstance(obj, Mapping):
        return obj.get(key, UNDEFINED)
    if obj is None or obj is UNDEFINED:
        shown = "null" if obj is None else "undefined"
        raise TypeError(f"Cannot read properties of {shown} (reading '{key}')")
    if key == "length" and isinstance(obj, str | list):
        return js_length(obj) if isinstance(obj, str) else len(obj)
    return UNDEFINED


def js_optional_get(obj: object, key: str) -> object:
    """``obj?.[key]``: :data:`UNDEFINED` when ``obj`` is null or undefined."""
    if obj is None or obj is UNDEFINED:
        return UNDEFINED
    return js_get(obj, key)


# --- strings ------------------------------------------------------------------------


def js_trim(text: str) -> str:
    """``String#trim``: strips exactly the JS whitespace set."""
    return text.strip(JS_WHITESPACE)


def js_lower(text: str) -> str:
    """``String#toLowerCase`` (``İ`` → ``i̇``, Kelvin sign → ``k``, final sigma)."""
    if text.isascii():
        return text.lower()
    return text.lower().translate(_NEWER_LOWERCASE)


def js_code_units(text: str) -> list[str]:
    """The UTF-16 code units of ``text``, each as a one-character string.

    Characters outside the BMP become two lone surrogates, as JS indexes them.
    """
    if text.isascii():
        return list(text)
    raw = text.encode("utf-16-le", "surrogatepass")
    return [raw[i : i + 2].decode("utf-16-le", "surrogatepass") for i in range(0, len(raw), 2)]


def js_length(text: str) -> int:
    """``String#length``: UTF-16 code units, so an emoji counts 2."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for ch in text if ch > "\uffff")


def js_slice(text: str, start: int, end: int | None = None) -> str:
    """``String#slice`` on UTF-16 code units (may split a surrogate pair)."""
    if text.isascii():
        return text[start:end]
    raw = text.encode("utf-16-le", "surrogatepass")
    first, stop, _ = slice(start, end).indices(len(raw) // 2)
    if stop <= first:
        return ""
    return raw[2 * first : 2 * stop].decode("utf-16-le", "surrogatepass")


def js_substitution(replacement: str, matched: str, before: str, after: str) -> str:
    """Expand ``$$ $& $` $'`` in a ``String#replace`` replacement (no capture groups)."""
    if "$" not in replacement:
        return replacement
    expansions = {"$": "$", "&": matched, "`": before, "'": after}
    out: list[str] = []
    i = 0
    while i < len(replacement):
        ch = replacement[i]
        follower = replacement[i + 1 : i + 2]
        if ch == "$" and follower in expansions and follower:
            out.append(expansions[follower])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# --- conversions --------------------------------------------------------------------


def js_to_string(value: object) -> str:
    """JS ``String(value)`` as a template literal applies it to JSON-shaped values."""
    if isinstance(value, str):
        return value
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return js_number_to_string(value)
    if isinstance(value, list):
        return ",".join("" if is_nullish(item) else js_to_string(item) for item in value)
    return "[object Object]"


def js_number_to_string(number: float) -> str:
    """``Number#toString()``: ``1e21`` → ``"1e+21"``, ``-0`` → ``"0"``, ``3.0`` → ``"3"``."""
    value = _to_double(number)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    digits, point = _shortest_digits(abs(value))
    return sign + _format_js_digits(digits, point)


def _to_double(number: float) -> float:
    try:
        return float(number)
    except OverflowError:  # an int beyond the double range is Infinity in JS
        return math.inf if number > 0 else -math.inf


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest round-trip digits ``d`` and ``n`` with ``value == 0.d * 10**n``."""
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    # value == int(whole + fraction) * 10**(exponent - len(fraction))
    scale = int(exponent or "0") - len(fraction)
    significant = (whole + fraction).lstrip("0")
    digits = significant.rstrip("0")
    scale += len(significant) - len(digits)
    return digits, len(digits) + scale


def _format_js_digits(digits: str, point: int) -> str:
    count = len(digits)
    if count <= point <= 21:
        return digits + "0" * (point - count)
    if 0 < point <= 21:
        return f"{digits[:point]}.{digits[point:]}"
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    exponent = point - 1
    mantissa = digits if count == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"


def js_to_number(value: object) -> float:
    """JS ``ToNumber`` for JSON-shaped values (``"12"`` → 12, ``true`` → 1, ``{}`` → NaN)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return _to_double(value)
    if value is None:
        return 0.0
    if isinstance(value, str):
        return _string_to_number(value)
    if isinstance(value, list):
        return _string_to_number(js_to_string(value))
    return math.nan


def _string_to_number(text: str) -> float:
    body = js_trim(text)
    if body == "":
        return 0.0
    if body in ("Infinity", "+Infinity", "-Infinity"):
        return -math.inf if body[0] == "-" else math.inf
    if _DECIMAL_LITERAL.fullmatch(body):
        return float(body)
    if _RADIX_LITERAL.fullmatch(body):
        return _to_double(int(body[2:], _RADIX_BASES[body[1].lower()]))
    return math.nan


def js_math_max(*values: object) -> float:
    """``Math.max(...values)``: coerces each, NaN wins, ``+0`` beats ``-0``."""
    best = -math.inf
    seen_nan = False
    for value in values:
        number = js_to_number(value)
        if math.isnan(number):
            seen_nan = True
        elif number > best or (number == best == 0 and math.copysign(1.0, best) < 0):
            best = number
    return math.nan if seen_nan else best


def js_number_to_python(number: float) -> int | float:
    """A JS number as the Python value to store: integral safe values become ``int``.

    Keeps JSON output identical to ``JSON.stringify`` (no ``1700000000000.0``);
    ``-0``, fractions, non-finite and unsafe magnitudes stay ``float``.
    """
    negative_zero = number == 0 and math.copysign(1.0, number) < 0
    if number.is_integer() and abs(number) <= _MAX_SAFE_INTEGER and not negative_zero:
        return int(number)
    return number


# --- objects ------------------------------------------------------------------------


def is_array_index_key(key: str) -> bool:
    """True for keys JS enumerates first, in numeric order (``"0"`` … ``"4294967294"``)."""
    if not key or not key.isascii() or not key.isdigit():
        return False
    if len(key) > 1 and key[0] == "0":
        return False
    return int(key) <= _MAX_ARRAY_INDEX


def js_key_order(obj: dict[str, object]) -> dict[str, object]:
    """``obj`` re-ordered as JS enumerates it: integer-like keys ascending, then the rest.

    Returns ``obj`` itself when it is already in that order.
    """
    index_keys = [key for key in obj if key[:1].isdigit() and is_array_index_key(key)]
    if not index_keys:
        return obj
    ordered = sorted(index_keys, key=int)
    if list(obj)[: len(ordered)] == ordered:
        return obj
    result = {key: obj[key] for key in ordered}
    result.update((key, value) for key, value in obj.items() if key not in result)
    return result


# --- Node's POSIX path module ---------------------------------------------------------


def _require_path_string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f'The "path" argument must be of type string. Received {value!r}')
    return value


def _normalize_segments(path: str, *, allow_above_root: bool) -> str:
    """Resolve ``.``, ``..`` and empty segments the way Node's ``normalizeString`` does."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment != "..":
            kept.append(segment)
        elif kept and kept[-1] != "..":
            kept.pop()
        elif allow_above_root:
            kept.append("..")
    return "/".join(kept)


def js_path_normalize(path: str) -> str:
    """``path.posix.normalize``: collapses ``//``, ``.`` and ``..``; keeps a trailing ``/``."""
    if path == "":
        return "."
    absolute = path.startswith("/")
    body = _normalize_segments(path, allow_above_root=not absolute)
    if body == "" and not absolute:
        body = "."
    if body and path.endswith("/"):
        body += "/"
    return "/" + body if absolute else body


def js_path_join(*parts: object) -> str:
    """``path.posix.join``: unlike ``os.path.join`` an absolute part does not reset it."""
    joined = "/".join(part for part in map(_require_path_string, parts) if part)
    return js_path_normalize(joined) if joined else "."


def js_path_resolve(*parts: object, cwd: str) -> str:
    """``path.posix.resolve`` with the working directory injected; no trailing ``/``."""
    resolved = ""
    for raw in reversed((cwd, *parts)):
        part = _require_path_string(raw)  # like Node, parts left of an absolute one go unchecked
        if part:
            resolved = f"{part}/{resolved}"
            if part.startswith("/"):
                break
    absolute = resolved.startswith("/")
    body = _normalize_segments(resolved, allow_above_root=not absolute)
    if absolute:
        return "/" + body
    return body or "."
