"""Unit tests for sessiond.store: merge semantics, compare-and-set, limits, change reports.

Pure: the clock and the session-id source are injected; ``on_change`` is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import count
from typing import Any

import pytest

from sessiond.entries import StoredEntry, encode_entry
from sessiond.store import SessionStore
from sessiond_client.errors import ConflictError, InvalidRequestError

AGENT = "main"
T0 = 1_700_000_000_000


class Clock:
    """A controllable millisecond clock."""

    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


class Changes:
    """Records every ``on_change`` call (the request tokens separately)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, StoredEntry | None]] = []
        self.tokens: list[str | None] = []

    def __call__(
        self, agent_id: str, key: str, entry: StoredEntry | None, token: str | None
    ) -> None:
        self.calls.append((agent_id, key, entry))
        self.tokens.append(token)


def id_source() -> Callable[[], str]:
    numbers: Iterator[int] = count(1)
    return lambda: f"uuid-{next(numbers)}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def changes() -> Changes:
    return Changes()


@pytest.fixture
def store(clock: Clock, changes: Changes) -> SessionStore:
    return SessionStore(AGENT, clock_ms=clock, new_session_id=id_source(), on_change=changes)


def seed(store: SessionStore, key: str, value: Any) -> StoredEntry:
    """Put an entry in place without going through an operation (as a load would)."""
    entry = encode_entry(value)
    store.entries[key] = entry
    return entry


def value_of(store: SessionStore, key: str) -> Any:
    entry = store.get(key)
    assert entry is not None
    return entry.value()


# --- patch: mergeSessionEntry ---------------------------------------------------------------


def test_patch_creates_a_missing_entry_with_a_new_session_id(store: SessionStore) -> None:
    result = store.patch("k", {"label": "x"})
    assert result.value() == {"label": "x", "sessionId": "uuid-1", "updatedAt": T0}
    assert store.get("k") is result
    assert len(store) == 1


def test_patch_keeps_the_existing_session_id(store: SessionStore) -> None:
    seed(store, "k", {"sessionId": "kept", "updatedAt": 1})
    assert store.patch("k", {"label": "x"}).value()["sessionId"] == "kept"


def test_patch_session_id_wins_over_the_existing_one(store: SessionStore) -> None:
    seed(store, "k", {"sessionId": "old", "updatedAt": 1})
    assert store.patch("k", {"sessionId": "new"}).value()["sessionId"] == "new"


def test_patch_with_a_null_session_id_keeps_the_existing_one(store: SessionStore) -> None:
    # null plays JS undefined, and `patch.sessionId ?? existing.sessionId` skips it.
    seed(store, "k", {"sessionId": "old", "updatedAt": 1})
    assert store.patch("k", {"sessionId": None}).value()["sessionId"] == "old"


def test_new_session_ids_are_minted_only_when_needed() -> None:
    minted: list[str] = []

    def new_id() -> str:
        minted.append(f"id{len(minted)}")
        return minted[-1]

    store = SessionStore(AGENT, clock_ms=Clock(), new_session_id=new_id)
    store.patch("a", {"sessionId": "given"})
    seed(store, "b", {"sessionId": "there"})
    store.patch("b", {})
    assert minted == []
    store.patch("c", {})
    assert minted == ["id0"]


@pytest.mark.parametrize(
    "case",
    [
        (100, 200, 300, 300),  # now is newest
        (500, 200, 300, 500),  # existing is newest: never goes backwards
        (100, 900, 300, 900),  # patch is newest
        (100, None, 50, 100),  # patch gives none
        (None, None, 50, 50),  # neither gives one
        (100, 100, 100, 100),
    ],
)
def test_updated_at_is_the_max_of_existing_patch_and_now(
    clock: Clock, store: SessionStore, case: tuple[int | None, int | None, int, int]
) -> None:
    existing_ms, patch_ms, now_ms, expected_ms = case
    existing: dict[str, Any] = {"sessionId": "s"}
    if existing_ms is not None:
        existing["updatedAt"] = existing_ms
    seed(store, "k", existing)
    clock.now_ms = now_ms
    patch: dict[str, Any] = {} if patch_ms is None else {"updatedAt": patch_ms}
    result = store.patch("k", patch)
    assert result.value()["updatedAt"] == expected_ms
    assert result.updated_at_ms == expected_ms


