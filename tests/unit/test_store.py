"""Unit tests for sessiond.store: merge semantics, compare-and-set, limits, change reports.

Pure: the clock and the session-id source are injected; ``on_change`` is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import count
from typing import Any

import msgspec
import pytest

from sessiond.dedup import RequestMemory
from sessiond.entries import StoredEntry, encode_entry
from sessiond.store import Change, SessionStore
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
    """Records every ``on_change`` call."""

    def __init__(self) -> None:
        self.changes: list[Change] = []

    def __call__(self, change: Change) -> None:
        self.changes.append(change)

    @property
    def calls(self) -> list[tuple[str, StoredEntry | None]]:
        return [(change.key, change.entry) for change in self.changes]

    @property
    def tokens(self) -> list[str | None]:
        return [change.token for change in self.changes]

    @property
    def ops(self) -> list[str | None]:
        return [change.op for change in self.changes]

    @property
    def seqs(self) -> list[int]:
        return [change.seq for change in self.changes]


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
    assert changes.calls == [("k", None)]
    assert store.delete("k") is False
    assert changes.calls == [("k", None)]


# --- compare-and-set --------------------------------------------------------------------------

WRITES: dict[str, Callable[[SessionStore, str | None], object]] = {
    "patch": lambda s, rev: s.patch("k", {"label": "y"}, if_revision=rev),
    "update": lambda s, rev: s.update("k", {"label": "y"}, if_revision=rev),
    "replace": lambda s, rev: s.replace("k", {"sessionId": "z"}, if_revision=rev),
    "delete": lambda s, rev: s.delete("k", if_revision=rev),
    "update_last_route": lambda s, rev: s.update_last_route(
        "k", provider="p", to="t", account_id=None, if_revision=rev
    ),
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
        ("a", patched),
        ("a", updated),
        ("b", replaced),
        ("c", routed),
        ("b", None),
    ]
    assert changes.tokens == [None] * 5
    assert changes.ops == ["patch", "update", "replace", "update_last_route", "delete"]
    assert changes.seqs == [1, 2, 3, 4, 5]


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
    assert changes.calls[-1][1] is store.get("k")


def test_failed_writes_report_nothing(store: SessionStore, changes: Changes) -> None:
    store.update("missing", {"x": 1})
    store.delete("missing")
    with pytest.raises(InvalidRequestError):
        store.replace("k", {"noSessionId": True})
    with pytest.raises(ConflictError):
        store.patch("k", {}, if_revision="nope")
    assert changes.calls == []


def test_each_store_numbers_its_own_changes(clock: Clock) -> None:
    ops_changes, main_changes = Changes(), Changes()
    ops = SessionStore("ops", clock_ms=clock, new_session_id=id_source(), on_change=ops_changes)
    main = SessionStore(
        AGENT, clock_ms=clock, new_session_id=id_source(), on_change=main_changes, seq=40
    )
    ops.patch("k", {})
    main.patch("k", {})
    ops.patch("k", {})
    assert ops.agent_id == "ops"
    assert ops_changes.seqs == [1, 2]
    assert main_changes.seqs == [41]


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
    store = SessionStore("main", clock_ms=lambda: 1_700_000_000_000, new_session_id=lambda: "s")
    first = store.patch("k", {"label": "one"})
    assert msgspec.msgpack.decode(store.wire_value("k", first).copy())["label"] == "one"
    second = store.patch("k", {"label": "two"})
    assert msgspec.msgpack.decode(store.wire_value("k", second).copy())["label"] == "two"
    assert store.wire_value("k", second) is store.wire_value("k", second)  # cached


# --- sequence numbers and Change reports ------------------------------------------------------


def test_seq_starts_from_the_constructor_and_counts_each_change(
    clock: Clock, changes: Changes
) -> None:
    store = SessionStore(
        AGENT, clock_ms=clock, new_session_id=id_source(), on_change=changes, seq=100
    )
    assert store.seq == 100
    store.patch("a", {})
    assert store.seq == 101
    store.replace("b", {"sessionId": "s"})
    store.delete("a")
    assert store.seq == 103
    assert changes.seqs == [101, 102, 103]


def test_a_new_store_starts_at_seq_zero(store: SessionStore, changes: Changes) -> None:
    assert store.seq == 0
    store.patch("a", {})
    assert changes.seqs == [1]


def test_writes_that_change_nothing_do_not_move_seq(store: SessionStore, changes: Changes) -> None:
    store.patch("a", {})
    store.update("missing", {"x": 1})
    store.delete("missing")
    with pytest.raises(ConflictError):
        store.patch("a", {}, if_revision="stale")
    with pytest.raises(ConflictError):
        store.patch("a", {}, if_absent=True)
    with pytest.raises(InvalidRequestError):
        store.replace("b", {"noSessionId": True})
    assert store.seq == 1
    assert changes.seqs == [1]


def test_a_change_is_one_struct_with_seq_key_entry_token_and_op(
    store: SessionStore, changes: Changes
) -> None:
    entry = store.patch("k", {"label": "x"}, token="tok-1")
    store.delete("k", token="tok-2")
    assert changes.changes == [
        Change(1, "k", entry, "tok-1", "patch"),
        Change(2, "k", None, "tok-2", "delete"),
    ]


def test_every_listener_sees_every_change(store: SessionStore, changes: Changes) -> None:
    extra: list[Change] = []
    store.listeners.append(extra.append)
    store.patch("k", {})
    assert extra == changes.changes
    assert len(extra) == 1


def test_store_value_stores_the_value_and_reports_its_token_and_op(
    store: SessionStore, changes: Changes
) -> None:
    entry = store.store_value("k", {"sessionId": "s", "updatedAt": 7}, "tok", "resolve")
    assert store.get("k") is entry
    assert entry.value() == {"sessionId": "s", "updatedAt": 7}
    assert changes.changes == [Change(1, "k", entry, "tok", "resolve")]


def test_store_value_respects_the_size_limit(clock: Clock, changes: Changes) -> None:
    store = SessionStore(
        AGENT, clock_ms=clock, new_session_id=id_source(), on_change=changes, max_entry_bytes=50
    )
    with pytest.raises(InvalidRequestError):
        store.store_value("k", {"sessionId": "s", "pad": "x" * 100})
    assert store.get("k") is None
    assert changes.changes == []


def remembering_store(clock: Clock, changes: Changes) -> SessionStore:
    memory = RequestMemory(max_entries=100, ttl_s=60.0, clock_s=lambda: 0.0)
    return SessionStore(
        AGENT,
        clock_ms=clock,
        new_session_id=id_source(),
        on_change=changes,
        requests=memory,
        seq=10,
    )


def test_a_token_is_remembered_with_its_key_op_entry_and_seq(
    clock: Clock, changes: Changes
) -> None:
    store = remembering_store(clock, changes)
    entry = store.patch("k", {"label": "x"}, token="t1")
    store.update_last_route("k", provider="p", to="x", account_id=None, token="t2")
    store.delete("k", token="t3")
    store.patch("other", {})  # no token: nothing remembered
    first = store.requests.lookup("t1")
    assert first is not None
    assert (first.key, first.entry, first.deleted, first.op, first.seq) == (
        "k",
        entry,
        False,
        "patch",
        11,
    )
    second = store.requests.lookup("t2")
    assert second is not None and (second.op, second.seq) == ("update_last_route", 12)
    third = store.requests.lookup("t3")
    assert third is not None
    assert (third.entry, third.deleted, third.op, third.seq) == (None, True, "delete", 13)
    assert store.requests.live() == [
        ("t1", "k", "patch"),
        ("t2", "k", "update_last_route"),
        ("t3", "k", "delete"),
    ]


def test_a_failed_write_does_not_remember_its_token(clock: Clock, changes: Changes) -> None:
    store = remembering_store(clock, changes)
    with pytest.raises(ConflictError):
        store.patch("k", {}, if_revision="stale", token="t1")
    assert store.update("missing", {}, token="t2") is None
    assert store.requests.lookup("t1") is None
    assert store.requests.lookup("t2") is None


# --- check_revision and if_absent -------------------------------------------------------------


def test_check_revision_returns_the_current_entry(store: SessionStore) -> None:
    current = seed(store, "k", {"sessionId": "s", "updatedAt": 1})
    assert store.check_revision("k", None) is current
    assert store.check_revision("k", current.revision) is current
    assert store.check_revision("missing", None) is None
    assert store.check_revision("missing", None, if_absent=True) is None


def test_check_revision_refuses_a_stale_or_missing_revision(store: SessionStore) -> None:
    current = seed(store, "k", {"sessionId": "s", "updatedAt": 1})
    with pytest.raises(ConflictError) as stale:
        store.check_revision("k", "0000000000000000")
    assert current.revision in str(stale.value)
    with pytest.raises(ConflictError):
        store.check_revision("missing", current.revision)


def test_check_revision_if_absent_refuses_an_existing_entry(store: SessionStore) -> None:
    current = seed(store, "k", {"sessionId": "s", "updatedAt": 1})
    with pytest.raises(ConflictError) as raised:
        store.check_revision("k", None, if_absent=True)
    assert "exists" in str(raised.value)
    with pytest.raises(ConflictError):
        store.check_revision("k", current.revision, if_absent=True)


IF_ABSENT_WRITES: dict[str, Callable[[SessionStore], StoredEntry]] = {
    "patch": lambda s: s.patch("k", {"label": "new"}, if_absent=True),
    "replace": lambda s: s.replace("k", {"sessionId": "new", "label": "new"}, if_absent=True),
}


@pytest.mark.parametrize("op", sorted(IF_ABSENT_WRITES))
def test_if_absent_creates_a_missing_entry(op: str, store: SessionStore, changes: Changes) -> None:
    created = IF_ABSENT_WRITES[op](store)
    assert store.get("k") is created
    assert created.value()["label"] == "new"
    assert changes.ops == [op]


@pytest.mark.parametrize("op", sorted(IF_ABSENT_WRITES))
def test_if_absent_conflicts_with_an_existing_entry(
    op: str, store: SessionStore, changes: Changes
) -> None:
    current = seed(store, "k", {"sessionId": "s", "updatedAt": 1, "label": "old"})
    with pytest.raises(ConflictError):
        IF_ABSENT_WRITES[op](store)
    assert store.get("k") is current
    assert changes.changes == []
    assert store.seq == 0


@pytest.mark.parametrize("op", sorted(IF_ABSENT_WRITES))
def test_if_absent_treats_a_js_falsy_value_as_no_entry(op: str, store: SessionStore) -> None:
    seed(store, "k", None)
    assert IF_ABSENT_WRITES[op](store).value()["label"] == "new"


def test_update_last_route_with_a_matching_revision_applies(
    store: SessionStore, changes: Changes
) -> None:
    current = seed(store, "k", {"sessionId": "s", "updatedAt": 1})
    routed = store.update_last_route(
        "k", provider="p", to="x", account_id=None, if_revision=current.revision
    )
    assert routed.value()["lastTo"] == "x"
    assert changes.calls == [("k", routed)]


# --- wire values ------------------------------------------------------------------------------


def decoded(raw: msgspec.Raw) -> Any:
    return msgspec.msgpack.decode(raw)


def test_wire_value_is_the_entry_as_msgpack(store: SessionStore) -> None:
    value = {"sessionId": "s", "updatedAt": 5, "nested": [1, {"a": None}], "f": 1.5}
    entry = seed(store, "k", value)
    raw = store.wire_value("k", entry)
    assert isinstance(raw, msgspec.Raw)
    assert decoded(raw) == value


@pytest.mark.parametrize(
    ("wide", "expected"),
    [
        (2**64, float(2**64)),
        (2**70 + 1, float(2**70 + 1)),
        (-(2**63) - 1, float(-(2**63) - 1)),
        (2**64 - 1, 2**64 - 1),  # still fits msgpack's uint64
        (-(2**63), -(2**63)),  # still fits int64
    ],
)
def test_wire_value_turns_integers_wider_than_64_bits_into_floats(
    store: SessionStore, wide: int, expected: int | float
) -> None:
    entry = seed(store, "k", {"sessionId": "s", "n": wide, "deep": [{"m": wide}]})
    value = decoded(store.wire_value("k", entry))
    assert value["n"] == expected and type(value["n"]) is type(expected)
    assert value["deep"][0]["m"] == expected and type(value["deep"][0]["m"]) is type(expected)
    assert value["sessionId"] == "s"


def test_a_write_reply_and_a_later_read_have_the_same_wire_value(store: SessionStore) -> None:
    written = store.patch("k", {"label": "x", "n": 3})
    first = bytes(store.wire_value("k", written))
    store._wire_cache.clear()  # the read path, as after a restart
    assert bytes(store.wire_value("k", written)) == first
    assert decoded(msgspec.Raw(first)) == written.value()
