"""``watch`` on every backend: every change after ``since`` in order, then live ones,
with prefixes and projections; ``CompactedError`` outside the kept history.
"""

from __future__ import annotations

import threading

import pytest

from sessiond_client import CompactedError, WatchEvent
from tests.backends.conftest import Backend
from tests.support.redis_server import SERVER_KINDS


def test_since_delivers_every_later_change_in_order_then_live_ones(backend: Backend) -> None:
    with backend.client() as client:
        first = client.patch("agent:main:a", {"label": "1"})
        client.patch("agent:main:b", {"label": "2"})
        client.delete("agent:main:a")
        seen: list[WatchEvent] = []
        assert first.seq == 1
        with client.watch("agent:main:", since=0) as events:
            for event in events:
                seen.append(event)
                if event.seq == 3:
                    client.patch("agent:main:c", {"label": "live"})
                if event.seq == 4:
                    break
    assert [(e.type, e.seq, e.key) for e in seen] == [
        ("progress", 0, None),
        ("put", 1, "agent:main:a"),
        ("put", 2, "agent:main:b"),
        ("delete", 3, "agent:main:a"),
        ("put", 4, "agent:main:c"),
    ]
    assert seen[1].entry["label"] == "1"
    assert seen[4].entry["label"] == "live"


async def test_prefixes_and_projections(backend: Backend) -> None:
    async with backend.async_client() as client:
        start = (await client.list()).seq
        await client.patch("agent:main:x:1", {"label": "in", "model": "m"})
        await client.patch("agent:main:y:1", {"label": "out"})
        written = await client.patch("agent:main:x:2", {"label": "in2"})
        seen: list[WatchEvent] = []
        async with client.watch("agent:main:x:", since=start, fields=["label"]) as events:
            async for event in events:
                seen.append(event)
                if event.seq == written.seq:
                    break
    assert [(e.type, e.key) for e in seen] == [
        ("progress", None),
        ("put", "agent:main:x:1"),
        ("put", "agent:main:x:2"),
    ]
    assert set(seen[1].entry) == {"label", "sessionId", "updatedAt"}
    assert seen[2].revision == written.revision


def test_a_since_newer_than_the_store_is_compacted(backend: Backend) -> None:
    with backend.client() as client:
        client.patch("k", {})
        with pytest.raises(CompactedError) as raised, client.watch(since=5) as events:
            next(iter(events))
        assert raised.value.oldest_seq == 0


# The daemon's window is tested with its config in tests/integration/test_watch.py.
@pytest.mark.parametrize("backend", SERVER_KINDS, indirect=True)
def test_a_since_older_than_the_kept_stream_is_compacted(backend: Backend) -> None:
    assert backend.server is not None
    with backend.client() as client:
        for index in range(5):
            client.patch(f"k{index}", {})
        with backend.server.raw() as raw:
            raw.xtrim("{sessiond:main}:w", maxlen=2, approximate=False)
        with pytest.raises(CompactedError) as raised, client.watch(since=1) as events:
            next(iter(events))
        assert raised.value.oldest_seq == 3
        with client.watch(since=3) as events:
            assert [next(iter(events)).seq for _ in range(3)] == [3, 4, 5]


def test_a_watch_from_now_sees_a_write_from_another_thread(backend: Backend) -> None:
    with backend.client() as client, backend.client() as writer, client.watch() as events:
        iterator = iter(events)
        assert next(iterator).type == "progress"
        timer = threading.Timer(0.2, lambda: writer.patch("late", {"label": "x"}))
        timer.start()
        event = next(iterator)
        timer.join()  # the event may come before the write's own reply
    assert (event.type, event.key, event.entry["label"]) == ("put", "late", "x")
