"""Unit tests for sessiond.listing: order, filters and cursor paging of ``list``.

Pure: entries are built in memory; pages are selected from plain dicts.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond.entries import StoredEntry, encode_entry
from sessiond.listing import ListFilter, SortKey, decode_cursor, encode_cursor, select_page
from sessiond_client.errors import InvalidRequestError

NO_FILTER = ListFilter()


def entries_of(spec: dict[str, dict[str, Any] | Any]) -> dict[str, StoredEntry]:
    return {key: encode_entry(value) for key, value in spec.items()}


def expected_order(entries: dict[str, StoredEntry]) -> list[str]:
    """The contract's order, computed independently: newest updatedAt first, then key."""
    return [key for key, _ in sorted(entries.items(), key=lambda kv: (-kv[1].updated_at_ms, kv[0]))]


def all_pages(
    entries: dict[str, StoredEntry], selection: ListFilter = NO_FILTER, *, limit: int
) -> list[list[str]]:
    pages: list[list[str]] = []
    after = None
    while True:
        page, has_more = select_page(entries.items(), selection, limit=limit, after=after)
        pages.append([key for _, key, _ in page])
        assert len(page) <= limit
        if not has_more:
            return pages
        # The dispatcher's cursor: the position of the last item kept.
        after = decode_cursor(encode_cursor(page[-1][0]))
        assert len(pages) <= len(entries) + 1, "paging does not terminate"


def keys_of(page: list[tuple[SortKey, str, StoredEntry]]) -> list[str]:
    return [key for _, key, _ in page]


def test_newest_first() -> None:
    entries = entries_of(
        {
            "old": {"updatedAt": 100},
            "newest": {"updatedAt": 300},
            "middle": {"updatedAt": 200},
        }
    )
    page, has_more = select_page(entries.items(), NO_FILTER, limit=10, after=None)
    assert keys_of(page) == ["newest", "middle", "old"]
    assert has_more is False


def test_ties_are_broken_by_key_ascending() -> None:
    entries = entries_of({"b": {"updatedAt": 5}, "c": {"updatedAt": 5}, "a": {"updatedAt": 5}})
    page, _ = select_page(entries.items(), NO_FILTER, limit=10, after=None)
    assert keys_of(page) == ["a", "b", "c"]


def test_entries_without_a_usable_updated_at_sort_as_oldest() -> None:
    entries = entries_of(
        {"none": {"sessionId": "x"}, "text": "not an object", "real": {"updatedAt": 1}}
    )
    page, _ = select_page(entries.items(), NO_FILTER, limit=10, after=None)
    assert keys_of(page) == ["real", "none", "text"]


def test_the_page_returns_the_stored_entries_with_their_sort_positions() -> None:
    entries = entries_of({"a": {"updatedAt": 1}, "b": {"sessionId": "x"}})
    page, _ = select_page(entries.items(), NO_FILTER, limit=2, after=None)
    assert page == [
        ((-1.0, "a"), "a", entries["a"]),
        ((-entries["b"].updated_at_ms, "b"), "b", entries["b"]),
    ]
    assert page[0][2] is entries["a"]


def test_limit_cuts_the_page_and_gives_a_cursor_only_if_more_remain() -> None:
    entries = entries_of({f"k{i}": {"updatedAt": i} for i in range(5)})
    page, has_more = select_page(entries.items(), NO_FILTER, limit=3, after=None)
    assert keys_of(page) == ["k4", "k3", "k2"]
    assert has_more is True
    after = decode_cursor(encode_cursor(page[-1][0]))
    page, has_more = select_page(entries.items(), NO_FILTER, limit=2, after=after)
    assert keys_of(page) == ["k1", "k0"]
    assert has_more is False  # exactly exhausted: no empty last page


def test_empty_store() -> None:
    assert select_page({}.items(), NO_FILTER, limit=5, after=None) == ([], False)


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
def test_paging_returns_every_item_once_in_order(limit: int) -> None:
    # Many ties, to exercise the key tie-break across page boundaries.
    entries = entries_of({f"key{i:02d}": {"updatedAt": (i * 7) % 5} for i in range(23)})
    pages = all_pages(entries, limit=limit)
    flat = [key for page in pages for key in page]
    assert flat == expected_order(entries)
    assert all(pages[:-1]), "no empty page before the last"


@given(
    st.dictionaries(
        st.text(max_size=4),
        st.integers(min_value=0, max_value=3) | st.floats(0, 3, allow_nan=False),
        max_size=25,
    ),
    st.integers(min_value=1, max_value=6),
)
def test_paging_property(updated: dict[str, float], limit: int) -> None:
    entries = entries_of({key: {"updatedAt": ms} for key, ms in updated.items()})
    flat = [key for page in all_pages(entries, limit=limit) for key in page]
    assert flat == expected_order(entries)


def test_entries_changed_between_pages_are_not_repeated() -> None:
    entries = entries_of({f"k{i}": {"updatedAt": i} for i in range(6)})
    page, has_more = select_page(entries.items(), NO_FILTER, limit=2, after=None)
    assert keys_of(page) == ["k5", "k4"]
    assert has_more is True
    cursor = encode_cursor(page[-1][0])
    # k4 is touched (moves ahead of the cursor) and a new newest entry appears.
    entries["k4"] = encode_entry({"updatedAt": 100})
    entries["new"] = encode_entry({"updatedAt": 200})
    rest, _ = select_page(entries.items(), NO_FILTER, limit=10, after=decode_cursor(cursor))
    assert keys_of(rest) == ["k3", "k2", "k1", "k0"]


