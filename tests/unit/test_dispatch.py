"""Unit tests for sessiond.dispatch: validation, store selection and result shapes.

Pure: real :class:`SessionStore` objects behind a tiny in-test :class:`StoreAccess`, an
injected clock and deterministic session ids. No server, no event loop.
"""

from __future__ import annotations

from itertools import count
from typing import Any

import msgspec
import pytest

import sessiond
from sessiond.config import Config, Limits
from sessiond.dedup import RequestMemory
from sessiond.dispatch import Dispatcher, agents_of
from sessiond.store import SessionStore
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
    PatchRequest,
    ReplaceRequest,
    Request,
    ResolveRequest,
    StatsRequest,
    UpdateLastRouteRequest,
    UpdateRequest,
)

T0 = 1_700_000_000_000
MAX_KEY_BYTES = 16
MAX_KEYS = 3
MAX_LIST = 5


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
                on_change=self.record,
                requests=RequestMemory(max_entries=100, ttl_s=60.0, clock_s=lambda: 0.0),
            )
        return self.by_agent[agent_id]

    def transcripts_dir_for(self, agent_id: str) -> str:
        return f"/state/agents/{agent_id}/sessions"

    def record(self, agent_id: str, key: str, entry: object, token: str | None) -> None:
        self.changes.append((agent_id, key))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stores(clock: Clock) -> Stores:
    return Stores(clock)


@pytest.fixture
def dispatcher(stores: Stores, clock: Clock) -> Dispatcher:
    limits = Limits(
        max_key_bytes=MAX_KEY_BYTES, max_keys_per_request=MAX_KEYS, max_list_limit=MAX_LIST
    )
    config = msgspec.structs.replace(Config(), limits=limits)
    return Dispatcher(config, stores, stats=lambda: {"ops": {"get": 1}}, clock_ms=clock)


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
    assert "label" not in result.entry
    assert result.entry["future"] == {"a": [1]}
    assert result.entry["x" * 256] == 1


# --- results --------------------------------------------------------------------------------