def test_patch_merges_shallowly_over_existing_fields(store: SessionStore) -> None:
    seed(
        store,
        "k",
        {"sessionId": "s", "updatedAt": 1, "label": "old", "skillsSnapshot": {"a": 1, "b": 2}},
    )
    result = store.patch("k", {"label": "new", "skillsSnapshot": {"a": 9}, "model": "m"})
    assert result.value() == {
        "sessionId": "s",
        "updatedAt": T0,
        "label": "new",
        "skillsSnapshot": {"a": 9},  # {...existing, ...patch} replaces nested objects
        "model": "m",
    }


def test_a_null_patch_value_deletes_the_field(store: SessionStore) -> None:
    seed(store, "k", {"sessionId": "s", "updatedAt": 1, "label": "x", "model": "m"})
    result = store.patch("k", {"label": None, "absentAnyway": None})
    assert result.value() == {"sessionId": "s", "updatedAt": T0, "model": "m"}


def test_a_null_updated_at_in_the_patch_does_not_remove_it(store: SessionStore) -> None:
    seed(store, "k", {"sessionId": "s", "updatedAt": 1})
    assert store.patch("k", {"updatedAt": None}).value()["updatedAt"] == T0


def test_unknown_fields_are_preserved(store: SessionStore) -> None:
    future = {"nested": [1, {"deep": True}], "n": 1.5}
    seed(store, "k", {"sessionId": "s", "updatedAt": 1, "fromTheFuture": future})
    store.patch("k", {"label": "x"})
    assert value_of(store, "k")["fromTheFuture"] == future
    store.patch("k", {"anotherNewField": "kept as given"})
    assert value_of(store, "k")["anotherNewField"] == "kept as given"
    assert value_of(store, "k")["fromTheFuture"] == future


def test_patch_does_not_mutate_the_previous_entry(store: SessionStore) -> None:
    before = seed(store, "k", {"sessionId": "s", "updatedAt": 1, "label": "a"})
    before_bytes = before.json_bytes
    store.patch("k", {"label": "b"})
    assert before.json_bytes == before_bytes
    assert before.value()["label"] == "a"


def test_patch_over_a_non_object_entry(store: SessionStore) -> None:
    # The original spread a string's characters ({..."ab"} is {0: "a", 1: "b"}).
    seed(store, "k", "ab")
    result = store.patch("k", {"label": "x"}).value()
    assert result == {"0": "a", "1": "b", "label": "x", "sessionId": "uuid-1", "updatedAt": T0}


# --- update -----------------------------------------------------------------------------------


def test_update_of_a_missing_key_returns_none_and_changes_nothing(
    store: SessionStore, changes: Changes
) -> None:
    assert store.update("missing", {"label": "x"}) is None
    assert store.get("missing") is None
    assert changes.calls == []


def test_update_merges_like_patch(store: SessionStore, clock: Clock) -> None:
    seed(store, "k", {"sessionId": "s", "updatedAt": 1, "label": "a", "model": "m"})
    clock.now_ms = T0 + 5
    result = store.update("k", {"label": None, "x": 1})
    assert result is not None
    assert result.value() == {"sessionId": "s", "updatedAt": T0 + 5, "model": "m", "x": 1}


# --- replace ----------------------------------------------------------------------------------


def test_replace_stores_the_entry_exactly_as_given(store: SessionStore) -> None:
    seed(store, "k", {"sessionId": "old", "updatedAt": T0 + 999, "label": "gone"})
    entry = {"sessionId": "new", "updatedAt": 5, "model": "m", "unknown": {"a": 1}}
    result = store.replace("k", entry)
    # Not merged, and updatedAt may go backwards: it is an import/restore.
    assert result.value() == entry


def test_replace_drops_null_fields(store: SessionStore) -> None:
    result = store.replace("k", {"sessionId": "s", "updatedAt": 5, "label": None})
    assert result.value() == {"sessionId": "s", "updatedAt": 5}


