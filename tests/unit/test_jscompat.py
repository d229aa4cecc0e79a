"""Unit tests for sessiond_client.jscompat: the JS semantics Python does not share."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond_client.jscompat import (
    JS_WHITESPACE,
    UNDEFINED,
    is_array_index_key,
    is_nullish,
    js_code_units,
    js_get,
    js_key_order,
    js_length,
    js_lower,
    js_math_max,
    js_number_to_python,
    js_number_to_string,
    js_optional_get,
    js_path_join,
    js_path_normalize,
    js_path_resolve,
    js_slice,
    js_substitution,
    js_to_number,
    js_to_string,
    js_trim,
    js_truthy,
)


def _same_float(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


class TestUndefined:
    def test_is_falsy_singleton_distinct_from_none(self) -> None:
        assert not UNDEFINED
        assert UNDEFINED is not None
        assert repr(UNDEFINED) == "UNDEFINED"

    def test_nullish_means_none_or_undefined_only(self) -> None:
        assert is_nullish(None) and is_nullish(UNDEFINED)
        falsy_but_defined: tuple[object, ...] = (0, "", False, math.nan, [], {})
        assert not any(map(is_nullish, falsy_but_defined))


class TestTrim:
    @pytest.mark.parametrize(
        "space", ["\ufeff", "\u00a0", "\u2028", "\u2029", "\u3000", "\t", "\v"]
    )
    def test_strips_js_whitespace(self, space: str) -> None:
        assert js_trim(f"{space}x{space}") == "x"

    @pytest.mark.parametrize("char", ["\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u180e", "\u200b"])
    def test_keeps_what_python_strip_would_remove(self, char: str) -> None:
        assert js_trim(f"{char}x{char}") == f"{char}x{char}"

    def test_whitespace_set_has_no_duplicates(self) -> None:
        assert len(set(JS_WHITESPACE)) == len(JS_WHITESPACE)


class TestLower:
    def test_dotted_capital_i_becomes_two_code_points(self) -> None:
        assert js_lower("İ") == "i\u0307"

    def test_kelvin_sign_becomes_ascii_k(self) -> None:
        assert js_lower("\u212a") == "k"

    def test_final_sigma(self) -> None:
        assert js_lower("ΟΔΟΣ") == "οδος"

    def test_newer_unicode_case_pairs(self) -> None:
        assert js_lower("\U00010d50") == "\U00010d70"


class TestUtf16:
    def test_length_counts_code_units(self) -> None:
        assert js_length("a😀") == 3
        assert js_length("abc") == 3

    def test_slice_can_split_a_surrogate_pair(self) -> None:
        assert js_slice("😀x", 0, 1) == "\ud83d"
        assert js_slice("x😀", -1) == "\ude00"
        assert js_slice("😀x", 0, 2) == "😀"

    def test_code_units(self) -> None:
        assert js_code_units("a😀") == ["a", "\ud83d", "\ude00"]

    @given(st.text(), st.integers(-8, 8), st.integers(-8, 8))
    def test_slice_matches_unit_list(self, text: str, start: int, end: int) -> None:
        units = js_code_units(text)
        assert js_length(js_slice(text, start, end)) == len(units[start:end])
        assert js_length(text) == len(units)


class TestValues:
    @pytest.mark.parametrize(
        ("value", "truthy"),
        [(UNDEFINED, False), (None, False), (0, False), (-0.0, False), (math.nan, False),
         ("", False), (False, False), (" ", True), ([], True), ({}, True), (1, True), ("0", True)],
    )  # fmt: skip
    def test_truthiness(self, value: object, truthy: bool) -> None:
        assert js_truthy(value) is truthy

    def test_get_on_null_raises_and_optional_get_does_not(self) -> None:
        with pytest.raises(TypeError):
            js_get(None, "x")
        with pytest.raises(TypeError):
            js_get(UNDEFINED, "x")
        assert js_optional_get(None, "x") is UNDEFINED

    def test_get_on_primitives_and_mappings(self) -> None:
        assert js_get("abc", "From") is UNDEFINED
        assert js_get(5, "From") is UNDEFINED
        assert js_get({"a": None}, "a") is None
        assert js_get({}, "a") is UNDEFINED
        assert js_get("a😀", "length") == 3


class TestNumbers:
    @pytest.mark.parametrize(
        ("number", "text"),
        [(1e21, "1e+21"), (-0.0, "0"), (math.nan, "NaN"), (math.inf, "Infinity"),
         (-math.inf, "-Infinity"), (3.0, "3"), (1.5, "1.5"), (1e-7, "1e-7"), (1e-6, "0.000001"),
         (1e20, "100000000000000000000"), (5e-324, "5e-324"), (-1.5e300, "-1.5e+300"),
         (2**53 + 1, "9007199254740992"), (10**400, "Infinity"), (0.1, "0.1"), (123, "123")],
    )  # fmt: skip
    def test_number_to_string(self, number: float, text: str) -> None:
        assert js_number_to_string(number) == text

    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_number_to_string_round_trips(self, number: float) -> None:
        assert float(js_number_to_string(number)) == number

    @pytest.mark.parametrize(
        ("value", "number"),
        [("12", 12.0), (" 0x10 ", 16.0), ("0b11", 3.0), ("", 0.0), ("\u00a05\ufeff", 5.0),
         ("1_0", math.nan), ("-0x1", math.nan), ("Infinity", math.inf), ("-0", -0.0),
         ("\u0661\u0662", math.nan), (".5", 0.5), ("5.", 5.0), (None, 0.0), (True, 1.0), ([], 0.0),
         ([7], 7.0), ([1, 2], math.nan), ({}, math.nan), (UNDEFINED, math.nan)],
    )  # fmt: skip
    def test_to_number(self, value: object, number: float) -> None:
        assert _same_float(js_to_number(value), number)

    def test_math_max(self) -> None:
        assert math.isnan(js_math_max(1, math.nan, 3))
        assert js_math_max("9", 2) == 9.0
        assert math.copysign(1.0, js_math_max(-0.0, 0)) == 1.0
        assert js_math_max() == -math.inf

    def test_number_to_python_keeps_json_output_integral(self) -> None:
        assert type(js_number_to_python(1700000000000.0)) is int
        assert type(js_number_to_python(-0.0)) is float
        assert type(js_number_to_python(1.5)) is float
        assert type(js_number_to_python(1e300)) is float

    def test_to_string(self) -> None:
        assert js_to_string(None) == "null"
        assert js_to_string(UNDEFINED) == "undefined"
        assert js_to_string([1, [2, None], UNDEFINED]) == "1,2,,"
        assert js_to_string({"a": 1}) == "[object Object]"
        assert js_to_string(False) == "false"


class TestObjects:
    def test_index_keys(self) -> None:
        assert is_array_index_key("0") and is_array_index_key("4294967294")
        assert not any(map(is_array_index_key, ["01", "4294967295", "-1", "1.0", "", "\u0661"]))

    def test_key_order_puts_index_keys_first(self) -> None:
        ordered = js_key_order({"zeta": 1, "10": 2, "2": 3, "alpha": 4, "01": 5})
        assert list(ordered) == ["2", "10", "zeta", "alpha", "01"]

    def test_key_order_returns_same_object_when_already_ordered(self) -> None:
        obj: dict[str, object] = {"1": 1, "b": 2}
        assert js_key_order(obj) is obj

    def test_substitution_patterns(self) -> None:
        assert js_substitution("<$&|$$|$`|$'|$1|$>", "~", "B", "A") == "<~|$|B|A|$1|$>"


class TestPath:
    @pytest.mark.parametrize(
        ("path", "normal"),
        [("", "."), ("/", "/"), ("//a//b/", "/a/b/"), ("a/../..", ".."), ("/../a", "/a"),
         ("./", "./"), ("a/./b/..", "a"), ("b../..", ".")],
    )  # fmt: skip
    def test_normalize(self, path: str, normal: str) -> None:
        assert js_path_normalize(path) == normal

    def test_join_does_not_restart_at_absolute_parts(self) -> None:
        assert js_path_join("/base", "/abs/x") == "/base/abs/x"
        assert js_path_join("/base", "../../../etc") == "/etc"
        assert js_path_join() == "."
        assert js_path_join("rel", "") == "rel"

    def test_resolve(self) -> None:
        assert js_path_resolve("..", cwd="/x/y") == "/x"
        assert js_path_resolve("/a/b/", cwd="/x") == "/a/b"
        assert js_path_resolve("", cwd="/x/") == "/x"

    def test_non_strings_raise(self) -> None:
        with pytest.raises(TypeError):
            js_path_join("a", 5)
        with pytest.raises(TypeError):
            js_path_resolve(None, cwd="/")

    @given(st.lists(st.sampled_from(["", ".", "..", "a", "b", "/"]), max_size=8).map("/".join))
    def test_normalize_is_idempotent_and_clean(self, path: str) -> None:
        normal = js_path_normalize(path)
        assert js_path_normalize(normal) == normal
        assert "//" not in normal
        segments = [segment for segment in normal.split("/") if segment]
        assert "." not in segments or normal in (".", "./")

    @given(st.lists(st.sampled_from(["", ".", "..", "a", "b"]), max_size=8).map("/".join))
    def test_resolve_is_absolute_without_dot_segments(self, path: str) -> None:
        resolved = js_path_resolve(path, cwd="/w/d")
        assert resolved.startswith("/")
        assert not {".", ".."} & set(resolved.split("/"))
