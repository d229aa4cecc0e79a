"""Unit tests for sessiond.dispatch: validation, store selection and result shapes.

Pure: real :class:`SessionStore` objects behind a tiny in-test :class:`StoreAccess`, an
injected clock and deterministic session ids. No server, no event loop. Result entries
travel as pre-encoded msgpack (:class:`msgspec.Raw`); tests decode them to compare.
"""

from __future__ import annotations

import datetime
import math
from itertools import count
from typing import Any

import msgspec
import pytest

import sessiond
from sessiond.config import build_config
from sessiond.dedup import RequestMemory
from sessiond.dispatch import Dispatcher, Outcome, agents_of
from sessiond.entries import encode_entry
from sessiond.store import Change, ChangeListener, SessionStore
from sessiond_client.errors import ConflictError, InvalidRequestError
from sessiond_client.protocol import (
    PROTOCOL_VERSION,
    DeleteRequest,
    EntryRef,
    EntryResult,
    FlushRequest,
    GetManyRequest,
    GetRequest,
    HelloRequest,
    HelloResult,
    ListRequest,
    ListResult,
    OkReply,
    PatchRequest,
    ReplaceRequest,
    Request,
    ResolveRequest,
    ResolveResult,
    StatsRequest,
    UpdateLastRouteRequest,
    UpdateRequest,
)

T0 = 1_700_000_000_000
MAX_KEY_BYTES = 16
MAX_KEYS = 3
MAX_LIST = 5
MAX_DEPTH = 6
MAX_FIELDS = 50


class Clock:
    def __init__(self) -> None:
        self.now_ms = T0

    def __call__(self) -> int:
        return self.now_ms


class Stores:
    """A minimal StoreAccess: one SessionStore per agent, created on first use."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.by_agent: dict[str, SessionStore] = {}
        self.accesses: list[tuple[str, bool]] = []
        self.changes: list[tuple[str, str]] = []
        ids = count(1)
        self.new_session_id = lambda: f"uuid-{next(ids)}"

    def store_for(self, agent_id: str, *, for_write: bool) -> SessionStore:
        self.accesses.append((agent_id, for_write))
        if agent_id not in self.by_agent:
            self.by_agent[agent_id] = SessionStore(
                agent_id,
                clock_ms=self.clock,
                new_session_id=self.new_session_id,
                on_change=self.listener(agent_id),
                requests=RequestMemory(max_entries=100, ttl_s=60.0, clock_s=lambda: 0.0),
            )
        return self.by_agent[agent_id]

    def transcripts_dir_for(self, agent_id: str) -> str:
        return f"/state/agents/{agent_id}/sessions"

    def listener(self, agent_id: str) -> ChangeListener:
        def record(change: Change) -> None:
            self.changes.append((agent_id, change.key))

        return record


class Stats:
    """The injected stats source; records the agent each call asked for."""

    def __init__(self) -> None:
        self.asked: list[str | None] = []

    def __call__(self, agent: str | None) -> dict[str, Any]:
        self.asked.append(agent)
        return {"agent": agent, "ops": {"get": 1}}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stores(clock: Clock) -> Stores:
    return Stores(clock)


@pytest.fixture
def stats() -> Stats:
    return Stats()


def make_dispatcher(
    stores: Stores, clock: Clock, stats: Stats | None = None, **limits: Any
) -> Dispatcher:
    settings: dict[str, Any] = {
        "max_key_bytes": MAX_KEY_BYTES,
        "max_keys_per_request": MAX_KEYS,
        "max_list_limit": MAX_LIST,
        "max_depth": MAX_DEPTH,
        "max_fields": MAX_FIELDS,
        **limits,
    }
    # Built as the daemon builds it, so every test runs under limits the daemon accepts.
    config = build_config({"limits": settings}, environ={}, home="/home/bot")
    return Dispatcher(config, stores, stats=stats or Stats(), clock_ms=clock)


@pytest.fixture
def dispatcher(stores: Stores, clock: Clock, stats: Stats) -> Dispatcher:
    return make_dispatcher(stores, clock, stats)


def decoded(raw: Any) -> Any:
    """A result's ``entry`` (msgpack bytes) as the client decodes it."""
    assert isinstance(raw, msgspec.Raw)
    return msgspec.msgpack.decode(raw)


def value(stores: Stores, agent: str, key: str) -> Any:
    entry = stores.by_agent[agent].get(key)
    return None if entry is None else entry.value()


# --- keys -----------------------------------------------------------------------------------


def requests_with_key(key: str) -> list[Request]:
    return [
        GetRequest(id=1, key=key),
        PatchRequest(id=1, key=key, patch={}),
        UpdateRequest(id=1, key=key, patch={}),
        ReplaceRequest(id=1, key=key, entry={"sessionId": "s"}),
        UpdateLastRouteRequest(id=1, key=key),
        DeleteRequest(id=1, key=key),
        GetManyRequest(id=1, keys=["fine", key]),
    ]


@pytest.mark.parametrize("key", ["", "k" * (MAX_KEY_BYTES + 1), "é" * 9, "🙂" * 5])
def test_bad_keys_are_invalid_requests(dispatcher: Dispatcher, stores: Stores, key: str) -> None:
    for request in requests_with_key(key):
        with pytest.raises(InvalidRequestError):
            dispatcher.handle(request)
    assert stores.changes == []


@pytest.mark.parametrize("key", ["k", "k" * MAX_KEY_BYTES, "é" * 8, "🙂" * 4])
def test_keys_up_to_the_byte_limit_are_accepted(dispatcher: Dispatcher, key: str) -> None:
    # The limit is in UTF-8 bytes: "é" * 8 is 16 bytes, "🙂" * 4 is 16 bytes.
    for request in requests_with_key(key):
        dispatcher.handle(request)


