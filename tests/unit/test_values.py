"""Unit tests for sessiond.values: which values a write may carry, and wire-safe integers.

Pure. Depth is counted as the module documents it: the value itself is at depth 1, the
members of a container one deeper than the container; a value is within ``max_depth``
when no part of it is deeper. Size is the number of object members and array items in
all. Both are computed here independently of the code under test.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import msgspec
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sessiond.values import MAX_WIRE_INT, MIN_WIRE_INT, check_json_value, wire_safe
from sessiond_client.errors import InvalidRequestError


def depth_of(value: Any) -> int:
    """1 for the value itself, plus the deepest member of a container."""
    if isinstance(value, dict):
        return 1 + max((depth_of(member) for member in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(item) for item in value), default=0)
    return 1


def size_of(value: Any) -> int:
    """Object members plus array items, at every level."""
    if isinstance(value, dict):
        return len(value) + sum(size_of(member) for member in value.values())
    if isinstance(value, list):
        return len(value) + sum(size_of(item) for item in value)
    return 0


def check(value: Any, *, max_depth: int = 32, max_fields: int = 10_000) -> None:
    check_json_value(value, where="entry", max_depth=max_depth, max_fields=max_fields)


def refused(value: Any, *, max_depth: int = 32, max_fields: int = 10_000) -> str:
    with pytest.raises(InvalidRequestError) as raised:
        check(value, max_depth=max_depth, max_fields=max_fields)
    return str(raised.value)


def chain(depth: int, leaf: Any = 0) -> Any:
    """``leaf`` inside ``depth - 1`` one-item lists: ``leaf`` sits at ``depth``."""
    value = leaf
    for _ in range(depth - 1):
        value = [value]
    return value


# --- what passes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -(2**63),
        2**64 - 1,
        1.5,
        -0.0,
        "",
        "text \u00fc \U0001f642",
        [],
        {},
        {"sessionId": "s", "updatedAt": 1, "nested": {"a": [1, 2.5, None, "x", {"b": True}]}},
    ],
)
def test_json_values_pass(value: Any) -> None:
    check(value)


def test_depth_exactly_at_the_limit_passes() -> None:
    check(0, max_depth=1)
    for max_depth in (2, 5, 32):
        check(chain(max_depth), max_depth=max_depth)
        check({"a": chain(max_depth - 1)}, max_depth=max_depth)


def test_an_empty_container_at_the_limit_is_within_it() -> None:
    # An empty list or object at depth max_depth holds nothing deeper than it.
    for max_depth in (1, 2, 5):
        check(chain(max_depth - 1, leaf=[]), max_depth=max_depth)
        check(chain(max_depth - 1, leaf={}), max_depth=max_depth)


def test_exactly_max_fields_passes() -> None:
    check({"a": list(range(9))}, max_fields=10)  # 1 member + 9 items
    check({str(index): index for index in range(10)}, max_fields=10)


# --- what is refused --------------------------------------------------------------------------


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused_anywhere(number: float) -> None:
    for value in (number, [number], {"a": number}, {"a": [1, {"b": number}]}):
        assert "finite" in refused(value)


@pytest.mark.parametrize(
    "bad",
    [
        b"bytes",
        bytearray(b"bytes"),
        memoryview(b"bytes"),
        msgspec.msgpack.Ext(5, b"\x00"),
        datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        datetime.date(2026, 1, 1),
        (1, 2),  # not a JSON array as decoded from the wire
        {1, 2},
        object(),
    ],
)
def test_values_json_cannot_hold_are_refused_anywhere(bad: Any) -> None:
    for value in (bad, [bad], {"a": bad}, {"a": [1, {"b": bad}]}):
        assert "JSON cannot hold" in refused(value)


@pytest.mark.parametrize("key", [1, 2.5, None, True, b"k", (1, 2)])
def test_non_string_object_keys_are_refused_anywhere(key: Any) -> None:
    for value in ({key: 1}, {"a": {key: 1}}, [{"ok": [{key: "x"}]}]):
        assert "keys must be strings" in refused(value)


def test_one_level_past_the_depth_limit_is_refused() -> None:
    for max_depth in (1, 2, 5, 32):
        message = refused(chain(max_depth + 1), max_depth=max_depth)
        assert str(max_depth) in message
        refused({"a": chain(max_depth)}, max_depth=max_depth)


def test_one_past_max_fields_is_refused() -> None:
    message = refused({"a": list(range(10))}, max_fields=10)
    assert "10" in message
    refused({str(index): index for index in range(11)}, max_fields=10)
    refused([[1, 2], [3, 4], [5, 6], [7]], max_fields=10)  # 4 + 7 items over several arrays


def test_a_hostile_nesting_does_not_exhaust_the_stack() -> None:
    deep = chain(100_000)
    refused(deep, max_depth=32)


def test_a_huge_value_is_refused_without_walking_all_of_it() -> None:
    refused({"a": [0] * 1_000_000}, max_fields=10_000)


def test_the_message_names_the_path_and_the_value() -> None:
    message = refused({"a": [0, {"b": math.nan}]})
    assert "entry.a[1].b" in message
    message = check_message_where({"x": b"raw"}, where="patch")
    assert "patch.x" in message and "binary" in message


def check_message_where(value: Any, *, where: str) -> str:
    with pytest.raises(InvalidRequestError) as raised:
        check_json_value(value, where=where, max_depth=32, max_fields=100)
    return str(raised.value)


# --- properties -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=MIN_WIRE_INT, max_value=MAX_WIRE_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=30,
)


@given(json_values, st.integers(min_value=1, max_value=12), st.integers(min_value=0, max_value=60))
def test_any_json_value_within_the_bounds_passes(
    value: Any, max_depth: int, max_fields: int
) -> None:
    assume(depth_of(value) <= max_depth and size_of(value) <= max_fields)
    check(value, max_depth=max_depth, max_fields=max_fields)


nested_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, min_size=1, max_size=4)
        | st.dictionaries(st.text(max_size=6), children, min_size=1, max_size=4)
    ),
    max_leaves=30,
).filter(lambda value: depth_of(value) >= 2)


@given(nested_values, st.booleans())
def test_a_json_value_past_a_bound_is_refused(value: Any, by_depth: bool) -> None:
    # One below what the value needs: deep enough, or big enough, but not both.
    with pytest.raises(InvalidRequestError):
        if by_depth:
            check(value, max_depth=depth_of(value) - 1, max_fields=10**6)
        else:
            check(value, max_depth=10**6, max_fields=size_of(value) - 1)


BAD_NODES: dict[str, Any] = {
    "nan": math.nan,
    "inf": math.inf,
    "bytes": b"\x00\x01",
    "ext": msgspec.msgpack.Ext(1, b""),
    "int-key object": {7: "x"},
}


def containers_in(value: Any) -> list[Any]:
    """Every list and dict within ``value`` (itself included), outermost first."""
    found: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            found.append(item)
            stack.extend(item)
    return found


def inject(value: Any, bad: Any, choice: int) -> Any:
    """``value`` wrapped in an object, with ``bad`` put into one of its containers."""
    wrapped = {"root": value}
    targets = containers_in(wrapped)
    target = targets[choice % len(targets)]
    if isinstance(target, dict):
        target["injected \u2603"] = bad
    else:
        target.insert(choice % (len(target) + 1), bad)
    return wrapped


@given(json_values, st.sampled_from(sorted(BAD_NODES)), st.integers(min_value=0, max_value=1000))
def test_a_value_json_cannot_hold_is_refused_wherever_it_is(
    value: Any, bad: str, choice: int
) -> None:
    poisoned = inject(value, BAD_NODES[bad], choice)
    # Generous bounds: only the injected node can be the reason for the refusal.
    with pytest.raises(InvalidRequestError):
        check(poisoned, max_depth=depth_of(poisoned) + 2, max_fields=size_of(poisoned) + 2)


@given(json_values, st.integers(min_value=0, max_value=1000))
def test_a_node_too_deep_is_refused_wherever_it_is(value: Any, choice: int) -> None:
    limit = depth_of({"root": value}) + 1
    poisoned = inject(value, chain(limit + 1), choice)  # deeper than limit wherever it lands
    assert depth_of(poisoned) > limit
    with pytest.raises(InvalidRequestError):
        check(poisoned, max_depth=limit, max_fields=size_of(poisoned) + 2)


# --- wire_safe --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (MAX_WIRE_INT, MAX_WIRE_INT),
        (MAX_WIRE_INT + 1, float(MAX_WIRE_INT + 1)),
        (MIN_WIRE_INT, MIN_WIRE_INT),
        (MIN_WIRE_INT - 1, float(MIN_WIRE_INT - 1)),
        (10**30, 1e30),
        (0, 0),
    ],
)
def test_wire_safe_turns_only_integers_beyond_64_bits_into_doubles(
    number: int, expected: int | float
) -> None:
    result = wire_safe(number)
    assert result == expected and type(result) is type(expected)
    assert wire_safe([number]) == [expected]
    nested = wire_safe({"a": {"b": [1, number]}})
    assert nested == {"a": {"b": [1, expected]}}
    inner = msgspec.msgpack.decode(msgspec.msgpack.encode(nested))["a"]["b"][1]
    assert inner == expected and type(inner) is type(expected)


def test_wire_safe_bounds_are_msgpack_integer_bounds() -> None:
    assert MIN_WIRE_INT == -(2**63)
    assert MAX_WIRE_INT == 2**64 - 1
    msgspec.msgpack.encode([MIN_WIRE_INT, MAX_WIRE_INT])
    for beyond in (MIN_WIRE_INT - 1, MAX_WIRE_INT + 1):
        with pytest.raises(OverflowError):
            msgspec.msgpack.encode(beyond)


def test_wire_safe_keeps_booleans_and_other_values() -> None:
    value = {"t": True, "f": False, "s": "2" * 30, "n": None, "x": 1.5, "l": [True]}
    assert wire_safe(value) == value
    assert wire_safe(True) is True


def test_wire_safe_returns_a_value_that_needs_no_change_itself() -> None:
    value = {"a": [1, 2, {"b": "c"}], "d": 2**63}
    assert wire_safe(value) is value


wide_values = st.recursive(
    json_scalars | st.integers(min_value=-(2**100), max_value=2**100),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def as_doubles(value: Any) -> Any:
    """What ``JSON.parse`` gives for integers msgpack cannot carry (an independent walk)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else float(value)
    if isinstance(value, dict):
        return {key: as_doubles(member) for key, member in value.items()}
    if isinstance(value, list):
        return [as_doubles(item) for item in value]
    return value


@given(wide_values)
def test_wire_safe_values_always_encode_and_equal_the_json_reading(value: Any) -> None:
    safe = wire_safe(value)
    assert safe == as_doubles(value)
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(safe))
    assert decoded == as_doubles(value)
