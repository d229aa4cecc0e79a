"""Every operation through both clients, against every backend: the same calls must give
the same results, types and errors on the daemon, on Redis and on Valkey.

Each test runs six times: {daemon, redis, valkey} x {blocking ``Client`` (in a worker
thread), ``AsyncClient``}.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sessiond_client import (
    ConflictError,
    InvalidRequestError,
    Resolution,
    Session,
    SessionPage,
)
from tests.backends.conftest import Backend

Api = Callable[..., Awaitable[Any]]


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, backend: Backend) -> AsyncIterator[Api]:
    if request.param == "sync":
        sync_client = backend.client()

        async def call_sync(op: str, *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(getattr(sync_client, op), *args, **kwargs)

        yield call_sync
        sync_client.close()
    else:
        async_client = backend.async_client()

        async def call_async(op: str, *args: Any, **kwargs: Any) -> Any:
            return await getattr(async_client, op)(*args, **kwargs)

        yield call_async
        await async_client.aclose()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_hello_reports_protocol_and_the_limits(api: Api, backend: Backend) -> None:
    info = await api("hello")
    assert info.protocol == 1
    assert info.server == ("sessiond" if backend.kind == "daemon" else backend.kind)
    assert info.max_key_bytes == 1024
    assert info.max_entry_bytes == 1024 * 1024
    assert info.max_list_limit == 1000


async def test_patch_creates_an_entry_with_a_minted_session_id(api: Api) -> None:
    before = now_ms()
    session = await api("patch", "agent:main:main", {"label": "ops", "inputTokens": 5})
    assert isinstance(session, Session)
    assert str(uuid.UUID(session.data["sessionId"])) == session.data["sessionId"]
    assert before <= session.data["updatedAt"] <= now_ms()
    assert session.entry.label == "ops"
    assert session.seq == 1
    assert await api("get", "agent:main:main") == session


async def test_patch_merges_deletes_nulls_and_keeps_unknown_fields(api: Api) -> None:
    first = await api("patch", "k", {"label": "a", "futureField": {"x": [1, 2]}, "model": "m"})
    second = await api("patch", "k", {"model": None, "lastTo": "+1555", "ünï": "çødé ✓"})
    assert second.data["sessionId"] == first.data["sessionId"]
    assert second.data["futureField"] == {"x": [1, 2]}
    assert "model" not in second.data
    assert second.data["ünï"] == "çødé ✓"
    assert second.data["updatedAt"] >= first.data["updatedAt"]
    assert second.seq == first.seq + 1


async def test_patch_keeps_a_later_updated_at_and_a_given_session_id(api: Api) -> None:
    future_ms = now_ms() + 3_600_000
    session = await api("patch", "k", {"updatedAt": future_ms, "sessionId": "given"})
    assert (session.data["updatedAt"], session.data["sessionId"]) == (future_ms, "given")
    again = await api("patch", "k", {"label": "x"})
    assert again.data["updatedAt"] == future_ms


async def test_revisions_are_the_same_content_hash_everywhere(api: Api) -> None:
    entry = {"sessionId": "s-1", "updatedAt": 123, "label": "x", "n": 1.5}
    session = await api("replace", "k", entry)
    # blake2b-64 of the compact JSON: the same on every backend, across migrations.
    compact = b'{"sessionId":"s-1","updatedAt":123,"label":"x","n":1.5}'
    assert session.revision == hashlib.blake2b(compact, digest_size=8).hexdigest()


async def test_invalid_values_are_refused_and_nothing_changes(api: Api) -> None:
    await api("patch", "k", {"label": "keep"})
    with pytest.raises(InvalidRequestError, match="updatedAt"):
        await api("patch", "k", {"updatedAt": "x"})
    with pytest.raises(InvalidRequestError, match="chatType"):
        await api("patch", "k", {"chatType": "banana"})
    with pytest.raises(InvalidRequestError):
        await api("patch", "k", {"n": math.nan})
    with pytest.raises(InvalidRequestError):
        await api("patch", "k", {"": 1})
    with pytest.raises(InvalidRequestError):
        await api("patch", "", {"label": "x"})
    with pytest.raises(InvalidRequestError):
        await api("patch", "k" * 1025, {"label": "x"})
    with pytest.raises(InvalidRequestError, match="normal form"):
        await api("patch", "k", {"label": "x"}, agent="../x")
    with pytest.raises(InvalidRequestError):
        await api("patch", "k", {"blob": b"\x00"})
    deep: dict[str, Any] = {}
    for _ in range(40):
        deep = {"d": deep}
    with pytest.raises(InvalidRequestError):
        await api("patch", "k", {"deep": deep})
    with pytest.raises(InvalidRequestError):
        await api("patch", "k", {"big": "x" * (1024 * 1024 + 1)})
    assert (await api("get", "k")).data["label"] == "keep"


async def test_update_only_changes_existing_entries(api: Api) -> None:
    assert await api("update", "missing", {"label": "x"}) is None
    assert await api("get", "missing") is None
    await api("patch", "present", {"label": "a"})
    updated = await api("update", "present", {"label": "b"})
    assert updated.data["label"] == "b"
    with pytest.raises(ConflictError):
        await api("update", "missing", {"label": "x"}, if_revision=updated.revision)


async def test_replace_stores_exactly_the_entry(api: Api) -> None:
    entry = {"sessionId": "s-1", "updatedAt": 123, "label": "x", "extra": [1]}
    session = await api("replace", "k", entry)
    assert session.data == entry
    assert (await api("get", "k")).data == entry
    no_time = await api("replace", "k2", {"sessionId": "s", "gone": None})
    assert set(no_time.data) == {"sessionId", "updatedAt"}
    with pytest.raises(InvalidRequestError, match="sessionId"):
        await api("replace", "k3", {"updatedAt": 1})


async def test_if_revision_and_if_absent_compare_and_set(api: Api) -> None:
    first = await api("patch", "k", {"label": "a"})
    second = await api("patch", "k", {"label": "b"}, if_revision=first.revision)
    assert second.revision != first.revision
    for op, args in (
        ("patch", ("k", {"label": "c"})),
        ("update", ("k", {"label": "c"})),
        ("replace", ("k", {"sessionId": "x", "updatedAt": 1})),
        ("update_last_route", ("k",)),
        ("delete", ("k",)),
    ):
        with pytest.raises(ConflictError):
            await api(op, *args, if_revision=first.revision)
    with pytest.raises(ConflictError):
        await api("patch", "k", {"label": "c"}, if_absent=True)
    with pytest.raises(ConflictError):
        await api("replace", "k", {"sessionId": "x"}, if_absent=True)
    assert (await api("get", "k")).data["label"] == "b"
    with pytest.raises(ConflictError):
        await api("patch", "missing", {"label": "x"}, if_revision=first.revision)
    created = await api("patch", "new", {"label": "n"}, if_absent=True)
    assert created.data["label"] == "n"
    assert await api("delete", "k", if_revision=second.revision) is True


async def test_update_last_route_rules(api: Api) -> None:
    old_ms = now_ms() - 3_600_000
    await api("replace", "k", {"sessionId": "s", "updatedAt": old_ms, "lastAccountId": "acct"})
    routed = await api("update_last_route", "k", provider="telegram", to=" 42 ", account_id=" ")
    assert routed.data["lastProvider"] == "telegram"
    assert routed.data["lastTo"] == "42"
    assert routed.data["lastAccountId"] == "acct"
    assert routed.data["updatedAt"] == old_ms
    cleared = await api("update_last_route", "k", provider="telegram", to="  ")
    assert "lastTo" not in cleared.data
    touched = await api("update_last_route", "k", provider="slack", to="C1", touch=True)
    assert touched.data["updatedAt"] > old_ms
    created = await api("update_last_route", "new", provider="discord", to="chan")
    assert created.data["lastTo"] == "chan"
    assert isinstance(created.data["sessionId"], str)


async def test_delete_reports_whether_it_existed(api: Api) -> None:
    written = await api("patch", "k", {})
    assert await api("delete", "k") is True
    assert await api("delete", "k") is False
    assert await api("get", "k") is None
    again = await api("patch", "k", {})
    assert again.seq == written.seq + 2  # the delete was a change; the second was none


async def test_get_many_and_projections(api: Api) -> None:
    await api("patch", "a", {"label": "A", "model": "m", "displayName": "x"})
    await api("patch", "b", {"label": "B"})
    found = await api("get_many", ["a", "b", "c"])
    assert set(found) == {"a", "b"}
    assert found["a"].data["label"] == "A"
    projected = await api("get", "a", fields=["label"])
    assert set(projected.data) == {"label", "sessionId", "updatedAt"}
    assert projected.revision == found["a"].revision
    many = await api("get_many", ["a"], fields=["model"])
    assert set(many["a"].data) == {"model", "sessionId", "updatedAt"}
    with pytest.raises(InvalidRequestError):
        await api("get_many", [f"k{i}" for i in range(1001)])
    with pytest.raises(TypeError):
        await api("get", "a", fields="label")


async def test_list_orders_filters_and_pages(api: Api) -> None:
    base_ms = now_ms()
    for index in range(7):
        label = "even" if index % 2 == 0 else "odd"
        entry = {"sessionId": f"s{index}", "updatedAt": base_ms - index * 60_000, "label": label}
        await api("replace", f"agent:main:k{index}", entry)
    await api("replace", "agent:main:tie-b", {"sessionId": "t", "updatedAt": base_ms - 30_000})
    await api("replace", "agent:main:tie-a", {"sessionId": "t", "updatedAt": base_ms - 30_000})
    # Only an import stores an entry without a numeric updatedAt (it sorts last).
    await api("import_entries", {"agent:main:none": {"sessionId": "n"}}, commit=True)
    order = [
        "agent:main:k0",
        "agent:main:tie-a",
        "agent:main:tie-b",
        *[f"agent:main:k{index}" for index in range(1, 7)],
        "agent:main:none",
    ]
    page = await api("list", limit=3)
    assert isinstance(page, SessionPage)
    assert [s.key for s in page.items] == order[:3]
    assert page.seq == 10
    keys: list[str] = []
    cursor = None
    while True:
        page = await api("list", limit=2, cursor=cursor)
        keys.extend(session.key for session in page.items)
        cursor = page.cursor
        if cursor is None:
            break
    assert keys == order
    even = await api("list", label="even")
    assert [s.key for s in even.items] == [f"agent:main:k{i}" for i in (0, 2, 4, 6)]
    recent = await api("list", active_minutes=2.5)
    assert [s.key for s in recent.items] == order[:5]
    assert [s.key for s in (await api("list", prefix="agent:main:tie")).items] == order[1:3]
    projected = await api("list", limit=1, fields=["label"])
    assert set(projected.items[0].data) == {"label", "sessionId", "updatedAt"}
    with pytest.raises(InvalidRequestError):
        await api("list", limit=0)
    with pytest.raises(InvalidRequestError):
        await api("list", cursor="not a cursor!")
    with pytest.raises(InvalidRequestError):
        await api("list", active_minutes=-1)


async def test_a_cursor_does_not_repeat_entries_that_moved(api: Api) -> None:
    base_ms = now_ms() - 600_000
    for index in range(4):
        await api("replace", f"k{index}", {"sessionId": "s", "updatedAt": base_ms - index})
    first = await api("list", limit=2)
    await api("patch", "k0", {"label": "moved to the front"})
    rest = await api("list", limit=10, cursor=first.cursor)
    assert [s.key for s in first.items] == ["k0", "k1"]
    assert [s.key for s in rest.items] == ["k2", "k3"]


async def test_agents_are_separate_stores(api: Api) -> None:
    await api("patch", "agent:ops:main", {"label": "ops"})
    await api("patch", "plain-key", {"label": "main"}, agent="ops")
    await api("patch", "agent:main:main", {"label": "main"})
    assert {s.key for s in (await api("list", agent="ops")).items} == {
        "agent:ops:main",
        "plain-key",
    }
    assert [s.key for s in (await api("list")).items] == ["agent:main:main"]
    assert await api("get", "plain-key") is None
    assert (await api("get", "plain-key", agent="ops")).data["label"] == "main"
    stats = await api("stats")
    assert stats["stores"]["ops"]["entries"] == 2
    assert stats["stores"]["main"]["entries"] == 1
    assert (await api("stats", agent="ops"))["stores"]["ops"]["seq"] == 2


async def test_resolve_creates_reuses_and_resets(api: Api) -> None:
    first = await api("resolve", {"From": "+15550001111", "Body": "hi"})
    assert isinstance(first, Resolution)
    assert first.is_new
    assert first.session_key == "agent:main:main"
    assert first.session.data["sessionFile"].endswith(f"/{first.session_id}.jsonl")
    second = await api("resolve", {"From": "+15550001111", "Body": "again"})
    assert (second.is_new, second.session_id) == (False, first.session_id)
    reset = await api("resolve", {"From": "+15550001111", "Body": "/new Hello There"})
    assert reset.is_new and reset.reset_triggered
    assert reset.body_stripped == "hello there"
    assert reset.session_id != first.session_id
    ignored = await api("resolve", {"From": "+1", "Body": "/new"}, authorized=False)
    assert not ignored.reset_triggered


async def test_resolve_groups_legacy_keys_and_idle_expiry(api: Api) -> None:
    ctx = {"From": "discord:channel:C1", "GroupSubject": "#general", "Body": "hi"}
    group = await api("resolve", ctx)
    assert group.session_key == "agent:main:discord:channel:C1"
    assert (group.entry.chat_type, group.entry.display_name) == ("room", "discord:#general")
    old_ms = now_ms() - 2 * 3_600_000
    legacy = {"sessionId": "legacy", "updatedAt": old_ms, "x": 1}
    await api("replace", "group:12036@g.us", legacy)
    ctx = {"From": "12036@g.us", "Provider": "whatsapp", "Body": "hi"}
    moved = await api("resolve", ctx, idle_minutes=600)
    assert moved.session_key == "agent:main:whatsapp:group:12036@g.us"
    assert (moved.session_id, moved.is_new, moved.session.data["x"]) == ("legacy", False, 1)
    assert moved.seq == 5  # moved (put + delete), then resolved
    assert await api("get", "group:12036@g.us") is None
    expired = await api("resolve", {"From": "+1555", "Body": "x"}, agent="ops")
    assert expired.session_key == "agent:ops:main"
    await api("replace", "agent:ops:main", {**expired.session.data, "updatedAt": 1}, agent="ops")
    renewed = await api("resolve", {"From": "+1555", "Body": "x"}, agent="ops")
    assert renewed.is_new and renewed.session_id != expired.session_id
    with pytest.raises(InvalidRequestError):
        await api("resolve", {"From": 5})
    with pytest.raises(InvalidRequestError):
        await api("resolve", {"SessionKey": "agent:other:x"}, agent="ops")
    with pytest.raises(ConflictError):
        await api("resolve", {"From": "+1555", "Body": "x"}, agent="ops", if_revision="0" * 16)


async def test_update_with_applies_the_callback_patch(api: Api) -> None:
    assert await api("update_with", "missing", lambda s: {"x": 1}) is None
    await api("patch", "k", {"inputTokens": 1})
    result = await api("update_with", "k", lambda s: {"inputTokens": s.data["inputTokens"] + 1})
    assert result.data["inputTokens"] == 2
    unchanged = await api("update_with", "k", lambda s: None)
    assert unchanged.data["inputTokens"] == 2


async def test_stats_counts_operations_and_stores(api: Api) -> None:
    await api("patch", "k", {})
    await api("get", "k")
    stats = await api("stats")
    assert stats["ops"]["patch"] >= 1
    assert stats["ops"]["get"] >= 1
    assert stats["stores"]["main"]["entries"] == 1
    assert stats["stores"]["main"]["seq"] == 1
    assert stats["uptime_s"] >= 0


async def test_durable_writes_and_flush_succeed_where_the_server_can_promise_them(
    api: Api,
) -> None:
    session = await api("patch", "k", {"label": "durable"}, durable=True)
    assert session.data["label"] == "durable"
    assert await api("flush") is True