# --- fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"updatedAt": "x"},
        {"sessionId": 5},
        {"chatType": "channel"},
        {"systemSent": "true"},
        {"": 1},
        {"x" * 257: 1},
    ],
)
def test_bad_fields_are_invalid_requests(
    dispatcher: Dispatcher, stores: Stores, fields: dict[str, Any]
) -> None:
    dispatcher.handle(PatchRequest(id=1, key="k", patch={"sessionId": "s"}))
    stores.changes.clear()
    bad_writes: list[Request] = [
        PatchRequest(id=1, key="k", patch=fields),
        UpdateRequest(id=1, key="k", patch=fields),
        ReplaceRequest(id=1, key="k", entry={"sessionId": "s", **fields}),
    ]
    for request in bad_writes:
        with pytest.raises(InvalidRequestError):
            dispatcher.handle(request)
    assert stores.changes == []


def test_null_fields_and_unknown_fields_pass_validation(
    dispatcher: Dispatcher, stores: Stores
) -> None:
    dispatcher.handle(PatchRequest(id=1, key="k", patch={"label": "x", "model": "m"}))
    result = dispatcher.handle(
        PatchRequest(id=1, key="k", patch={"label": None, "x" * 256: 1, "future": {"a": [1]}})
    )
    assert isinstance(result, EntryResult)
    entry = decoded(result.entry)
    assert "label" not in entry
    assert entry["future"] == {"a": [1]}
    assert entry["x" * 256] == 1


# --- values JSON cannot hold ----------------------------------------------------------------


def nested(depth: int) -> Any:
    """A value ``depth`` levels deep: ``[[...[0]...]]`` (a bare 0 is one level)."""
    built: Any = 0
    for _ in range(depth - 1):
        built = [built]
    return built


UNJSONABLE: dict[str, Any] = {
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "nested nan": [1, {"b": math.nan}],
    "bytes": b"raw",
    "bytearray": bytearray(b"raw"),
    "ext": msgspec.msgpack.Ext(1, b"x"),
    "datetime": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    "int key": {1: "one"},
    "nested int key": [{"ok": {2.5: "x"}}],
    # The entry is at depth 1, so its field's value starts at depth 2.
    "too deep": nested(MAX_DEPTH),
    "too many items": list(range(MAX_FIELDS)),
}


def writes_carrying(bad: Any) -> list[Request]:
    return [
        PatchRequest(id=1, key="k", patch={"label": "new", "x": bad}),
        UpdateRequest(id=1, key="k", patch={"label": "new", "x": bad}),
        ReplaceRequest(id=1, key="k", entry={"sessionId": "new", "x": bad}),
        ResolveRequest(id=1, ctx={"From": "+1555", "Extra": bad}),
    ]


@pytest.mark.parametrize("name", sorted(UNJSONABLE))
def test_values_json_cannot_hold_are_refused_and_nothing_applied(
    dispatcher: Dispatcher, stores: Stores, name: str
) -> None:
    dispatcher.handle(ReplaceRequest(id=1, key="k", entry={"sessionId": "s", "label": "old"}))
    before = stores.by_agent["main"].get("k")
    stores.changes.clear()
    for request in writes_carrying(UNJSONABLE[name]):
        with pytest.raises(InvalidRequestError):
            dispatcher.handle(request)
    assert stores.changes == []
    assert stores.by_agent["main"].get("k") is before
    assert stores.by_agent["main"].seq == 1


def test_values_within_the_bounds_are_accepted(dispatcher: Dispatcher) -> None:
    # depth: the innermost 0 is at MAX_DEPTH; fields: 3 + (MAX_DEPTH - 2) one-item lists + items.
    items = list(range(MAX_FIELDS - 3 - (MAX_DEPTH - 2)))
    fine = {"deep": nested(MAX_DEPTH - 1), "items": items, "f": 1.5}
    result = dispatcher.handle(PatchRequest(id=1, key="k", patch=fine))
    entry = decoded(result.entry)
    assert (entry["deep"], entry["items"], entry["f"]) == (
        fine["deep"],
        fine["items"],
        fine["f"],
    )


def test_a_refused_value_names_where_it_is(dispatcher: Dispatcher) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        dispatcher.handle(PatchRequest(id=1, key="k", patch={"a": [0, {"b": math.inf}]}))
    assert "patch.a[1].b" in str(raised.value)


# --- results --------------------------------------------------------------------------------


