"""Unit tests for sessiond_client.merge: the original mergeSessionEntry semantics."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import count

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond_client.jscompat import UNDEFINED
from sessiond_client.merge import merge_session_entry, strip_undefined

NOW = 1_700_000_000_000


def _ids() -> Callable[[], str]:
    counter = count(1)
    return lambda: f"uuid-{next(counter)}"


def merge(existing: object, patch: object, now_ms: int = NOW) -> dict[str, object]:
    return merge_session_entry(existing, patch, now_ms=now_ms, new_session_id=_ids())


class _Mapping(dict[str, object]):
    """A dict subclass: forces the general (non-fast) path of merge_session_entry."""


class TestSessionId:
    def test_patch_wins_even_when_empty_string(self) -> None:
        assert merge({"sessionId": "old"}, {"sessionId": ""})["sessionId"] == ""

    @pytest.mark.parametrize("missing", [None, UNDEFINED])
    def test_nullish_patch_id_keeps_existing(self, missing: object) -> None:
        assert merge({"sessionId": "old"}, {"sessionId": missing})["sessionId"] == "old"

    def test_new_id_only_when_neither_side_has_one(self) -> None:
        calls: list[str] = []

        def new_id() -> str:
            calls.append("called")
            return "fresh"

        merge_session_entry({"sessionId": "s"}, {}, now_ms=NOW, new_session_id=new_id)
        assert calls == []
        assert merge_session_entry(None, {}, now_ms=NOW, new_session_id=new_id)["sessionId"] == (
            "fresh"
        )


class TestUpdatedAt:
    def test_never_goes_backwards(self) -> None:
        assert merge({"updatedAt": NOW + 5}, {"updatedAt": 1})["updatedAt"] == NOW + 5
        assert merge({"updatedAt": 1}, {"updatedAt": 2})["updatedAt"] == NOW

    @pytest.mark.parametrize(
        ("patch_value", "expected"),
        [("9999999999999", 9_999_999_999_999), (True, NOW), (None, NOW), (-math.inf, NOW),
         ([NOW + 7], NOW + 7)],
    )  # fmt: skip
    def test_math_max_coercion(self, patch_value: object, expected: int) -> None:
        result = merge({"sessionId": "s"}, {"updatedAt": patch_value})["updatedAt"]
        assert result == expected
        assert type(result) is int

    def test_nan_and_infinity_propagate(self) -> None:
        nan_result = merge({"updatedAt": math.nan}, {})["updatedAt"]
        assert isinstance(nan_result, float) and math.isnan(nan_result)
        inf_then_nan = merge({"updatedAt": math.inf}, {"updatedAt": math.nan})["updatedAt"]
        assert isinstance(inf_then_nan, float) and math.isnan(inf_then_nan)
        assert merge({"updatedAt": math.inf}, {})["updatedAt"] == math.inf


class TestSpread:
    def test_patch_overrides_and_undefined_is_kept(self) -> None:
        result = merge({"sessionId": "s", "lastTo": "a", "label": "x"}, {"lastTo": UNDEFINED})
        assert result == {"sessionId": "s", "lastTo": UNDEFINED, "label": "x", "updatedAt": NOW}
        assert strip_undefined(result) == {"sessionId": "s", "label": "x", "updatedAt": NOW}

    def test_missing_entry_takes_patch_order(self) -> None:
        result = merge(None, {"updatedAt": NOW + 1, "label": "l"})
        assert list(result) == ["updatedAt", "label", "sessionId"]

    def test_string_entry_spreads_utf16_code_units(self) -> None:
        result = merge("o😀", {})
        assert [result[k] for k in ("0", "1", "2")] == ["o", "\ud83d", "\ude00"]

    def test_array_entry_spreads_indices_and_primitives_spread_nothing(self) -> None:
        assert merge(["a"], {})["0"] == "a"
        assert set(merge(5, {"label": "l"})) == {"label", "sessionId", "updatedAt"}
        assert set(merge(True, {})) == {"sessionId", "updatedAt"}

    def test_integer_like_keys_come_first(self) -> None:
        result = merge({"sessionId": "s", "extra": 1}, {"zeta": 1, "10": "a", "2": "b"})
        assert list(result) == ["2", "10", "sessionId", "extra", "zeta", "updatedAt"]

    @pytest.mark.parametrize("patch", [None, UNDEFINED])
    def test_nullish_patch_raises(self, patch: object) -> None:
        with pytest.raises(TypeError):
            merge({"sessionId": "s"}, patch)

    def test_inputs_are_not_mutated(self) -> None:
        existing: dict[str, object] = {"sessionId": "s", "updatedAt": 1}
        patch: dict[str, object] = {"label": "x"}
        merge(existing, patch)
        assert existing == {"sessionId": "s", "updatedAt": 1}
        assert patch == {"label": "x"}


def test_strip_undefined_recurses() -> None:
    value = {"a": UNDEFINED, "b": {"c": UNDEFINED, "d": 1}, "e": [UNDEFINED, {"f": UNDEFINED}]}
    assert strip_undefined(value) == {"b": {"d": 1}, "e": [None, {}]}


# --- properties ---------------------------------------------------------------------

KEYS = st.sampled_from(["sessionId", "updatedAt", "label", "lastTo", "model", "5", "10", "x"])
PLAIN_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2 * NOW), st.text(max_size=3), st.just(UNDEFINED)
)
ENTRIES = st.dictionaries(KEYS, PLAIN_VALUES, max_size=6)
TIMESTAMPS = st.dictionaries(st.sampled_from(["sessionId", "label"]), st.text(max_size=3)).flatmap(
    lambda base: st.one_of(
        st.just(base), st.integers(0, 2 * NOW).map(lambda t: {**base, "updatedAt": t})
    )
)


@given(ENTRIES, ENTRIES)
def test_no_existing_key_is_lost_unless_overridden(
    existing: dict[str, object], patch: dict[str, object]
) -> None:
    result = merge(existing, patch)
    assert set(result) == set(existing) | set(patch) | {"sessionId", "updatedAt"}
    for key, value in existing.items():
        if key not in patch and key not in ("sessionId", "updatedAt"):
            assert result[key] is value
    for key, value in patch.items():
        if key not in ("sessionId", "updatedAt"):
            assert result[key] is value


@given(TIMESTAMPS, TIMESTAMPS, st.integers(0, 2 * NOW))
def test_updated_at_is_never_lower_than_either_input(
    existing: dict[str, object], patch: dict[str, object], now_ms: int
) -> None:
    updated_at = merge(existing, patch, now_ms)["updatedAt"]
    assert isinstance(updated_at, int)
    assert updated_at >= now_ms
    for side in (existing, patch):
        stamp = side.get("updatedAt", 0)
        assert isinstance(stamp, int)
        assert updated_at >= stamp


@given(ENTRIES, ENTRIES)
def test_fast_path_agrees_with_the_general_path(
    existing: dict[str, object], patch: dict[str, object]
) -> None:
    fast = merge(existing, patch)
    general = merge(_Mapping(existing), _Mapping(patch))
    assert list(fast) == list(general)
    for key, value in fast.items():
        assert _same_value(value, general[key]), key


def _same_value(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and type(a) is type(b)
