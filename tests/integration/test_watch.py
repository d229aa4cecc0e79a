"""The change feed on a real daemon: ``watch`` from a ``seq`` delivers every later change in
order, with no gap and no duplicate, then live ones; a ``since`` older than the kept window
is ``compacted`` (with the oldest usable seq); idle watches get progress marks; a watcher
that stops reading is dropped with ``lagged`` instead of growing the daemon; a watch
resumes on its own across daemon restarts (kill -9 and SIGTERM) without a gap; projections
(``fields``) apply to reads and watches."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from sessiond_client import CompactedError, WatchEvent
from tests.support.daemon import DaemonProcess
from tests.support.procstat import rss_bytes
from tests.support.rawsocket import RawPeer

KEY = "agent:main:k"


def changes(events: list[WatchEvent]) -> list[WatchEvent]:
    return [event for event in events if event.type in ("put", "delete")]


def test_since_delivers_every_later_change_in_order_then_live_ones(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        seqs = [client.patch(f"agent:main:k{n}", {"n": n}).seq for n in range(20)]
        assert seqs == list(range(1, 21))
        client.delete("agent:main:k3")
        with client.watch(since=5) as watch:
            events: list[WatchEvent] = []
            for event in watch:
                events.append(event)
                if event.seq == 21:
                    break
            client.patch("agent:main:live", {"n": "live"})
            live = next(event for event in watch if event.type != "progress")
    assert events[0].type == "progress" and events[0].seq == 5  # the starting position
    found = changes(events)
    assert [event.seq for event in found] == list(range(6, 22))
    assert [event.entry["n"] for event in found[:-1]] == list(range(5, 20))
    assert (found[-1].type, found[-1].key, found[-1].entry) == ("delete", "agent:main:k3", None)
    assert (live.type, live.seq, live.entry["n"]) == ("put", 22, "live")


def test_a_since_older_than_the_window_is_compacted_then_list_and_watch(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon({"limits": {"watch_history_changes": 10}}).start()
    with daemon.client() as client:
        for n in range(30):
            client.patch(KEY, {"n": n})
        with pytest.raises(CompactedError) as raised, client.watch(since=3) as watch:
            next(iter(watch))
        assert raised.value.oldest_seq == 20
        page = client.list()
        assert page.seq == 30
        with client.watch(since=page.seq) as watch:
            assert next(iter(watch)).seq == 30
            client.patch(KEY, {"n": "next"})
            event = next(event for event in watch if event.type == "put")
        assert event.seq == 31


def test_an_idle_watch_gets_progress_marks(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon({"limits": {"watch_progress_s": 0.2}}).start()
    with daemon.client() as client:
        client.patch(KEY, {"n": 1})
        with client.watch() as watch:
            started = time.monotonic()
            marks = [next(iter(watch)) for _ in range(3)]
        assert [mark.type for mark in marks] == ["progress"] * 3
        assert {mark.seq for mark in marks} == {1}
        assert time.monotonic() - started < 5.0


def test_prefixes_and_projections(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        full = {"label": "l", "model": "m", "skillsSnapshot": {"big": "x" * 1000}}
        written = client.patch("agent:main:g1", full)
        client.patch("agent:main:other", {"label": "o"})
        got = client.get("agent:main:g1", fields=["label"])
        assert got is not None and set(got.data) == {"label", "sessionId", "updatedAt"}
        assert got.revision == written.revision  # the revision of the whole entry
        page = client.list(fields=["model"])
        assert all(set(s.data) <= {"model", "sessionId", "updatedAt"} for s in page.items)
        many = client.get_many(["agent:main:g1"], fields=[])
        assert set(many["agent:main:g1"].data) == {"sessionId", "updatedAt"}
        with client.watch(prefix="agent:main:g", since=0, fields=["label"]) as watch:
            events = []
            for event in watch:
                events.append(event)
                if event.seq >= 2:
                    break
        (put,) = changes(events)  # "other" is outside the prefix
        assert put.key == "agent:main:g1" and set(put.entry) == {"label", "sessionId", "updatedAt"}


def test_a_watcher_that_stops_reading_is_dropped_with_lagged(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    limits = {"watch_history_changes": 50, "max_write_buffer_bytes": 65536}
    daemon = make_daemon({"limits": limits}).start()
    blob = "x" * 20_000
    with RawPeer(daemon.socket_path) as lazy, daemon.client() as client:
        lazy.send({"op": "watch", "id": 7})
        time.sleep(0.2)
        before = rss_bytes(daemon.pid)
        for n in range(400):  # ~8 MB of events the watcher never reads
            client.patch(KEY, {"n": n, "blob": blob})
        grown = rss_bytes(daemon.pid) - before
        assert grown < 32 << 20, f"the daemon grew {grown} bytes for a reader that stopped"
        replies: list[dict[str, Any]] = []
        while not replies or replies[-1].get("ok", True):
            replies.append(lazy.read_reply())
        assert replies[-1]["id"] == 7 and replies[-1]["error"]["code"] == "lagged"
        assert client.get(KEY) is not None  # everyone else is served


@pytest.mark.parametrize("how", ["kill", "term"])
def test_a_watch_resumes_across_restarts_without_gap_or_duplicate(
    make_daemon: Callable[..., DaemonProcess], how: str
) -> None:
    # After a kill -9 the journal still holds the recent changes; after a clean stop it
    # holds none (the store file has them all), so a watch resumes from the seq at the
    # stop: the test lets the watcher catch up before stopping the daemon again.
    daemon = make_daemon().start()
    received: list[WatchEvent] = []
    total = 60
    with daemon.client(timeout_s=30.0) as writer, daemon.client(timeout_s=30.0) as reader:
        writer.patch(KEY, {"n": -1})

        def follow() -> None:
            with reader.watch(since=0) as watch:
                for event in watch:
                    received.append(event)
                    if event.type == "put" and event.entry["n"] == total - 1:
                        return

        def caught_up(seq: int) -> bool:
            return any(event.seq >= seq for event in list(received))

        thread = threading.Thread(target=follow)
        thread.start()
        for n in range(total):
            written = writer.patch(KEY, {"n": n})
            if n % 20 == 10:
                if how == "term":
                    wait_until(functools.partial(caught_up, written.seq or 0))
                daemon.kill() if how == "kill" else daemon.stop()
                daemon.start()
        thread.join(60)
        assert not thread.is_alive()
    puts = changes(received)
    assert [event.seq for event in puts] == list(range(1, total + 2))  # no gap, no repeat
    assert [event.entry["n"] for event in puts] == list(range(-1, total))


def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)