# --- filters ----------------------------------------------------------------------------------


@pytest.fixture
def mixed() -> dict[str, StoredEntry]:
    return entries_of(
        {
            "agent:main:a": {"updatedAt": 500, "label": "x", "spawnedBy": "agent:main:main"},
            "agent:main:b": {"updatedAt": 400, "label": "y"},
            "agent:ops:c": {"updatedAt": 300, "label": "x", "spawnedBy": "agent:ops:main"},
            "group:d": {"updatedAt": 200, "spawnedBy": "agent:main:main"},
            "odd": ["not", "an", "object"],
        }
    )


def keys_for(entries: dict[str, StoredEntry], selection: ListFilter) -> list[str]:
    page, _ = select_page(entries.items(), selection, limit=100, after=None)
    return keys_of(page)


def test_prefix_filter(mixed: dict[str, StoredEntry]) -> None:
    assert keys_for(mixed, ListFilter(prefix="agent:main:")) == ["agent:main:a", "agent:main:b"]
    assert keys_for(mixed, ListFilter(prefix="")) == expected_order(mixed)
    assert keys_for(mixed, ListFilter(prefix="nothing")) == []


def test_active_since_filter_is_inclusive(mixed: dict[str, StoredEntry]) -> None:
    assert keys_for(mixed, ListFilter(active_since_ms=400)) == ["agent:main:a", "agent:main:b"]
    assert keys_for(mixed, ListFilter(active_since_ms=401)) == ["agent:main:a"]
    assert keys_for(mixed, ListFilter(active_since_ms=10_000)) == []


def test_label_filter(mixed: dict[str, StoredEntry]) -> None:
    assert keys_for(mixed, ListFilter(label="x")) == ["agent:main:a", "agent:ops:c"]
    assert keys_for(mixed, ListFilter(label="X")) == []


def test_spawned_by_filter(mixed: dict[str, StoredEntry]) -> None:
    assert keys_for(mixed, ListFilter(spawned_by="agent:main:main")) == [
        "agent:main:a",
        "group:d",
    ]


def test_filters_combine(mixed: dict[str, StoredEntry]) -> None:
    selection = ListFilter(prefix="agent:", label="x", spawned_by="agent:ops:main")
    assert keys_for(mixed, selection) == ["agent:ops:c"]
    assert keys_for(mixed, ListFilter(label="x", active_since_ms=400)) == ["agent:main:a"]


def test_filtered_paging_returns_every_match_once() -> None:
    entries = entries_of(
        {f"k{i:02d}": {"updatedAt": i % 4, "label": "x" if i % 3 else "y"} for i in range(20)}
    )
    selection = ListFilter(label="x")
    flat = [key for page in all_pages(entries, selection, limit=1) for key in page]
    matching = [key for key in expected_order(entries) if entries[key].value()["label"] == "x"]
    assert flat == matching


# --- cursors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "position", [(-1.0, "k"), (-1_736_500_000_000.0, "agent:main:ü/🙂"), (0.0, ""), (-2.5, "a")]
)
def test_cursor_round_trip(position: tuple[float, str]) -> None:
    cursor = encode_cursor(position)
    assert isinstance(cursor, str)
    assert "=" not in cursor
    assert decode_cursor(cursor) == position


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "not base64 at all ~",
        "é",
        base64.urlsafe_b64encode(b"\xc1").decode(),  # not msgpack
        base64.urlsafe_b64encode(b"\x92\xa1x\x01").decode(),  # ["x", 1]: wrong types
        base64.urlsafe_b64encode(b"\x91\x01").decode(),  # one element only
        base64.urlsafe_b64encode(b"\xa3abc").decode(),  # a string
    ],
)
def test_malformed_cursor_is_an_invalid_request(cursor: str) -> None:
    with pytest.raises(InvalidRequestError):
        decode_cursor(cursor)


@pytest.mark.parametrize("limit", [1, 3, 4, 5, 10])
def test_has_more_is_true_exactly_when_matches_remain(limit: int) -> None:
    entries = entries_of(
        {f"k{i}": {"updatedAt": i, "label": "x" if i % 2 else "y"} for i in range(8)}
    )
    selection = ListFilter(label="x")  # 4 matches: k7, k5, k3, k1
    page, has_more = select_page(entries.items(), selection, limit=limit, after=None)
    assert keys_of(page) == ["k7", "k5", "k3", "k1"][:limit]
    assert has_more is (limit < 4)


def test_each_sort_position_is_negated_updated_at_then_key() -> None:
    entries = entries_of({"a": {"updatedAt": 7}, "b": {"updatedAt": 3.5}, "c": "text"})
    page, _ = select_page(entries.items(), NO_FILTER, limit=10, after=None)
    assert [position for position, _, _ in page] == [
        (-entries[key].updated_at_ms, key) for key in ("a", "b", "c")
    ]
    assert page[0][0] == (-7.0, "a") and page[1][0] == (-3.5, "b")
