"""Unit tests for sessiond.entries: how the daemon holds one entry (bytes, updatedAt, revision).

Pure: values are encoded and re-read in memory.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond.entries import (
    StoredEntry,
    encode_entry,
    entry_from_json,
    revision_of,
)

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=6)
float_free_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


def test_encoded_entry_is_compact_json_of_the_value() -> None:
    value = {"sessionId": "s", "updatedAt": 5, "nested": {"a": [1, 2]}, "é": "ü"}
    stored = encode_entry(value)
    assert json.loads(stored.json_bytes) == value
    assert b" " not in stored.json_bytes.replace(b'"', b"")  # no indentation, no spaces
    assert stored.value() == value
    assert stored.value() == value


def test_value_is_a_fresh_object_each_time() -> None:
    stored = encode_entry({"list": [1]})
    first = stored.value()
    first["list"].append(2)
    assert stored.value() == {"list": [1]}


def test_revision_is_a_content_hash() -> None:
    a = encode_entry({"sessionId": "s", "updatedAt": 1})
    same = encode_entry({"sessionId": "s", "updatedAt": 1})
    other = encode_entry({"sessionId": "s", "updatedAt": 2})
    assert a.revision == same.revision
    assert a.revision != other.revision
    assert a.revision == revision_of(a.json_bytes)
    assert isinstance(a.revision, str)
    assert a.revision


def test_revision_is_computed_lazily_and_cached() -> None:
    stored = encode_entry({"a": 1})
    cached_before = stored.cached_revision
    revision = stored.revision
    assert cached_before is None
    assert stored.cached_revision == revision
    assert stored.revision is revision


@pytest.mark.parametrize("indent", [None, 2, 4, "\t"])
def test_revision_survives_a_pretty_printed_file(indent: int | str | None) -> None:
    value = {
        "sessionId": "abc",
        "updatedAt": 1_736_500_000_000,
        "label": 'ü / "quoted" \\ back',
        "nested": {"list": [1, 2.5, None, True], "empty": {}, "none": []},
    }
    written = encode_entry(value)
    pretty = json.dumps(value, indent=indent, ensure_ascii=False).encode()
    adopted = entry_from_json(pretty)
    assert adopted.revision == written.revision
    assert adopted.json_bytes == written.json_bytes
    assert adopted.updated_at_ms == 1_736_500_000_000


@given(json_objects)
def test_revision_is_stable_through_encode_and_re_adoption(value: dict[str, Any]) -> None:
    # The journal re-adopts the compact bytes; the snapshot re-adopts them indented.
    written = encode_entry(value)
    for raw in (written.json_bytes, msgspec.json.format(written.json_bytes, indent=2)):
        adopted = entry_from_json(raw)
        assert adopted.revision == written.revision
        assert adopted.value() == value


@given(st.dictionaries(st.text(max_size=8), float_free_values, max_size=6))
def test_revision_ignores_the_layout_of_a_file_written_by_another_tool(
    value: dict[str, Any],
) -> None:
    # Floats aside (their spelling differs between JSON writers), the same content read
    # from another writer's pretty-printed file has the revision the daemon would give it.
    written = encode_entry(value)
    pretty = json.dumps(value, indent=2, ensure_ascii=False).encode()
    assert entry_from_json(pretty).revision == written.revision


def test_entry_from_json_accepts_a_memoryview() -> None:
    raw = b'{ "updatedAt" : 7 }'
    assert entry_from_json(memoryview(raw)).json_bytes == b'{"updatedAt":7}'


@pytest.mark.parametrize(
    "value", ["just a string", [1, "two", {"three": 3}], None, 42, 1.5, True, {}]
)
def test_non_object_values_are_kept(value: Any) -> None:
    # The original's files may hold anything where an object belongs; it must survive.
    stored = encode_entry(value)
    assert stored.value() == value
    assert stored.updated_at_ms == 0.0
    adopted = entry_from_json(json.dumps(value, indent=2).encode())
    assert adopted.value() == value
    assert adopted.updated_at_ms == 0.0
    assert adopted.revision == stored.revision


@pytest.mark.parametrize(
    ("value", "expected_ms"),
    [
        ({"updatedAt": 1_700_000_000_123}, 1_700_000_000_123),
        ({"updatedAt": 12.75}, 12.75),
        ({"updatedAt": 0}, 0.0),
        ({"updatedAt": -5}, -5.0),
        ({"sessionId": "no time"}, 0.0),
        ({"updatedAt": "1700000000000"}, 0.0),
        ({"updatedAt": True}, 0.0),
        ({"updatedAt": None}, 0.0),
        ({"updatedAt": [1]}, 0.0),
        ({"updatedAt": {"ms": 1}}, 0.0),
        ({"nested": {"updatedAt": 99}}, 0.0),
    ],
)
def test_updated_at_extraction(value: Any, expected_ms: float) -> None:
    assert encode_entry(value).updated_at_ms == expected_ms
    assert entry_from_json(json.dumps(value).encode()).updated_at_ms == expected_ms


def test_non_finite_updated_at_is_null_and_zero() -> None:
    # JSON.stringify writes NaN/Infinity as null; ordering treats the entry as oldest.
    stored = encode_entry({"updatedAt": float("inf"), "x": float("nan")})
    assert stored.value() == {"updatedAt": None, "x": None}
    assert stored.updated_at_ms == 0.0


def test_big_updated_at_in_a_file_is_read_as_a_number() -> None:
    adopted = entry_from_json(b'{"updatedAt": 1e300}')
    assert adopted.updated_at_ms == 1e300


def test_stored_entry_is_a_plain_value_type() -> None:
    entry = StoredEntry(b"{}", 0.0)
    assert entry.value() == {}
    assert entry.revision == revision_of(b"{}")


def test_negative_zero_is_written_as_zero_like_json_stringify() -> None:
    stored = encode_entry({"a": -0.0, "b": [-0.0], "c": "-0.0", "d": -0.05})
    assert stored.json_bytes == b'{"a":0,"b":[0],"c":"-0.0","d":-0.05}'


def test_lone_surrogates_are_kept_as_escapes() -> None:
    stored = encode_entry({"label": "a\ud800b", "n": float("nan"), "é": "ü"})
    assert stored.json_bytes == '{"label":"a\\ud800b","n":null,"é":"ü"}'.encode()
    assert stored.exact_value() == {"label": "a\ud800b", "n": None, "é": "ü"}
    assert stored.value() == {"label": "a\ufffdb", "n": None, "é": "ü"}
    adopted = entry_from_json(b'{ "label" : "a\\ud800b", "updatedAt": 4 }')
    assert adopted.exact_value() == {"label": "a\ud800b", "updatedAt": 4}
    assert adopted.updated_at_ms == 4


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        *[(None, False), (False, False), (0, False), (0.0, False), ("", False)],
        *[({}, True), ([], True), ("x", True), (1, True), (True, True)],
    ],
)
def test_is_truthy_is_js_truthiness(value: Any, truthy: bool) -> None:
    assert encode_entry(value).is_truthy is truthy