def on_the_wire(result: object) -> object:
    """A result as a client receives it (entries are pre-encoded msgpack)."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(result))


def test_patch_get_update_delete_round(dispatcher: Dispatcher, stores: Stores) -> None:
    assert dispatcher.handle(GetRequest(id=1, key="k")) is None
    assert dispatcher.handle(UpdateRequest(id=1, key="k", patch={"label": "x"})) is None
    created = dispatcher.handle(PatchRequest(id=1, key="k", patch={"label": "x"}))
    assert isinstance(created, EntryResult)
    assert created.key == "k"
    assert decoded(created.entry) == {"label": "x", "sessionId": "uuid-1", "updatedAt": T0}
    stored = stores.by_agent["main"].get("k")
    assert stored is not None
    assert created.revision == stored.revision
    assert on_the_wire(dispatcher.handle(GetRequest(id=2, key="k"))) == on_the_wire(created)
    updated = dispatcher.handle(
        UpdateRequest(id=3, key="k", patch={"model": "m"}, if_revision=created.revision)
    )
    assert decoded(updated.entry)["model"] == "m"
    with pytest.raises(ConflictError):
        dispatcher.handle(DeleteRequest(id=4, key="k", if_revision=created.revision))
    assert dispatcher.handle(DeleteRequest(id=5, key="k", if_revision=updated.revision)) is True
    assert dispatcher.handle(DeleteRequest(id=6, key="k")) is False


def test_replace_and_update_last_route(dispatcher: Dispatcher, clock: Clock) -> None:
    replaced = dispatcher.handle(
        ReplaceRequest(id=1, key="k", entry={"sessionId": "s", "updatedAt": 5})
    )
    assert decoded(replaced.entry) == {"sessionId": "s", "updatedAt": 5}
    clock.now_ms += 1000
    routed = dispatcher.handle(
        UpdateLastRouteRequest(id=2, key="k", provider="telegram", to=" 42 ", account_id="a")
    )
    assert decoded(routed.entry) == {
        "sessionId": "s",
        "updatedAt": 5,
        "lastProvider": "telegram",
        "lastTo": "42",
        "lastAccountId": "a",
    }
    touched = dispatcher.handle(UpdateLastRouteRequest(id=3, key="k", provider="x", touch=True))
    assert decoded(touched.entry)["updatedAt"] == clock.now_ms


def test_replace_without_session_id_is_invalid(dispatcher: Dispatcher) -> None:
    with pytest.raises(InvalidRequestError):
        dispatcher.handle(ReplaceRequest(id=1, key="k", entry={"updatedAt": 1}))


def test_a_wide_integer_read_from_a_file_is_served_as_a_double(
    dispatcher: Dispatcher, stores: Stores
) -> None:
    store = stores.store_for("main", for_write=False)
    store.entries["k"] = encode_entry({"sessionId": "s", "updatedAt": 1, "big": 2**70})
    result = dispatcher.handle(GetRequest(id=1, key="k"))
    big = decoded(result.entry)["big"]
    assert isinstance(big, float) and big == float(2**70)


# --- execute: outcomes and seq --------------------------------------------------------------


def test_execute_gives_the_store_seq_after_a_write(dispatcher: Dispatcher, stores: Stores) -> None:
    first = dispatcher.execute(PatchRequest(id=1, key="k", patch={}))
    assert isinstance(first, Outcome)
    assert isinstance(first.result, EntryResult)
    assert first.seq == 1
    second = dispatcher.execute(PatchRequest(id=2, key="agent:ops:k", patch={}))
    assert second.seq == 1  # each store numbers its own changes
    third = dispatcher.execute(DeleteRequest(id=3, key="k"))
    assert (third.result, third.seq) == (True, 2)
    assert stores.by_agent["main"].seq == 2


def test_execute_gives_no_seq_for_reads_and_writes_that_change_nothing(
    dispatcher: Dispatcher,
) -> None:
    dispatcher.handle(PatchRequest(id=1, key="k", patch={}))
    requests: list[Request] = [
        GetRequest(id=1, key="k"),
        GetManyRequest(id=1, keys=["k"]),
        UpdateRequest(id=1, key="missing", patch={}),
        DeleteRequest(id=1, key="missing"),
        HelloRequest(id=1),
    ]
    for request in requests:
        assert dispatcher.execute(request).seq is None, request


def test_handle_returns_the_result_of_execute(dispatcher: Dispatcher) -> None:
    result = dispatcher.handle(PatchRequest(id=1, key="k", patch={"label": "x"}))
    again = dispatcher.execute(GetRequest(id=2, key="k"))
    assert on_the_wire(again.result) == on_the_wire(result)


# --- get_many -------------------------------------------------------------------------------


def test_get_many_returns_the_existing_keys(dispatcher: Dispatcher) -> None:
    a = dispatcher.handle(PatchRequest(id=1, key="a", patch={}))
    b = dispatcher.handle(PatchRequest(id=1, key="b", patch={}))
    result = dispatcher.handle(GetManyRequest(id=2, keys=["a", "missing", "b"]))
    assert set(result) == {"a", "b"}
    assert all(isinstance(ref, EntryRef) for ref in result.values())
    assert {key: (decoded(ref.entry), ref.revision) for key, ref in result.items()} == {
        "a": (decoded(a.entry), a.revision),
        "b": (decoded(b.entry), b.revision),
    }


def test_get_many_key_count_limit(dispatcher: Dispatcher) -> None:
    assert dispatcher.handle(GetManyRequest(id=1, keys=["a"] * MAX_KEYS)) == {}
    with pytest.raises(InvalidRequestError):
        dispatcher.handle(GetManyRequest(id=1, keys=["a"] * (MAX_KEYS + 1)))


def test_get_many_reads_each_key_from_its_agent(dispatcher: Dispatcher, stores: Stores) -> None:
    dispatcher.handle(PatchRequest(id=1, key="agent:ops:x", patch={"label": "ops"}))
    dispatcher.handle(PatchRequest(id=1, key="plain", patch={"label": "main"}))
    result = dispatcher.handle(GetManyRequest(id=2, keys=["agent:ops:x", "plain"]))
    assert {key: decoded(ref.entry)["label"] for key, ref in result.items()} == {
        "agent:ops:x": "ops",
        "plain": "main",
    }
    assert set(stores.by_agent) == {"ops", "main"}


# --- list -----------------------------------------------------------------------------------


def fill(dispatcher: Dispatcher, clock: Clock, count_: int, **patch: Any) -> list[str]:
    keys = []
    for index in range(count_):
        clock.now_ms = T0 + index * 60_000
        key = f"k{index}"
        label = "even" if index % 2 else ""
        dispatcher.handle(PatchRequest(id=1, key=key, patch={"label": label, **patch}))
        keys.append(key)
    return keys


@pytest.mark.parametrize("limit", [0, -1, MAX_LIST + 1])
def test_list_limit_out_of_bounds(dispatcher: Dispatcher, limit: int) -> None:
    with pytest.raises(InvalidRequestError):
        dispatcher.handle(ListRequest(id=1, limit=limit))


def test_list_without_a_limit_respects_the_configured_maximum(
    dispatcher: Dispatcher, clock: Clock
) -> None:
    # max_list_limit (5) is below the default page size (100): the default is capped.
    fill(dispatcher, clock, MAX_LIST + 2)
    result = dispatcher.handle(ListRequest(id=1))
    assert isinstance(result, ListResult)
    assert len(result.items) == MAX_LIST
    assert result.cursor is not None


def all_list_keys(dispatcher: Dispatcher, **request: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = dispatcher.handle(ListRequest(id=1, cursor=cursor, **request))
        pages.append([item.key for item in page.items])
        cursor = page.cursor
        if cursor is None:
            return pages
        assert len(pages) < 100, "paging does not terminate"


def test_list_pages_newest_first_through_the_cursor(dispatcher: Dispatcher, clock: Clock) -> None:
    keys = fill(dispatcher, clock, 7)
    pages = all_list_keys(dispatcher, limit=2)
    assert [len(page) for page in pages] == [2, 2, 2, 1]
    assert [key for page in pages for key in page] == list(reversed(keys))


def test_list_items_carry_the_entries_and_revisions(dispatcher: Dispatcher, stores: Stores) -> None:
    dispatcher.handle(PatchRequest(id=1, key="k", patch={"label": "x"}))
    (item,) = dispatcher.handle(ListRequest(id=1)).items
    stored = stores.by_agent["main"].get("k")
    assert stored is not None
    assert (item.key, decoded(item.entry), item.revision) == ("k", stored.value(), stored.revision)


def test_list_active_minutes_counts_back_from_now(dispatcher: Dispatcher, clock: Clock) -> None:
    keys = fill(dispatcher, clock, 5)  # k4 at now, k3 a minute ago, ...
    result = dispatcher.handle(ListRequest(id=1, active_minutes=2))
    assert [item.key for item in result.items] == [keys[4], keys[3], keys[2]]
    result = dispatcher.handle(ListRequest(id=1, active_minutes=0.5))
    assert [item.key for item in result.items] == [keys[4]]


def test_list_filters_reach_the_selection(dispatcher: Dispatcher, clock: Clock) -> None:
    fill(dispatcher, clock, 4)
    dispatcher.handle(PatchRequest(id=1, key="child", patch={"spawnedBy": "k1"}))
    assert [i.key for i in dispatcher.handle(ListRequest(id=1, label="even")).items] == [
        "k3",
        "k1",
    ]
    assert [i.key for i in dispatcher.handle(ListRequest(id=1, prefix="ch")).items] == ["child"]
    assert [i.key for i in dispatcher.handle(ListRequest(id=1, spawned_by="k1")).items] == ["child"]


def test_list_with_a_malformed_cursor(dispatcher: Dispatcher) -> None:
    with pytest.raises(InvalidRequestError):
        dispatcher.handle(ListRequest(id=1, cursor="not a cursor"))


def test_list_reads_the_named_agent(dispatcher: Dispatcher, stores: Stores) -> None:
    dispatcher.handle(PatchRequest(id=1, key="agent:ops:x", patch={}))
    assert dispatcher.handle(ListRequest(id=1)).items == []
    assert [i.key for i in dispatcher.handle(ListRequest(id=1, agent="ops")).items] == [
        "agent:ops:x"
    ]
    assert ("main", False) in stores.accesses


def test_list_results_carry_the_store_seq(dispatcher: Dispatcher, clock: Clock) -> None:
    assert dispatcher.handle(ListRequest(id=1)).seq == 0
    fill(dispatcher, clock, 3)
    dispatcher.handle(DeleteRequest(id=1, key="k0"))
    dispatcher.handle(PatchRequest(id=1, key="agent:ops:x", patch={}))  # another store
    page = dispatcher.handle(ListRequest(id=1, limit=1))
    assert page.seq == 4
    assert dispatcher.handle(ListRequest(id=1, agent="ops")).seq == 1
    assert dispatcher.handle(ListRequest(id=1, prefix="nothing")).seq == 4


# --- reply size -----------------------------------------------------------------------------


def reply_bytes(result: Any) -> int:
    """The size of the reply the server would send for ``result`` (without the frame)."""
    return len(msgspec.msgpack.encode(OkReply(1, True, result)))


# The smallest reply limit the configuration accepts for these entry and key limits
# (2 * max_entry_bytes + 3 * max_key_bytes + 1024).
REPLY_ENTRY_BYTES = 600
REPLY_KEY_BYTES = 1024
REPLY_LIMIT = 2 * REPLY_ENTRY_BYTES + 3 * REPLY_KEY_BYTES + 1024
BLOB = "x" * 450


def reply_dispatcher(stores: Stores, clock: Clock) -> Dispatcher:
    return make_dispatcher(
        stores,
        clock,
        max_reply_bytes=REPLY_LIMIT,
        max_entry_bytes=REPLY_ENTRY_BYTES,
        max_key_bytes=REPLY_KEY_BYTES,
        max_list_limit=50,
        max_keys_per_request=50,
    )


def add_entries(dispatcher: Dispatcher, clock: Clock, keys: list[str]) -> None:
    """One ~480-byte entry per key, the first key the oldest."""
    for index, key in enumerate(keys):
        clock.now_ms = T0 + index
        dispatcher.handle(PatchRequest(id=1, key=key, patch={"blob": BLOB}))


def list_every_page(dispatcher: Dispatcher) -> list[ListResult]:
    pages: list[ListResult] = []
    cursor = None
    while True:
        page = dispatcher.handle(ListRequest(id=1, limit=50, cursor=cursor))
        pages.append(page)
        cursor = page.cursor
        if cursor is None:
            return pages
        assert len(pages) < 100, "paging does not terminate"


def test_list_pages_shrink_to_stay_under_max_reply_bytes(stores: Stores, clock: Clock) -> None:
    dispatcher = reply_dispatcher(stores, clock)
    keys = [f"k{index:02d}" for index in range(12)]
    add_entries(dispatcher, clock, keys)
    pages = list_every_page(dispatcher)
    assert len(pages) > 1  # 12 items do not fit one reply, though the limit allows 50
    for page in pages:
        assert page.items
        assert reply_bytes(page) <= REPLY_LIMIT
    seen = [item.key for page in pages for item in page.items]
    assert seen == list(reversed(keys))  # the cursor continues: each item exactly once


def test_a_single_entry_larger_than_the_reply_limit_is_still_listed(
    stores: Stores, clock: Clock
) -> None:
    # An entry from the file may exceed max_entry_bytes; a page is never empty.
    dispatcher = reply_dispatcher(stores, clock)
    store = stores.store_for("main", for_write=False)
    for index, key in enumerate(["a", "b", "c"]):
        store.entries[key] = encode_entry({"updatedAt": index, "blob": "y" * REPLY_LIMIT})
    pages = list_every_page(dispatcher)
    assert [[item.key for item in page.items] for page in pages] == [["c"], ["b"], ["a"]]


def test_list_pages_with_long_keys_stay_under_max_reply_bytes(stores: Stores, clock: Clock) -> None:
    # The reply holds the cursor too, and it spells out the last key.
    dispatcher = reply_dispatcher(stores, clock)
    add_entries(dispatcher, clock, [f"{index}" + "k" * 1000 for index in range(6)])
    for number, page in enumerate(list_every_page(dispatcher)):
        assert reply_bytes(page) <= REPLY_LIMIT, f"page {number} of {len(page.items)} items"


def test_list_pages_with_non_ascii_keys_stay_under_max_reply_bytes(
    stores: Stores, clock: Clock
) -> None:
    # Keys are limited in UTF-8 bytes; a page must be measured in bytes too.
    dispatcher = reply_dispatcher(stores, clock)
    add_entries(dispatcher, clock, [f"{index}" + "é" * 500 for index in range(12)])
    for number, page in enumerate(list_every_page(dispatcher)):
        assert reply_bytes(page) <= REPLY_LIMIT, f"page {number} of {len(page.items)} items"


def test_get_many_over_max_reply_bytes_is_an_invalid_request(stores: Stores, clock: Clock) -> None:
    dispatcher = reply_dispatcher(stores, clock)
    keys = [f"k{index:02d}" for index in range(12)]
    add_entries(dispatcher, clock, keys)
    with pytest.raises(InvalidRequestError) as raised:
        dispatcher.handle(GetManyRequest(id=1, keys=keys))
    assert "max_reply_bytes" in str(raised.value)
    fitting = dispatcher.handle(GetManyRequest(id=1, keys=keys[:2]))
    assert set(fitting) == set(keys[:2])
    assert reply_bytes(fitting) <= REPLY_LIMIT


def test_get_many_with_non_ascii_keys_stays_under_max_reply_bytes(
    stores: Stores, clock: Clock
) -> None:
    dispatcher = reply_dispatcher(stores, clock)
    keys = [f"{index}" + "é" * 500 for index in range(12)]
    add_entries(dispatcher, clock, keys)
    for size in range(1, len(keys) + 1):
        try:
            result = dispatcher.handle(GetManyRequest(id=1, keys=keys[:size]))
        except InvalidRequestError:
            break  # refused: fine, as long as every answered reply fits
        assert reply_bytes(result) <= REPLY_LIMIT, f"{size} keys"


# --- fields projection ----------------------------------------------------------------------

FULL = {"label": "l", "model": "m", "nested": {"a": 1}, "systemSent": True}


def test_get_with_fields_returns_only_those_and_the_identity_fields(
    dispatcher: Dispatcher, stores: Stores
) -> None:
    dispatcher.handle(PatchRequest(id=1, key="k", patch=FULL))
    stored = stores.by_agent["main"].get("k")
    assert stored is not None
    result = dispatcher.handle(GetRequest(id=2, key="k", fields=["label", "nested", "absent"]))
    assert decoded(result.entry) == {
        "label": "l",
        "nested": {"a": 1},
        "sessionId": "uuid-1",
        "updatedAt": T0,
    }
    assert result.revision == stored.revision  # the revision of the whole entry
    # The projection is of the reply only: the entry is unchanged.
    full = dispatcher.handle(GetRequest(id=3, key="k"))
    assert decoded(full.entry) == stored.value()
    assert decoded(full.entry)["model"] == "m"


def test_an_empty_fields_list_gives_the_identity_fields(dispatcher: Dispatcher) -> None:
    dispatcher.handle(PatchRequest(id=1, key="k", patch=FULL))
    result = dispatcher.handle(GetRequest(id=2, key="k", fields=[]))
    assert decoded(result.entry) == {"sessionId": "uuid-1", "updatedAt": T0}


def test_get_many_and_list_project_fields(dispatcher: Dispatcher, stores: Stores) -> None:
    dispatcher.handle(PatchRequest(id=1, key="a", patch=FULL))
    dispatcher.handle(PatchRequest(id=1, key="b", patch={"model": "only"}))
    many = dispatcher.handle(GetManyRequest(id=2, keys=["a", "b"], fields=["model"]))
    listed = dispatcher.handle(ListRequest(id=3, fields=["model"]))
    for key, ref_entry, revision in [
        *((key, ref.entry, ref.revision) for key, ref in many.items()),
        *((item.key, item.entry, item.revision) for item in listed.items),
    ]:
        stored = stores.by_agent["main"].get(key)
        assert stored is not None
        assert decoded(ref_entry) == {
            name: stored.value()[name] for name in ("model", "sessionId", "updatedAt")
        }
        assert revision == stored.revision
    assert {item.key for item in listed.items} == {"a", "b"}


def test_a_non_object_entry_is_returned_whole_by_a_projection(
    dispatcher: Dispatcher, stores: Stores
) -> None:
    stores.store_for("main", for_write=False).entries["k"] = encode_entry(["a", "list"])
    result = dispatcher.handle(GetRequest(id=1, key="k", fields=["label"]))
    assert decoded(result.entry) == ["a", "list"]


@pytest.mark.parametrize("fields", [[""], ["x" * 257], ["f"] * (MAX_FIELDS + 1)])
def test_bad_projections_are_invalid_requests(dispatcher: Dispatcher, fields: list[str]) -> None:
    dispatcher.handle(PatchRequest(id=1, key="k", patch={}))
    requests: list[Request] = [
        GetRequest(id=1, key="k", fields=fields),
        GetManyRequest(id=1, keys=["k"], fields=fields),
        ListRequest(id=1, fields=fields),
    ]
    for request in requests:
        with pytest.raises(InvalidRequestError):
            dispatcher.handle(request)


# --- agent selection ------------------------------------------------------------------------


def test_agent_comes_from_the_key(dispatcher: Dispatcher, stores: Stores) -> None:
    dispatcher.handle(PatchRequest(id=1, key="agent:ops:dm:42", patch={}))
    assert value(stores, "ops", "agent:ops:dm:42") is not None
    assert "main" not in stores.by_agent


def test_explicit_agent_wins_over_the_key(dispatcher: Dispatcher, stores: Stores) -> None:
    dispatcher.handle(PatchRequest(id=1, key="agent:ops:x", patch={}, agent="research"))
    assert value(stores, "research", "agent:ops:x") is not None
    assert "ops" not in stores.by_agent


def test_keys_without_an_agent_use_main(dispatcher: Dispatcher, stores: Stores) -> None:
    dispatcher.handle(PatchRequest(id=1, key="telegram:dm:42", patch={}))
    dispatcher.handle(PatchRequest(id=1, key="agent:broken", patch={}))  # too few parts
    assert set(stores.by_agent) == {"main"}


def test_reads_and_writes_ask_for_the_right_access(dispatcher: Dispatcher, stores: Stores) -> None:
    dispatcher.handle(GetRequest(id=1, key="agent:a:x"))
    dispatcher.handle(PatchRequest(id=1, key="agent:b:x", patch={}))
    dispatcher.handle(DeleteRequest(id=1, key="agent:c:x"))
    assert list(dict.fromkeys(stores.accesses)) == [("a", False), ("b", True), ("c", True)]


@pytest.mark.parametrize(
    ("request_", "agents"),
    [
        (GetRequest(id=1, key="agent:ops:x"), ("ops",)),
        (GetRequest(id=1, key="x", agent="Ops"), ("Ops",)),
        (GetRequest(id=1, key="x"), ("main",)),
        (
            GetManyRequest(id=1, keys=["agent:a:x", "y", "agent:a:z", "agent:b:q"]),
            ("a", "main", "b"),
        ),
        (GetManyRequest(id=1, keys=["agent:a:x"], agent="c"), ("c",)),
        (ListRequest(id=1), ("main",)),
        (ListRequest(id=1, agent="ops"), ("ops",)),
        (HelloRequest(id=1), ()),
        (StatsRequest(id=1), ()),
        (StatsRequest(id=1, agent="ops"), ()),
        (FlushRequest(id=1), ()),
        (FlushRequest(id=1, agent="ops"), ()),  # flush sees only what is loaded
        (ResolveRequest(id=1, ctx={"SessionKey": "agent:ops:main"}), ("ops",)),
        (ResolveRequest(id=1, ctx={"SessionKey": 5}), ("main",)),
        (ResolveRequest(id=1, ctx={}), ("main",)),
        (ResolveRequest(id=1, ctx={}, agent="bots"), ("bots",)),
        # The agent field decides; a key naming another agent is refused when executed.
        (ResolveRequest(id=1, ctx={"SessionKey": "agent:ops:x"}, agent="bots"), ("bots",)),
    ],
)
def test_agents_of(request_: Request, agents: tuple[str, ...]) -> None:
    assert agents_of(request_) == agents


NOT_NORMAL_AGENTS = [("../x", "x"), ("..", "main"), ("é", "main"), ("", "main"), (" main", "main")]


@pytest.mark.parametrize(("agent", "normal"), NOT_NORMAL_AGENTS)
def test_an_agent_not_in_normal_form_is_refused_naming_the_normal_form(
    dispatcher: Dispatcher, stores: Stores, agent: str, normal: str
) -> None:
    requests: list[Request] = [
        GetRequest(id=1, key="k", agent=agent),
        GetManyRequest(id=1, keys=["k"], agent=agent),
        ListRequest(id=1, agent=agent),
        PatchRequest(id=1, key="k", patch={}, agent=agent),
        DeleteRequest(id=1, key="k", agent=agent),
        ResolveRequest(id=1, ctx={"From": "+1"}, agent=agent),
        StatsRequest(id=1, agent=agent),
    ]
    for request in requests:
        with pytest.raises(InvalidRequestError) as raised:
            dispatcher.handle(request)
        assert repr(normal) in str(raised.value), request
        if not isinstance(request, StatsRequest):
            with pytest.raises(InvalidRequestError):
                agents_of(request)
    assert stores.by_agent == {}
    assert stores.changes == []


def test_an_agent_in_normal_form_is_accepted(dispatcher: Dispatcher, stores: Stores) -> None:
    for agent in ["main", "ops", "Team_2", "a" * 64, "0-x"]:
        dispatcher.handle(PatchRequest(id=1, key="k", patch={}, agent=agent))
    assert set(stores.by_agent) == {"main", "ops", "Team_2", "a" * 64, "0-x"}


# --- resolve --------------------------------------------------------------------------------

DIRECT = {"From": "+15551234567", "Provider": "whatsapp"}


def test_resolve_for_the_default_agent_keeps_the_gateway_keys(
    dispatcher: Dispatcher, stores: Stores
) -> None:
    result = dispatcher.handle(ResolveRequest(id=1, ctx=DIRECT))
    assert isinstance(result, ResolveResult)
    assert result.session_key == "agent:main:main"
    assert decoded(result.entry)["sessionId"] == result.session_id
    assert dispatcher.handle(ResolveRequest(id=2, ctx=DIRECT, scope="global")).session_key == (
        "global"
    )
    assert set(stores.by_agent) == {"main"}


def test_resolve_for_another_agent_spells_its_keys_with_the_agent(
    dispatcher: Dispatcher, stores: Stores
) -> None:
    result = dispatcher.handle(ResolveRequest(id=1, ctx=DIRECT, agent="ops"))
    assert result.session_key == "agent:ops:main"
    glob = dispatcher.handle(ResolveRequest(id=2, ctx=DIRECT, agent="ops", scope="global"))
    assert glob.session_key == "agent:ops:global"
    assert set(stores.by_agent) == {"ops"}
    assert value(stores, "ops", "agent:ops:main")["sessionId"] == result.session_id
    # A key alone names its store again: a get without agent finds the session.
    got = dispatcher.handle(GetRequest(id=3, key="agent:ops:global"))
    assert got is not None and got.revision == glob.revision
    assert decoded(result.entry)["sessionFile"].startswith("/state/agents/ops/sessions/")


def test_resolve_uses_the_agent_of_an_explicit_session_key(
    dispatcher: Dispatcher, stores: Stores
) -> None:
    result = dispatcher.handle(ResolveRequest(id=1, ctx={**DIRECT, "SessionKey": "agent:ops:x"}))
    assert result.session_key == "agent:ops:x"
    assert set(stores.by_agent) == {"ops"}


@pytest.mark.parametrize(
    ("agent", "session_key"), [("bots", "agent:ops:x"), ("ops", "global"), ("main", "agent:ops:x")]
)
def test_resolve_refuses_an_explicit_session_key_of_another_agent(
    dispatcher: Dispatcher, stores: Stores, agent: str, session_key: str
) -> None:
    request = ResolveRequest(id=1, ctx={**DIRECT, "SessionKey": session_key}, agent=agent)
    with pytest.raises(InvalidRequestError):
        dispatcher.handle(request)
    assert stores.changes == []
    assert all(len(store) == 0 for store in stores.by_agent.values())


def test_resolve_replies_from_its_request_token(dispatcher: Dispatcher, stores: Stores) -> None:
    first = dispatcher.execute(ResolveRequest(id=1, ctx=DIRECT, request_token="t"))
    dispatcher.handle(PatchRequest(id=2, key="other", patch={}))
    again = dispatcher.execute(ResolveRequest(id=3, ctx=DIRECT, request_token="t"))
    assert on_the_wire(again.result) == on_the_wire(first.result)
    assert again.seq == first.seq == 1
    assert stores.changes == [("main", "agent:main:main"), ("main", "other")]


# --- compare-and-set on every write ---------------------------------------------------------


def write_at(op: str, revision: str | None) -> Request:
    """A write of ``op`` to ``agent:main:main`` (the key resolve derives from DIRECT)."""
    key = "agent:main:main"
    writes: dict[str, Request] = {
        "patch": PatchRequest(id=1, key=key, patch={"label": "y"}, if_revision=revision),
        "update": UpdateRequest(id=1, key=key, patch={"label": "y"}, if_revision=revision),
        "replace": ReplaceRequest(id=1, key=key, entry={"sessionId": "z"}, if_revision=revision),
        "update_last_route": UpdateLastRouteRequest(
            id=1, key=key, provider="p", to="t", if_revision=revision
        ),
        "delete": DeleteRequest(id=1, key=key, if_revision=revision),
        "resolve": ResolveRequest(id=1, ctx=DIRECT, if_revision=revision),
    }
    return writes[op]


WRITE_OPS = ["delete", "patch", "replace", "resolve", "update", "update_last_route"]


@pytest.mark.parametrize("op", WRITE_OPS)
def test_every_write_applies_at_the_current_revision(
    op: str, dispatcher: Dispatcher, stores: Stores
) -> None:
    current = dispatcher.handle(PatchRequest(id=1, key="agent:main:main", patch={"label": "x"}))
    outcome = dispatcher.execute(write_at(op, current.revision))
    assert outcome.seq == 2
    assert len(stores.changes) == 2


@pytest.mark.parametrize("op", WRITE_OPS)
def test_every_write_at_a_stale_revision_conflicts_and_changes_nothing(
    op: str, dispatcher: Dispatcher, stores: Stores
) -> None:
    old = dispatcher.handle(PatchRequest(id=1, key="agent:main:main", patch={"label": "x"}))
    dispatcher.handle(PatchRequest(id=2, key="agent:main:main", patch={"label": "moved"}))
    store = stores.by_agent["main"]
    before, seq = store.get("agent:main:main"), store.seq
    with pytest.raises(ConflictError):
        dispatcher.handle(write_at(op, old.revision))
    assert store.get("agent:main:main") is before
    assert store.seq == seq


@pytest.mark.parametrize("op", WRITE_OPS)
def test_every_write_with_a_revision_of_a_missing_entry_conflicts(
    op: str, dispatcher: Dispatcher, stores: Stores
) -> None:
    with pytest.raises(ConflictError):
        dispatcher.handle(write_at(op, "0123456789abcdef"))
    assert stores.changes == []


@pytest.mark.parametrize("op", ["patch", "replace"])
def test_if_absent_creates_only_a_missing_entry(
    op: str, dispatcher: Dispatcher, stores: Stores
) -> None:
    def request() -> Request:
        if op == "patch":
            return PatchRequest(id=1, key="k", patch={"label": "first"}, if_absent=True)
        return ReplaceRequest(id=1, key="k", entry={"sessionId": "s"}, if_absent=True)

    created = dispatcher.handle(request())
    assert isinstance(created, EntryResult)
    stored = stores.by_agent["main"].get("k")
    assert stored is not None and stored.revision == created.revision
    with pytest.raises(ConflictError):
        dispatcher.handle(request())
    assert stores.by_agent["main"].get("k") is stored
    assert stores.changes == [("main", "k")]


# --- hello and stats ------------------------------------------------------------------------


def test_hello_reports_every_limit(dispatcher: Dispatcher) -> None:
    result = dispatcher.handle(HelloRequest(id=1, client="bot"))
    limits = dispatcher.limits
    assert result == HelloResult(
        protocol=PROTOCOL_VERSION,
        server="sessiond",
        version=sessiond.__version__,
        max_frame_bytes=limits.max_frame_bytes,
        max_reply_bytes=limits.max_reply_bytes,
        max_key_bytes=limits.max_key_bytes,
        max_entry_bytes=limits.max_entry_bytes,
        max_keys_per_request=limits.max_keys_per_request,
        max_list_limit=limits.max_list_limit,
        max_depth=limits.max_depth,
        max_fields=limits.max_fields,
        max_inflight_per_connection=limits.max_inflight_per_connection,
        protocols=[PROTOCOL_VERSION],
    )
    # The test limits differ from the defaults, so each one really comes from the config.
    assert (result.max_key_bytes, result.max_keys_per_request, result.max_list_limit) == (
        MAX_KEY_BYTES,
        MAX_KEYS,
        MAX_LIST,
    )
    assert (result.max_depth, result.max_fields) == (MAX_DEPTH, MAX_FIELDS)


@pytest.mark.parametrize("protocol", [0, -1, PROTOCOL_VERSION + 1, 99])
def test_hello_with_another_protocol_is_refused_naming_ours(
    dispatcher: Dispatcher, protocol: int
) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        dispatcher.handle(HelloRequest(id=1, protocol=protocol))
    assert f"protocol {PROTOCOL_VERSION}" in str(raised.value)


def test_stats_come_from_the_injected_source(dispatcher: Dispatcher, stats: Stats) -> None:
    assert dispatcher.handle(StatsRequest(id=1)) == {"agent": None, "ops": {"get": 1}}
    assert dispatcher.handle(StatsRequest(id=2, agent="ops")) == {
        "agent": "ops",
        "ops": {"get": 1},
    }
    assert stats.asked == [None, "ops"]


# --- request tokens -------------------------------------------------------------------------


def test_a_repeated_write_token_is_answered_without_applying_again(
    dispatcher: Dispatcher, stores: Stores, clock: Clock
) -> None:
    first = dispatcher.handle(PatchRequest(id=1, key="k", patch={"n": 1}, request_token="t"))
    clock.now_ms += 1000
    again = dispatcher.handle(PatchRequest(id=2, key="k", patch={"n": 1}, request_token="t"))
    assert on_the_wire(again) == on_the_wire(first)
    assert stores.changes == [("main", "k")]
    assert dispatcher.replayed_writes == 1
    other = dispatcher.handle(PatchRequest(id=3, key="k", patch={"n": 2}, request_token="u"))
    assert decoded(other.entry)["n"] == 2
    assert len(stores.changes) == 2


def test_a_replayed_write_gives_its_original_seq(dispatcher: Dispatcher) -> None:
    dispatcher.handle(PatchRequest(id=1, key="a", patch={}))
    first = dispatcher.execute(PatchRequest(id=2, key="k", patch={}, request_token="t"))
    dispatcher.handle(PatchRequest(id=3, key="b", patch={}))
    again = dispatcher.execute(PatchRequest(id=4, key="k", patch={}, request_token="t"))
    assert first.seq == again.seq == 2
    deleted = dispatcher.execute(DeleteRequest(id=5, key="a", request_token="d"))
    replayed = dispatcher.execute(DeleteRequest(id=6, key="a", request_token="d"))
    assert (replayed.result, replayed.seq) == (True, deleted.seq)


def test_a_failed_write_is_not_remembered(dispatcher: Dispatcher, stores: Stores) -> None:
    with pytest.raises(ConflictError):
        dispatcher.handle(PatchRequest(id=1, key="k", patch={}, if_revision="x", request_token="t"))
    assert dispatcher.handle(PatchRequest(id=2, key="k", patch={}, request_token="t"))
    assert stores.changes == [("main", "k")]


@pytest.mark.parametrize(
    "reuse",
    [
        DeleteRequest(id=2, key="k", request_token="t"),  # another op
        UpdateRequest(id=2, key="k", patch={}, request_token="t"),  # another op
        PatchRequest(id=2, key="other", patch={}, request_token="t"),  # another key
        ResolveRequest(id=2, ctx=DIRECT, request_token="t"),  # another op and key
    ],
)
def test_a_token_reused_for_another_op_or_key_is_refused(
    dispatcher: Dispatcher, stores: Stores, reuse: Request
) -> None:
    dispatcher.handle(PatchRequest(id=1, key="k", patch={}, request_token="t"))
    before = stores.by_agent["main"].get("k")
    with pytest.raises(InvalidRequestError) as raised:
        dispatcher.handle(reuse)
    assert "request_token" in str(raised.value)
    assert stores.changes == [("main", "k")]
    assert stores.by_agent["main"].get("k") is before


@pytest.mark.parametrize("token", ["", "t" * 129])
def test_request_token_length_is_bounded(dispatcher: Dispatcher, token: str) -> None:
    with pytest.raises(InvalidRequestError):
        dispatcher.handle(PatchRequest(id=1, key="k", patch={}, request_token=token))