def on_the_wire(result: object) -> object:
    """A result as a client receives it (reads may carry pre-encoded msgpack entries)."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(result))


def test_patch_get_update_delete_round(dispatcher: Dispatcher, stores: Stores) -> None:
    assert dispatcher.handle(GetRequest(id=1, key="k")) is None
    assert dispatcher.handle(UpdateRequest(id=1, key="k", patch={"label": "x"})) is None
    created = dispatcher.handle(PatchRequest(id=1, key="k", patch={"label": "x"}))
    assert created == EntryResult(
        "k", {"label": "x", "sessionId": "uuid-1", "updatedAt": T0}, created.revision
    )
    stored = stores.by_agent["main"].get("k")
    assert stored is not None
    assert created.revision == stored.revision
    assert on_the_wire(dispatcher.handle(GetRequest(id=2, key="k"))) == on_the_wire(created)
    updated = dispatcher.handle(
        UpdateRequest(id=3, key="k", patch={"model": "m"}, if_revision=created.revision)
    )
    assert updated.entry["model"] == "m"
    with pytest.raises(ConflictError):
        dispatcher.handle(DeleteRequest(id=4, key="k", if_revision=created.revision))
    assert dispatcher.handle(DeleteRequest(id=5, key="k", if_revision=updated.revision)) is True
    assert dispatcher.handle(DeleteRequest(id=6, key="k")) is False


def test_replace_and_update_last_route(dispatcher: Dispatcher, clock: Clock) -> None:
    replaced = dispatcher.handle(
        ReplaceRequest(id=1, key="k", entry={"sessionId": "s", "updatedAt": 5})
    )
    assert replaced.entry == {"sessionId": "s", "updatedAt": 5}
    clock.now_ms += 1000
    routed = dispatcher.handle(
        UpdateLastRouteRequest(id=2, key="k", provider="telegram", to=" 42 ", account_id="a")
    )
    assert routed.entry == {
        "sessionId": "s",
        "updatedAt": 5,
        "lastProvider": "telegram",
        "lastTo": "42",
        "lastAccountId": "a",
    }
    touched = dispatcher.handle(UpdateLastRouteRequest(id=3, key="k", provider="x", touch=True))
    assert touched.entry["updatedAt"] == clock.now_ms


def test_replace_without_session_id_is_invalid(dispatcher: Dispatcher) -> None:
    with pytest.raises(InvalidRequestError):
        dispatcher.handle(ReplaceRequest(id=1, key="k", entry={"updatedAt": 1}))


# --- get_many -------------------------------------------------------------------------------


def test_get_many_returns_the_existing_keys(dispatcher: Dispatcher) -> None:
    a = dispatcher.handle(PatchRequest(id=1, key="a", patch={}))
    b = dispatcher.handle(PatchRequest(id=1, key="b", patch={}))
    result = dispatcher.handle(GetManyRequest(id=2, keys=["a", "missing", "b"]))
    assert result == {"a": EntryRef(a.entry, a.revision), "b": EntryRef(b.entry, b.revision)}


def test_get_many_key_count_limit(dispatcher: Dispatcher) -> None:
    assert dispatcher.handle(GetManyRequest(id=1, keys=["a"] * MAX_KEYS)) == {}
    with pytest.raises(InvalidRequestError):
        dispatcher.handle(GetManyRequest(id=1, keys=["a"] * (MAX_KEYS + 1)))


def test_get_many_reads_each_key_from_its_agent(dispatcher: Dispatcher, stores: Stores) -> None:
    dispatcher.handle(PatchRequest(id=1, key="agent:ops:x", patch={"label": "ops"}))
    dispatcher.handle(PatchRequest(id=1, key="plain", patch={"label": "main"}))
    result = dispatcher.handle(GetManyRequest(id=2, keys=["agent:ops:x", "plain"]))
    assert {key: ref.entry["label"] for key, ref in result.items()} == {
        "agent:ops:x": "ops",
        "plain": "main",
    }
    assert set(stores.by_agent) == {"ops", "main"}


# --- list -----------------------------------------------------------------------------------


def fill(dispatcher: Dispatcher, clock: Clock, count_: int) -> list[str]:
    keys = []
    for index in range(count_):
        clock.now_ms = T0 + index * 60_000
        key = f"k{index}"
        dispatcher.handle(PatchRequest(id=1, key=key, patch={"label": "even" if index % 2 else ""}))
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


def test_list_pages_newest_first_through_the_cursor(dispatcher: Dispatcher, clock: Clock) -> None:
    keys = fill(dispatcher, clock, 7)
    seen: list[str] = []
    cursor = None
    while True:
        page = dispatcher.handle(ListRequest(id=1, limit=2, cursor=cursor))
        seen.extend(item.key for item in page.items)
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == list(reversed(keys))


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
    assert stores.accesses == [("a", False), ("b", True), ("c", True)]


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
        (FlushRequest(id=1), ()),
        (FlushRequest(id=1, agent="ops"), ("ops",)),
        (ResolveRequest(id=1, ctx={"SessionKey": "agent:ops:main"}), ("ops",)),
        (ResolveRequest(id=1, ctx={"SessionKey": 5}), ("main",)),
        (ResolveRequest(id=1, ctx={}, agent="bots"), ("bots",)),
    ],
)
def test_agents_of(request_: Request, agents: tuple[str, ...]) -> None:
    assert agents_of(request_) == agents


# --- hello and stats ------------------------------------------------------------------------


def test_hello(dispatcher: Dispatcher) -> None:
    result = dispatcher.handle(HelloRequest(id=1, client="bot"))
    assert result == HelloResult(
        PROTOCOL_VERSION, "sessiond", sessiond.__version__, dispatcher.limits.max_frame_bytes
    )


def test_hello_from_a_newer_client_is_answered_with_our_version(dispatcher: Dispatcher) -> None:
    assert dispatcher.handle(HelloRequest(id=1, protocol=PROTOCOL_VERSION + 1)).protocol == (
        PROTOCOL_VERSION
    )


def test_hello_with_an_impossible_protocol_is_invalid(dispatcher: Dispatcher) -> None:
    with pytest.raises(InvalidRequestError):
        dispatcher.handle(HelloRequest(id=1, protocol=0))


def test_stats_come_from_the_injected_source(dispatcher: Dispatcher) -> None:
    assert dispatcher.handle(StatsRequest(id=1)) == {"ops": {"get": 1}}


# --- request tokens -------------------------------------------------------------------------


def test_a_repeated_write_token_is_answered_without_applying_again(
    dispatcher: Dispatcher, stores: Stores, clock: Clock
) -> None:
    first = dispatcher.handle(PatchRequest(id=1, key="k", patch={"n": 1}, request_token="t"))
    clock.now_ms += 1000
    again = dispatcher.handle(PatchRequest(id=2, key="k", patch={"n": 1}, request_token="t"))
    assert again == first
    assert stores.changes == [("main", "k")]
    other = dispatcher.handle(PatchRequest(id=3, key="k", patch={"n": 2}, request_token="u"))
    assert other.entry["n"] == 2
    assert len(stores.changes) == 2


def test_a_failed_write_is_not_remembered(dispatcher: Dispatcher, stores: Stores) -> None:
    with pytest.raises(ConflictError):
        dispatcher.handle(PatchRequest(id=1, key="k", patch={}, if_revision="x", request_token="t"))
    assert dispatcher.handle(PatchRequest(id=2, key="k", patch={}, request_token="t"))
    assert stores.changes == [("main", "k")]


@pytest.mark.parametrize("token", ["", "t" * 129])
def test_request_token_length_is_bounded(dispatcher: Dispatcher, token: str) -> None:
    with pytest.raises(InvalidRequestError):
        dispatcher.handle(PatchRequest(id=1, key="k", patch={}, request_token=token))
