"""Every operation through both clients against a real daemon over its Unix socket.

Each scenario runs twice: once through the blocking ``Client`` (in a worker thread) and
once through ``AsyncClient``; both must behave identically.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sessiond_client import (
    AsyncClient,
    ConflictError,
    InvalidRequestError,
    Resolution,
    Session,
    SessionPage,
)
from tests.support.daemon import DaemonProcess

Api = Callable[..., Awaitable[Any]]


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, daemon: DaemonProcess) -> AsyncIterator[Api]:
    if request.param == "sync":
        sync_client = daemon.client()

        async def call_sync(op: str, *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(getattr(sync_client, op), *args, **kwargs)

        yield call_sync
        sync_client.close()
    else:
        async_client = AsyncClient(daemon.socket_path)

        async def call_async(op: str, *args: Any, **kwargs: Any) -> Any:
            return await getattr(async_client, op)(*args, **kwargs)

        yield call_async
        await async_client.aclose()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_hello_reports_protocol_and_limits(api: Api) -> None:
    info = await api("hello")
    assert info.protocol == 1
    assert info.server == "sessiond"
    assert info.max_frame_bytes == 16 * 1024 * 1024


async def test_patch_creates_entry_with_minted_session_id(api: Api) -> None:
    before = now_ms()
    session = await api("patch", "agent:main:main", {"label": "ops", "inputTokens": 5})
    assert isinstance(session, Session)
    assert str(uuid.UUID(session.data["sessionId"])) == session.data["sessionId"]
    assert before <= session.data["updatedAt"] <= now_ms()
    assert session.entry.label == "ops"
    assert session.entry.input_tokens == 5
    fetched = await api("get", "agent:main:main")
    assert fetched == session


async def test_patch_merges_deletes_nulls_and_keeps_unknown_fields(api: Api) -> None:
    first = await api("patch", "k", {"label": "a", "futureField": {"x": [1, 2]}, "model": "m1"})
    second = await api("patch", "k", {"model": None, "lastTo": "+1555"})
    assert second.data["sessionId"] == first.data["sessionId"]
    assert second.data["futureField"] == {"x": [1, 2]}
    assert "model" not in second.data
    assert second.data["lastTo"] == "+1555"
    assert second.data["updatedAt"] >= first.data["updatedAt"]
    assert second.entry.extra == {"futureField": {"x": [1, 2]}}


async def test_patch_keeps_a_later_updated_at_and_a_given_session_id(api: Api) -> None:
    future_ms = now_ms() + 3_600_000
    session = await api("patch", "k", {"updatedAt": future_ms, "sessionId": "given"})
    assert session.data["updatedAt"] == future_ms
    assert session.data["sessionId"] == "given"
    again = await api("patch", "k", {"label": "x"})
    assert again.data["updatedAt"] == future_ms


async def test_wrongly_typed_known_field_is_rejected_and_nothing_changes(api: Api) -> None:
    await api("patch", "k", {"label": "keep"})
    with pytest.raises(InvalidRequestError, match="updatedAt"):
        await api("patch", "k", {"updatedAt": "x"})
    with pytest.raises(InvalidRequestError, match="chatType"):
        await api("patch", "k", {"chatType": "banana"})
    assert (await api("get", "k")).data["label"] == "keep"


async def test_update_only_changes_existing_entries(api: Api) -> None:
    assert await api("update", "missing", {"label": "x"}) is None
    assert await api("get", "missing") is None
    await api("patch", "present", {"label": "a"})
    updated = await api("update", "present", {"label": "b"})
    assert updated.data["label"] == "b"


async def test_replace_stores_exactly_the_entry(api: Api) -> None:
    entry = {"sessionId": "s-1", "updatedAt": 123, "label": "x", "extra": [1]}
    session = await api("replace", "k", entry)
    assert session.data == entry
    assert (await api("get", "k")).data == entry
    with pytest.raises(InvalidRequestError, match="sessionId"):
        await api("replace", "k2", {"updatedAt": 1})


async def test_if_revision_compare_and_set(api: Api) -> None:
    first = await api("patch", "k", {"label": "a"})
    second = await api("patch", "k", {"label": "b"}, if_revision=first.revision)
    assert second.revision != first.revision
    for op, args in (
        ("patch", ("k", {"label": "c"})),
        ("update", ("k", {"label": "c"})),
        ("replace", ("k", {"sessionId": "x", "updatedAt": 1})),
        ("delete", ("k",)),
    ):
        with pytest.raises(ConflictError):
            await api(op, *args, if_revision=first.revision)
    assert (await api("get", "k")).data["label"] == "b"
    with pytest.raises(ConflictError):
        await api("patch", "missing", {"label": "x"}, if_revision=first.revision)
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
    await api("patch", "k", {})
    assert await api("delete", "k") is True
    assert await api("delete", "k") is False
    assert await api("get", "k") is None


async def test_get_many_returns_only_existing_keys(api: Api) -> None:
    await api("patch", "a", {"label": "A"})
    await api("patch", "b", {"label": "B"})
    found = await api("get_many", ["a", "b", "c"])
    assert set(found) == {"a", "b"}
    assert found["a"].data["label"] == "A"


async def test_list_orders_filters_and_pages(api: Api) -> None:
    base_ms = now_ms()
    for index in range(7):
        label = "even" if index % 2 == 0 else "odd"
        entry = {"sessionId": f"s{index}", "updatedAt": base_ms - index * 60_000, "label": label}
        await api("replace", f"agent:main:k{index}", entry)
    page = await api("list", limit=3)
    assert isinstance(page, SessionPage)
    assert [s.key for s in page.items] == ["agent:main:k0", "agent:main:k1", "agent:main:k2"]
    keys: list[str] = []
    cursor = None
    while True:
        page = await api("list", limit=2, cursor=cursor)
        keys.extend(session.key for session in page.items)
        cursor = page.cursor
        if cursor is None:
            break
    assert keys == [f"agent:main:k{index}" for index in range(7)]
    even = await api("list", label="even")
    assert [s.key for s in even.items] == [f"agent:main:k{i}" for i in (0, 2, 4, 6)]
    recent = await api("list", active_minutes=2.5)
    assert [s.key for s in recent.items] == [f"agent:main:k{i}" for i in (0, 1, 2)]
    assert (await api("list", prefix="agent:main:k6")).items[0].key == "agent:main:k6"


async def test_agents_select_separate_store_files(api: Api, daemon: DaemonProcess) -> None:
    await api("patch", "agent:ops:main", {"label": "ops"})
    await api("patch", "plain-key", {"label": "main"}, agent="ops")
    await api("patch", "agent:main:main", {"label": "main"})
    assert (await api("list", agent="ops")).items[0].key in {"agent:ops:main", "plain-key"}
    assert len((await api("list", agent="ops")).items) == 2
    assert [s.key for s in (await api("list")).items] == ["agent:main:main"]
    assert await api("flush") is True
    ops_file = daemon.state_dir / "agents" / "ops" / "sessions" / "sessions.json"
    assert set(json.loads(ops_file.read_text())) == {"agent:ops:main", "plain-key"}
    assert set(json.loads(daemon.store_path.read_text())) == {"agent:main:main"}


async def test_flush_writes_the_original_file_format(api: Api, daemon: DaemonProcess) -> None:
    session = await api("patch", "agent:main:main", {"displayName": "Grüße"})
    assert await api("flush") is True
    text = daemon.store_path.read_text(encoding="utf-8")
    assert json.loads(text) == {"agent:main:main": session.data}
    assert text == json.dumps({"agent:main:main": session.data}, indent=2, ensure_ascii=False)
    assert (daemon.store_path.stat().st_mode & 0o777) == 0o600


async def test_durable_write_is_on_disk_when_acknowledged(api: Api, daemon: DaemonProcess) -> None:
    await api("patch", "k", {"label": "durable"}, durable=True)
    journal = list(daemon.store_path.parent.glob("sessions.json.journal.*"))
    on_disk = b"".join(path.read_bytes() for path in journal)
    if daemon.store_path.exists():
        on_disk += daemon.store_path.read_bytes()
    assert b"durable" in on_disk


async def test_resolve_creates_then_reuses_a_session(api: Api) -> None:
    first = await api("resolve", {"From": "+15550001111", "Body": "hi"})
    assert isinstance(first, Resolution)
    assert first.is_new
    second = await api("resolve", {"From": "+15550001111", "Body": "again"})
    assert not second.is_new
    assert second.session_id == first.session_id


async def test_stats_counts_operations(api: Api) -> None:
    await api("patch", "k", {})
    await api("get", "k")
    stats = await api("stats")
    assert stats["ops"]["patch"] >= 1
    assert stats["ops"]["get"] >= 1
    assert stats["stores"]["main"]["entries"] == 1
    assert stats["uptime_s"] >= 0


async def test_update_with_applies_the_callback_patch(api: Api) -> None:
    assert await api("update_with", "missing", lambda s: {"x": 1}) is None
    await api("patch", "k", {"inputTokens": 1})
    result = await api("update_with", "k", lambda s: {"inputTokens": s.data["inputTokens"] + 1})
    assert result.data["inputTokens"] == 2
    unchanged = await api("update_with", "k", lambda s: None)
    assert unchanged.data["inputTokens"] == 2