def test_replace_without_updated_at_uses_now(store: SessionStore) -> None:
    assert store.replace("k", {"sessionId": "s"}).value() == {"sessionId": "s", "updatedAt": T0}


@pytest.mark.parametrize(
    "entry", [{"updatedAt": 5}, {"sessionId": None}, {"sessionId": 12}, {"sessionId": ["s"]}]
)
def test_replace_requires_a_string_session_id(
    store: SessionStore, changes: Changes, entry: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequestError):
        store.replace("k", entry)
    assert store.get("k") is None
    assert changes.calls == []


# --- update_last_route ------------------------------------------------------------------------


def route(store: SessionStore, key: str = "k", **kwargs: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"provider": None, "to": None, "account_id": None}
    params.update(kwargs)
    value: dict[str, Any] = store.update_last_route(key, **params).value()
    return value


def test_route_creates_a_missing_entry(store: SessionStore) -> None:
    assert route(store, provider="telegram", to=" +1555 ", account_id=" acct ") == {
        "sessionId": "uuid-1",
        "updatedAt": T0,
        "lastProvider": "telegram",
        "lastTo": "+1555",
        "lastAccountId": "acct",
    }


def test_route_sets_the_last_route_fields(store: SessionStore) -> None:
    seed(store, "k", {"sessionId": "s", "updatedAt": 1, "label": "x"})
    value = route(store, provider="slack", to="C123", account_id="A1")
    assert value["lastProvider"] == "slack"
    assert value["lastTo"] == "C123"
    assert value["lastAccountId"] == "A1"
    assert value["label"] == "x"
    assert value["sessionId"] == "s"


@pytest.mark.parametrize("blank_to", [None, "", "   ", "\t\n"])
def test_blank_to_clears_last_to(store: SessionStore, blank_to: str | None) -> None:
    seed(store, "k", {"sessionId": "s", "updatedAt": 1, "lastTo": "old"})
    assert "lastTo" not in route(store, provider="p", to=blank_to)


@pytest.mark.parametrize("blank_account", [None, "", "  "])
def test_blank_account_keeps_the_previous_one(
    store: SessionStore, blank_account: str | None
) -> None:
    seed(store, "k", {"sessionId": "s", "updatedAt": 1, "lastAccountId": "previous"})
    assert route(store, provider="p", account_id=blank_account)["lastAccountId"] == "previous"


def test_blank_account_without_a_previous_one_leaves_it_absent(store: SessionStore) -> None:
    seed(store, "k", {"sessionId": "s", "updatedAt": 1})
    assert "lastAccountId" not in route(store, provider="p", account_id="")


def test_a_new_account_replaces_the_previous_one(store: SessionStore) -> None:
    seed(store, "k", {"sessionId": "s", "updatedAt": 1, "lastAccountId": "previous"})
    assert route(store, provider="p", account_id="next")["lastAccountId"] == "next"


def test_missing_provider_clears_last_provider(store: SessionStore) -> None:
    seed(store, "k", {"sessionId": "s", "updatedAt": 1, "lastProvider": "old"})
    assert "lastProvider" not in route(store, provider=None, to="x")


def test_route_does_not_move_updated_at_by_default(store: SessionStore) -> None:
    # A delivery receipt is not activity: idle expiry must still fire.
    seed(store, "k", {"sessionId": "s", "updatedAt": 1234})
    assert route(store, provider="p", to="x")["updatedAt"] == 1234


def test_route_with_touch_moves_updated_at_to_now(store: SessionStore) -> None:
    seed(store, "k", {"sessionId": "s", "updatedAt": 1234})
    assert route(store, provider="p", to="x", touch=True)["updatedAt"] == T0


def test_route_on_an_entry_without_updated_at_sets_it(store: SessionStore) -> None:
    seed(store, "k", {"sessionId": "s"})
    assert route(store, provider="p")["updatedAt"] == T0


# --- delete -----------------------------------------------------------------------------------


def test_delete(store: SessionStore, changes: Changes) -> None:
    seed(store, "k", {"sessionId": "s", "updatedAt": 1})
    assert store.delete("k") is True
    assert store.get("k") is None
    assert changes.calls == [(AGENT, "k", None)]
    assert store.delete("k") is False
    assert changes.calls == [(AGENT, "k", None)]


