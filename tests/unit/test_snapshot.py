"""Unit tests for sessiond.snapshot: parsing store files and rendering them in chunks.

Pure: bytes in, bytes out. The expected file layout is the original's
``JSON.stringify(store, null, 2)``, which Python's ``json.dumps(obj, indent=2,
ensure_ascii=False)`` reproduces for stores without floats (number spelling differs
between writers).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond.entries import StoredEntry, encode_entry
from sessiond.snapshot import CHUNK_ENTRIES, CorruptStoreError, parse_store, render_store

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10)
float_free = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)
any_json = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)


def stored(store: dict[str, Any]) -> dict[str, StoredEntry]:
    return {key: encode_entry(value) for key, value in store.items()}


def values(entries: dict[str, StoredEntry]) -> dict[str, Any]:
    return {key: entry.value() for key, entry in entries.items()}


def render(store: dict[str, Any], *, pretty: bool = True) -> bytes:
    return b"".join(render_store(stored(store).items(), pretty=pretty))


# --- parse ------------------------------------------------------------------------------------


def test_strict_json_parses_as_json() -> None:
    store = {"a": {"sessionId": "s", "updatedAt": 5}, "b": {"label": "ü"}}
    parsed = parse_store(json.dumps(store, indent=2).encode())
    assert parsed.syntax == "json"
    assert values(parsed.entries) == store
    assert parsed.entries["a"].updated_at_ms == 5


def test_key_order_is_kept() -> None:
    parsed = parse_store(b'{"z": 1, "a": 2, "m": 3}')
    assert list(parsed.entries) == ["z", "a", "m"]


def test_json5_with_comments_and_trailing_commas() -> None:
    text = b"""// written by hand
    {
      /* block comment */
      "agent:main:main": {sessionId: 'abc', updatedAt: 10,},
      unquoted: {label: "x", list: [1, 2,],},
    }
    """
    parsed = parse_store(text)
    assert parsed.syntax == "json5"
    assert values(parsed.entries) == {
        "agent:main:main": {"sessionId": "abc", "updatedAt": 10},
        "unquoted": {"label": "x", "list": [1, 2]},
    }
    assert parsed.entries["agent:main:main"].updated_at_ms == 10


def test_json5_escaped_surrogate_pairs_are_one_character() -> None:
    # JSON.parse reads "\\ud83d\\ude00" as one emoji; so must the JSON5 fallback.
    parsed = parse_store(b'{/* c */ "k": {"label": "hi \\ud83d\\ude00"}, "\\ud83d\\ude00": 1}')
    assert values(parsed.entries) == {"k": {"label": "hi \U0001f600"}, "\U0001f600": 1}


def test_lone_surrogate_escapes_survive_load_and_render() -> None:
    # JSON.stringify writes a lone surrogate as "\\udXXX" (a string cut inside an emoji).
    # A value keeps it (the file round-trips; replies show U+FFFD since msgpack strings
    # are UTF-8); a key becomes U+FFFD, because keys travel in every list reply.
    parsed = parse_store(b'{"k": {"label": "cut \\ud83d"}, "x\\udc00": 2}')
    assert parsed.syntax == "json"
    assert values(parsed.entries) == {"k": {"label": "cut \ufffd"}, "x\ufffd": 2}
    assert parsed.entries["k"].exact_value() == {"label": "cut \ud83d"}
    rendered = b"".join(render_store(parsed.entries.items()))
    assert b'"cut \\ud83d"' in rendered
    assert json.loads(rendered) == {"k": {"label": "cut \ud83d"}, "x\ufffd": 2}


def test_a_utf8_bom_does_not_leave_the_fast_path() -> None:
    parsed = parse_store('\ufeff{"k": {"updatedAt": 3}}'.encode())
    assert parsed.syntax == "json"
    assert values(parsed.entries) == {"k": {"updatedAt": 3}}


def test_non_finite_numbers_are_stored_as_null() -> None:
    # JSON has no NaN/Infinity; JSON.stringify wrote them as null, and so does the daemon.
    parsed = parse_store(b"{k: {updatedAt: NaN, x: Infinity, y: -Infinity}}")
    assert values(parsed.entries) == {"k": {"updatedAt": None, "x": None, "y": None}}
    assert parsed.entries["k"].updated_at_ms == 0.0


@pytest.mark.parametrize(
    "data", [b"", b" ", b"\n\n\t  \r\n", "\ufeff".encode(), " \u00a0\u2028 ".encode()]
)
def test_empty_and_whitespace_only_files_are_an_empty_store(data: bytes) -> None:
    parsed = parse_store(data)
    assert parsed.entries == {}
    assert parsed.syntax == "empty"


def test_an_empty_object_is_an_empty_json_store() -> None:
    parsed = parse_store(b"{}")
    assert parsed.entries == {}
    assert parsed.syntax == "json"


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b"[1, 2]",
        b"42",
        b"-1.5",
        b'"a string"',
        b"null",
        b"true",
        b"garbage",
        b"\x00\x01\x02",
        b'{"a": {"sessionId": "s"',  # truncated
        b'{"a": 1,',  # truncated after a comma
        b'{"a": 1}}',  # trailing junk
        b"{'a': [1, 2]",  # truncated JSON5
        b"// only a comment\n[1]",  # JSON5 array
        "\ufeff[]".encode(),
    ],
)
def test_non_objects_and_garbage_are_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptStoreError):
        parse_store(data)


def test_corrupt_store_error_is_a_value_error() -> None:
    assert issubclass(CorruptStoreError, ValueError)


def test_non_object_entries_are_kept() -> None:
    store = {"s": "string", "l": [1, 2], "n": None, "i": 7}
    assert values(parse_store(json.dumps(store).encode()).entries) == store


def test_revision_of_a_loaded_entry_matches_the_written_one() -> None:
    store = {"k": {"sessionId": "s", "updatedAt": 3, "nested": {"a": [1, "b"]}}}
    written = stored(store)
    loaded = parse_store(b"".join(render_store(written.items()))).entries
    assert loaded["k"].revision == written["k"].revision


# --- render -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "store",
    [
        {},
        {"a": {}},
        {"a": []},
        {"k": {"sessionId": "s", "updatedAt": 1, "empty": {}, "list": [1, [2, []]]}},
        {"ü": {"label": "ü ✓ \U0001f600 \u2028 \x7f"}, "ctl": '\x00\x01\x1f\n\t"\\/'},
        {"a": None, "b": True, "c": False, "d": "", "e": -(2**63)},
    ],
)
def test_pretty_render_is_json_stringify_with_indent_2(store: dict[str, Any]) -> None:
    assert render(store).decode() == json.dumps(store, indent=2, ensure_ascii=False)


@given(st.dictionaries(st.text(max_size=10), float_free, max_size=12))
def test_pretty_render_matches_json_dumps_property(store: dict[str, Any]) -> None:
    assert render(store).decode() == json.dumps(store, indent=2, ensure_ascii=False)


def test_compact_render_has_no_layout_and_parses_to_the_same_store() -> None:
    store = {"a": {"sessionId": "s", "updatedAt": 1}, "b": [1, {"c": None}]}
    compact = render(store, pretty=False)
    assert compact == json.dumps(store, separators=(",", ":"), ensure_ascii=False).encode()
    assert values(parse_store(compact).entries) == store


def test_pretty_file_has_no_trailing_newline() -> None:
    assert not render({"a": 1}).endswith(b"\n")
    assert render({}) == b"{}"
    assert render({}, pretty=False) == b"{}"


@pytest.mark.parametrize(
    "count",
    [
        1,
        CHUNK_ENTRIES - 1,
        CHUNK_ENTRIES,
        CHUNK_ENTRIES + 1,
        2 * CHUNK_ENTRIES,
        2 * CHUNK_ENTRIES + 1,
    ],
)
@pytest.mark.parametrize("pretty", [True, False])
def test_chunking_across_chunk_boundaries(count: int, pretty: bool) -> None:
    store = {f"agent:main:k{i:05d}": {"sessionId": f"s{i}", "updatedAt": i} for i in range(count)}
    pieces = list(render_store(stored(store).items(), pretty=pretty))
    document = b"".join(pieces)
    assert json.loads(document) == store
    assert list(json.loads(document)) == list(store)  # order kept across chunks
    if pretty:
        assert document.decode() == json.dumps(store, indent=2, ensure_ascii=False)
    else:
        assert document == json.dumps(store, separators=(",", ":")).encode()
    full_chunks, remainder = divmod(count, CHUNK_ENTRIES)
    body_pieces = full_chunks + (1 if remainder else 0)
    # An opening brace, one piece per chunk of entries, a closing brace.
    assert len(pieces) == body_pieces + 2


def test_render_consumes_items_lazily() -> None:
    consumed = 0

    def items() -> Any:
        nonlocal consumed
        for i in range(3 * CHUNK_ENTRIES):
            consumed += 1
            yield f"k{i}", encode_entry(i)

    pieces = render_store(items())
    next(pieces)  # "{"
    next(pieces)  # the first chunk
    assert consumed <= 2 * CHUNK_ENTRIES + 1


@given(st.dictionaries(st.text(max_size=10), any_json, max_size=15), st.booleans())
def test_parse_of_render_is_the_same_store(store: dict[str, Any], pretty: bool) -> None:
    entries = stored(store)
    parsed = parse_store(b"".join(render_store(entries.items(), pretty=pretty)))
    assert values(parsed.entries) == store
    assert list(parsed.entries) == list(store)
    assert {key: entry.revision for key, entry in parsed.entries.items()} == {
        key: entry.revision for key, entry in entries.items()
    }


def test_invalid_utf8_is_read_as_replacement_characters() -> None:
    # Node decoded the file as UTF-8 with U+FFFD for bad bytes; msgspec alone would keep them.
    parsed = parse_store(b'{"k": {"label": "a\xffb\xed\xa0\x80c"}}')
    assert values(parsed.entries) == {"k": {"label": "a\ufffdb\ufffd\ufffd\ufffdc"}}


@pytest.mark.parametrize("key", ["a\\u0020b", "\\u0030a", "\\ud835\\udc9c", "x\\ud800"])
def test_json5_keys_with_escapes_json5_parse_rejects_are_corrupt(key: str) -> None:
    # JSON5.parse checks each escaped character of an unquoted key (ID_Start/ID_Continue).
    with pytest.raises(CorruptStoreError):
        parse_store(f"{{{key}: 1}}".encode())


def test_json5_keys_with_valid_escapes_and_escapes_inside_strings_are_fine() -> None:
    parsed = parse_store(b"{\\u0061b: 1, x\\u00e9: 2, 'a\\u0020b': '\\ud835 // not a comment'}")
    assert values(parsed.entries) == {"ab": 1, "x\u00e9": 2, "a b": "\ufffd // not a comment"}
    assert parsed.entries["a b"].exact_value() == "\ud835 // not a comment"
