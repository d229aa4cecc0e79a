"""The snapshot format (``sessions.json``): parse it and render it in pieces. Pure: no I/O.

The file is the original's: one JSON object ``{key: entry}``, indented by 2 with no
trailing newline (``JSON.stringify(store, null, 2)``), or compact when configured.

Parsing tries msgspec's strict JSON first, reading each entry as raw bytes (no Python
objects are built for the entries) after checking the bytes are valid UTF-8 (invalid
sequences are read as U+FFFD, as Node's decoder did). A UTF-8 BOM is skipped first (``JSON5.parse``
treats it as whitespace). When that fails, the stdlib's strict JSON parser is tried
(it reads what msgspec cannot: lone surrogate escapes such as ``"\\ud83d"``, which
``JSON.stringify`` writes for a string cut inside an emoji, and ``NaN``/``Infinity``),
and only then json5 (thousands of times slower; it is there for hand-edited files).
json5 leaves escaped surrogate pairs (``"\\ud83d\\ude00"``) as two code points; they
are joined as ``JSON.parse`` joins them, and a lone surrogate in a value is kept (see
:mod:`sessiond.entries`). A lone surrogate in a *key* becomes U+FFFD: keys travel in
every ``list`` reply, and msgpack cannot carry one. Non-finite numbers (JSON5 ``NaN``,
``Infinity``) are stored as ``null``, what the original's next save wrote for them.
Integers keep all their digits (JSON5.parse rounded them to doubles; JS readers of the
file still do). An empty or whitespace-only file is an empty store. Anything else that
does not parse to an object (or a directory where the file belongs, see
:mod:`sessiond.loader`) raises :class:`CorruptStoreError`; the caller moves it aside.

Rendering yields the document in chunks of a few hundred entries so the I/O shell can
write each one and let the event loop serve requests between them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, Final

import json5
import msgspec

from sessiond.entries import StoredEntry, encode_entry, encode_json_slowly, entry_from_json

__all__ = [
    "CHUNK_ENTRIES",
    "CorruptStoreError",
    "ParsedStore",
    "parse_store",
    "render_store",
]

CHUNK_ENTRIES: Final = 512
_JS_WHITESPACE: Final = " \t\n\r\v\f\ufeff\u00a0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    chr(code) for code in range(0x2000, 0x200B)
)
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# Strings and comments are consumed whole, so a run with a \\u escape matched on its own
# is an unquoted key. JSON5.parse requires each escaped character to be valid where it
# stands (ID_Start first, ID_Continue after, so no spaces, leading digits or surrogate
# halves); the json5 package accepts any.
_JSON5_IDENTIFIER_RUN: Final = re.compile(
    r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|//[^\n\r\u2028\u2029]*|/\*.*?\*/"""
    r"""|((?:\\u[0-9a-fA-F]{4}|[^\s'"/:,{}\[\]\\])+)""",
    re.DOTALL,
)
_ESCAPE: Final = re.compile(r"\\u([0-9a-fA-F]{4})")
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_raw_map_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encoder = msgspec.json.Encoder()


class CorruptStoreError(ValueError):
    """The bytes are not a JSON/JSON5 object; the message says what was wrong."""


class ParsedStore(msgspec.Struct):
    entries: dict[str, StoredEntry]
    syntax: str
    """``"json"``, ``"json5"`` or ``"empty"`` (strict JSON read by either parser is "json")."""


def parse_store(data: bytes) -> ParsedStore:
    """Parse a store file's bytes."""
    try:
        if not data.isascii():
            data.decode("utf-8")  # msgspec passes invalid UTF-8 through in raw values
        raw_entries = _raw_map_decoder.decode(data.removeprefix(_UTF8_BOM))
    except UnicodeDecodeError:
        return _parse_slowly(data)
    except msgspec.ValidationError as error:
        raise CorruptStoreError(f"the top-level JSON value is not an object: {error}") from error
    except msgspec.DecodeError:
        return _parse_slowly(data)
    return ParsedStore({key: entry_from_json(raw) for key, raw in raw_entries.items()}, "json")


def _parse_slowly(data: bytes) -> ParsedStore:
    text = data.decode("utf-8", errors="replace")
    try:
        value: Any = json.loads(text.removeprefix("\ufeff"))
    except (ValueError, RecursionError):
        return _parse_json5(text)
    return _parsed_value(value, "json")


def _parse_json5(text: str) -> ParsedStore:
    if not text.strip(_JS_WHITESPACE):
        return ParsedStore({}, "empty")
    for match in _JSON5_IDENTIFIER_RUN.finditer(text):
        if match.group(1) and "\\u" in match.group(1):
            _check_identifier_escapes(match.group(1))
    try:
        value: Any = json5.loads(text.removeprefix("\ufeff"))
    except (ValueError, RecursionError) as error:
        raise CorruptStoreError(f"not valid JSON or JSON5: {error}") from error
    return _parsed_value(value, "json5")


def _check_identifier_escapes(run: str) -> None:
    for escape in _ESCAPE.finditer(run):
        char = chr(int(escape.group(1), 16))
        if escape.start() == 0:
            valid = char in "$_" or char.isidentifier()
        else:
            valid = char in "$_\u200c\u200d" or f"a{char}".isidentifier()
        if not valid or _SURROGATE.match(char):
            raise CorruptStoreError(f"not valid JSON5: invalid identifier escape in {run!r}")


def _parsed_value(value: Any, syntax: str) -> ParsedStore:
    if not isinstance(value, dict):
        raise CorruptStoreError(f"the top-level value is a {type(value).__name__}, not an object")
    entries = {
        _key_text(str(key)): encode_entry(_paired_surrogates(entry)) for key, entry in value.items()
    }
    return ParsedStore(entries, syntax)


def _key_text(key: str) -> str:
    if _SURROGATE.search(key) is None:
        return key
    return key.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _paired_surrogates(value: Any) -> Any:
    """``value`` with escaped surrogate pairs joined into one character (lone ones kept)."""
    if isinstance(value, str):
        if _SURROGATE.search(value) is None:
            return value
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    if isinstance(value, dict):
        return {_paired_surrogates(key): _paired_surrogates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_paired_surrogates(item) for item in value]
    return value


def _render_chunk_body(items: list[tuple[str, StoredEntry]], *, pretty: bool) -> bytes:
    """The members of one chunk, without the enclosing braces."""
    document = _encoder.encode({key: msgspec.Raw(entry.json_bytes) for key, entry in items})
    if not pretty:
        return document[1:-1]
    try:
        # format() gives "{\n  ...\n}"; keep the members with their leading newline.
        return msgspec.json.format(document, indent=2)[1:-2]
    except msgspec.DecodeError:  # an entry holds a lone surrogate escape
        exact = {key: entry.exact_value() for key, entry in items}
        return encode_json_slowly(exact, indent=2)[1:-2]


def render_store(
    items: Iterable[tuple[str, StoredEntry]], *, pretty: bool = True
) -> Iterator[bytes]:
    """Yield the whole file in pieces; their concatenation is the complete document.

    ``items`` is consumed lazily, :data:`CHUNK_ENTRIES` at a time, so the caller may
    pass the items view of a dict copy without building a list of it first.
    """
    iterator = iter(items)
    chunk = list(islice(iterator, CHUNK_ENTRIES))
    if not chunk:
        yield b"{}"
        return
    yield b"{"
    separator = b""
    while chunk:
        yield separator + _render_chunk_body(chunk, pretty=pretty)
        separator = b","
        chunk = list(islice(iterator, CHUNK_ENTRIES))
    yield b"\n}" if pretty else b"}"