# --- compare-and-set --------------------------------------------------------------------------

WRITES: dict[str, Callable[[SessionStore, str | None], object]] = {
    "patch": lambda s, rev: s.patch("k", {"label": "y"}, if_revision=rev),
    "update": lambda s, rev: s.update("k", {"label": "y"}, if_revision=rev),
    "replace": lambda s, rev: s.replace("k", {"sessionId": "z"}, if_revision=rev),
    "delete": lambda s, rev: s.delete("k", if_revision=rev),
}


@pytest.mark.parametrize("op", sorted(WRITES))
def test_matching_revision_applies(op: str, store: SessionStore, changes: Changes) -> None:
    current = seed(store, "k", {"sessionId": "s", "updatedAt": 1, "label": "x"})
    WRITES[op](store, current.revision)
    assert len(changes.calls) == 1


@pytest.mark.parametrize("op", sorted(WRITES))
def test_stale_revision_conflicts(op: str, store: SessionStore, changes: Changes) -> None:
    old = encode_entry({"sessionId": "s", "updatedAt": 1, "label": "old"})
    current = seed(store, "k", {"sessionId": "s", "updatedAt": 1, "label": "x"})
    with pytest.raises(ConflictError):
        WRITES[op](store, old.revision)
    assert store.get("k") is current
    assert changes.calls == []


@pytest.mark.parametrize("op", sorted(WRITES))
def test_revision_of_a_missing_entry_conflicts(
    op: str, store: SessionStore, changes: Changes
) -> None:
    # "I expected an entry at revision r" fails when there is none, even for update.
    with pytest.raises(ConflictError):
        WRITES[op](store, "0123456789abcdef")
    assert store.get("k") is None
    assert changes.calls == []


def test_revision_changes_with_every_write(store: SessionStore, clock: Clock) -> None:
    first = store.patch("k", {"label": "a"})
    clock.now_ms += 1
    second = store.patch("k", {"label": "a"})
    assert first.revision != second.revision
    with pytest.raises(ConflictError):
        store.patch("k", {"label": "b"}, if_revision=first.revision)
    store.patch("k", {"label": "b"}, if_revision=second.revision)


# --- size limit -------------------------------------------------------------------------------


def test_entries_over_the_size_limit_are_refused(clock: Clock, changes: Changes) -> None:
    store = SessionStore(
        AGENT, clock_ms=clock, new_session_id=id_source(), on_change=changes, max_entry_bytes=200
    )
    small = store.patch("k", {"label": "x"})
    assert len(small.json_bytes) <= 200
    with pytest.raises(InvalidRequestError):
        store.patch("k", {"label": "x" * 300})
    with pytest.raises(InvalidRequestError):
        store.replace("k", {"sessionId": "s", "blob": "y" * 300})
    assert store.get("k") is small
    assert len(changes.calls) == 1


def test_an_entry_exactly_at_the_limit_is_accepted(clock: Clock) -> None:
    probe = encode_entry({"sessionId": "s", "updatedAt": T0, "pad": "x" * 50})
    store = SessionStore(
        AGENT,
        clock_ms=clock,
        new_session_id=id_source(),
        max_entry_bytes=len(probe.json_bytes),
    )
    assert store.replace("k", {"sessionId": "s", "updatedAt": T0, "pad": "x" * 50})
    with pytest.raises(InvalidRequestError):
        store.replace("k", {"sessionId": "s", "updatedAt": T0, "pad": "x" * 51})


# --- change reports ---------------------------------------------------------------------------


def test_each_change_is_reported_once_with_the_stored_entry(
    store: SessionStore, changes: Changes
) -> None:
    patched = store.patch("a", {"label": "1"})
    updated = store.update("a", {"label": "2"})
    replaced = store.replace("b", {"sessionId": "s"})
    routed = store.update_last_route("c", provider="p", to="t", account_id=None)
    store.delete("b")
    assert changes.calls == [
        (AGENT, "a", patched),
        (AGENT, "a", updated),
        (AGENT, "b", replaced),
        (AGENT, "c", routed),
        (AGENT, "b", None),
    ]
    assert changes.tokens == [None] * 5


def test_the_request_token_of_a_write_is_reported_with_its_change(
    store: SessionStore, changes: Changes
) -> None:
    store.patch("a", {}, token="t1")
    store.update("a", {}, token="t2")
    store.replace("a", {"sessionId": "s"}, token="t3")
    store.update_last_route("a", provider=None, to=None, account_id=None, token="t4")
    store.delete("a", token="t5")
    assert changes.tokens == ["t1", "t2", "t3", "t4", "t5"]


def test_the_reported_entry_is_what_the_store_holds(store: SessionStore, changes: Changes) -> None:
    store.patch("k", {"label": "x"})
    assert changes.calls[-1][2] is store.get("k")


def test_failed_writes_report_nothing(store: SessionStore, changes: Changes) -> None:
    store.update("missing", {"x": 1})
    store.delete("missing")
    with pytest.raises(InvalidRequestError):
        store.replace("k", {"noSessionId": True})
    with pytest.raises(ConflictError):
        store.patch("k", {}, if_revision="nope")
    assert changes.calls == []


def test_the_agent_id_is_reported(clock: Clock, changes: Changes) -> None:
    store = SessionStore("ops", clock_ms=clock, new_session_id=id_source(), on_change=changes)
    store.patch("k", {})
    assert changes.calls[0][0] == "ops"


def test_items_and_len(store: SessionStore) -> None:
    store.patch("a", {})
    store.patch("b", {})
    assert len(store) == 2
    assert sorted(key for key, _ in store.items()) == ["a", "b"]


# --- JS-falsy entries and the original's argument checks -----------------------------------


@pytest.mark.parametrize("falsy", [None, False, 0, 0.0, ""])
def test_a_falsy_entry_is_not_a_session(store: SessionStore, falsy: Any) -> None:
    # The original's updateSessionStoreEntry: `if (!existing) return null`.
    seed(store, "k", falsy)
    assert store.get("k") is None
    assert store.update("k", {"label": "x"}) is None
    assert store.entries["k"].value() == falsy  # kept as it is until something replaces it
    assert store.patch("k", {"label": "x"}).value()["label"] == "x"


@pytest.mark.parametrize("truthy", [[], {}, "x", [0], 1])
def test_other_non_object_entries_still_count(store: SessionStore, truthy: Any) -> None:
    seed(store, "k", truthy)
    assert store.get("k") is not None
    assert store.update("k", {"label": "x"}) is not None


def test_a_blank_account_keeps_a_previous_null(store: SessionStore) -> None:
    seed(store, "k", {"sessionId": "s", "updatedAt": 1, "lastAccountId": None})
    assert route(store, provider="p", account_id=" ")["lastAccountId"] is None


@pytest.mark.parametrize("field", ["to", "account_id"])
def test_a_non_string_route_value_is_a_type_error(store: SessionStore, field: str) -> None:
    # The original called `to?.trim()`: a number threw "to?.trim is not a function".
    with pytest.raises(TypeError):
        values: dict[str, Any] = {"to": None, "account_id": None, field: 5}
        store.update_last_route("k", provider="p", **values)
    assert store.get("k") is None


def test_a_lone_surrogate_survives_an_update(store: SessionStore) -> None:
    store.entries["k"] = encode_entry({"sessionId": "s", "updatedAt": 1, "label": "cut \ud83d"})
    updated = store.update("k", {"model": "m"})
    assert updated is not None
    assert updated.exact_value()["label"] == "cut \ud83d"
    assert b'"cut \\ud83d"' in updated.json_bytes
    assert updated.value()["label"] == "cut \ufffd"


def test_wire_value_cache_never_serves_a_replaced_entry() -> None:
    import msgspec

    store = SessionStore("main", clock_ms=lambda: 1_700_000_000_000, new_session_id=lambda: "s")
    first = store.patch("k", {"label": "one"})
    assert msgspec.msgpack.decode(store.wire_value("k", first).copy())["label"] == "one"
    second = store.patch("k", {"label": "two"})
    assert msgspec.msgpack.decode(store.wire_value("k", second).copy())["label"] == "two"
    assert store.wire_value("k", second) is store.wire_value("k", second)  # cached
