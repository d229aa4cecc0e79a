"""PROTOCOL.md §6.10 (watch / unwatch) and §6.11 (prune), statement by statement, against a
real daemon over a raw Unix socket: the first progress event, delivery from ``since``,
prefixes and projections, progress marks, ``compacted`` and ``oldest_seq``, history
across a kill and a clean stop, ``end`` on unwatch, ``shutting_down`` at shutdown,
``lagged``; prune's result and dry run. Expectations come from PROTOCOL.md and README.md
only.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess
from tests.support.spec_peer import (
    SpecPeer,
    fresh_agent,
    now_ms,
    running_daemon,
    seed_store,
    store_file,
)

HISTORY = 20
MAX_WATCHES = 3
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def watcher() -> Iterator[DaemonProcess]:
    limits = {"watch_history_changes": HISTORY, "max_watches_per_connection": MAX_WATCHES}
    with running_daemon({"limits": limits}) as daemon:
        yield daemon


@pytest.fixture
def peer(watcher: DaemonProcess) -> Iterator[SpecPeer]:
    with SpecPeer(watcher.socket_path) as connection:
        yield connection


def event(peer: SpecPeer, watch: int, *, progress: bool = False) -> dict[str, Any]:
    """The next reply of ``watch`` (its result, or the whole reply if an error); progress
    events are skipped unless ``progress``."""
    while True:
        reply = peer.reply_to(watch)
        if not reply["ok"]:
            return reply
        result: dict[str, Any] = reply["result"]
        if progress or result["type"] != "progress":
            return result


def start_watch(peer: SpecPeer, **fields: Any) -> tuple[int, dict[str, Any]]:
    watch = peer.send_op("watch", **fields)
    first = peer.reply_to(watch)
    assert first["ok"] is True, first
    return watch, first["result"]


def writes(peer: SpecPeer, agent: str, count: int) -> list[dict[str, Any]]:
    return [
        peer.call_op("patch", agent=agent, key=f"k{n % 3}", patch={"n": n}) for n in range(count)
    ]


# -- §6.10 watch ------------------------------------------------------------------------


def test_the_first_reply_is_progress_at_the_current_seq(peer: SpecPeer) -> None:
    # §6.10: "The first reply is a progress event with the starting position (since, or
    # the store's current seq)"
    agent = fresh_agent()
    writes(peer, agent, 3)
    watch, first = start_watch(peer, agent=agent)
    assert first == {"type": "progress", "seq": 3}
    other, from_since = start_watch(peer, agent=agent, since=1)
    assert from_since == {"type": "progress", "seq": 1}
    assert peer.result("unwatch", watch=watch) is True
    assert peer.result("unwatch", watch=other) is True


def test_since_delivers_every_later_change_in_seq_order_then_live(peer: SpecPeer) -> None:
    # §6.10: "every change of the store with a higher seq, in seq order, each once ...
    # first from the kept history, then live"; the Event shapes
    agent = fresh_agent()
    made = writes(peer, agent, 4)
    deleted = peer.call_op("delete", agent=agent, key="k0")
    watch, _ = start_watch(peer, agent=agent, since=2)
    for reply in made[2:]:
        put = event(peer, watch)
        assert put == {
            "type": "put",
            "seq": reply["seq"],
            "key": reply["result"]["key"],
            "entry": reply["result"]["entry"],
            "revision": reply["result"]["revision"],
        }
    assert event(peer, watch) == {"type": "delete", "seq": deleted["seq"], "key": "k0"}
    live = peer.call_op("patch", agent=agent, key="live", patch={"x": 1})
    assert event(peer, watch) == {
        "type": "put",
        "seq": live["seq"],
        "key": "live",
        "entry": live["result"]["entry"],
        "revision": live["result"]["revision"],
    }
    assert live["seq"] == deleted["seq"] + 1 == 6  # seq grows by one per change
    assert peer.result("unwatch", watch=watch) is True


def test_a_watch_skips_changes_outside_its_prefix_and_projects_fields(peer: SpecPeer) -> None:
    # §6.10: "changes outside prefix are skipped silently"; fields: projection
    agent = fresh_agent()
    watch, _ = start_watch(peer, agent=agent, prefix="in:", fields=["label"])
    peer.call_op("patch", agent=agent, key="out:1", patch={"label": "no"})
    inside = peer.call_op("patch", agent=agent, key="in:1", patch={"label": "yes", "big": "x"})
    peer.call_op("delete", agent=agent, key="out:1")
    gone = peer.call_op("delete", agent=agent, key="in:1")
    put = event(peer, watch)
    entry = inside["result"]["entry"]
    assert put["key"] == "in:1" and put["seq"] == inside["seq"] == 2
    assert put["entry"] == {k: entry[k] for k in ("label", "sessionId", "updatedAt")}
    assert put["revision"] == inside["result"]["revision"]
    assert event(peer, watch) == {"type": "delete", "seq": gone["seq"], "key": "in:1"}
    assert peer.result("unwatch", watch=watch) is True


def test_unwatch_ends_the_watch_with_an_end_event(peer: SpecPeer) -> None:
    # §6.10: "the watch's last reply is an end event, and the unwatch request is answered
    # true (false if no such watch runs on this connection)"
    agent = fresh_agent()
    writes(peer, agent, 2)
    watch, _ = start_watch(peer, agent=agent)
    assert peer.result("unwatch", watch=watch) is True
    assert event(peer, watch) == {"type": "end", "seq": 2}
    peer.call_op("patch", agent=agent, key="after", patch={})
    assert peer.result("hello")["protocol"] == 1
    assert all(reply["id"] != watch for reply in peer.stash), peer.stash
    assert peer.result("unwatch", watch=watch) is False
    with SpecPeer(peer.sock.getpeername()) as other:
        again, _ = start_watch(peer, agent=agent)
        assert other.result("unwatch", watch=again) is False  # not its connection
        assert peer.result("unwatch", watch=again) is True


def test_a_second_watch_with_the_id_of_a_running_one_is_invalid_request(peer: SpecPeer) -> None:
    # §6.10: "a second watch with the id of a running one is invalid_request"
    agent = fresh_agent()
    watch, _ = start_watch(peer, agent=agent)
    peer.send_op("watch", rid=watch, agent=agent)
    error = event(peer, watch)
    assert error["ok"] is False and error["error"]["code"] == "invalid_request", error
    assert peer.result("unwatch", watch=watch) is True
    again, _ = start_watch(peer, rid=watch, agent=agent)  # the id is free again
    assert peer.result("unwatch", watch=again) is True


def test_at_most_max_watches_per_connection(peer: SpecPeer) -> None:
    # §6.10: "At most max_watches_per_connection (default 64) watches per connection"
    # (the error code is not written; invalid_request is the §10 row for a limit)
    watches = [start_watch(peer, agent=fresh_agent())[0] for _ in range(MAX_WATCHES)]
    over = peer.call_op("watch", agent=fresh_agent())
    assert over["ok"] is False and over["error"]["code"] == "invalid_request", over
    for watch in watches:
        assert peer.result("unwatch", watch=watch) is True


def test_a_since_outside_the_kept_history_is_compacted_with_oldest_seq(peer: SpecPeer) -> None:
    # §6.10: the last watch_history_changes changes are kept; an older (or newer) since
    # is "an error reply with code compacted and oldest_seq: the oldest since that works"
    agent = fresh_agent()
    writes(peer, agent, HISTORY + 10)  # seq 1..30, changes 11..30 kept
    old = peer.call_op("watch", agent=agent, since=0)
    assert old["ok"] is False and old["error"]["code"] == "compacted", old
    oldest = old["error"]["oldest_seq"]
    assert oldest == 10, old
    ahead = peer.call_op("watch", agent=agent, since=HISTORY + 11)
    assert ahead["ok"] is False and ahead["error"]["code"] == "compacted", ahead
    assert isinstance(ahead["error"]["oldest_seq"], int)
    too_old = peer.call_op("watch", agent=agent, since=oldest - 1)
    assert too_old["error"]["code"] == "compacted"
    watch, first = start_watch(peer, agent=agent, since=oldest)
    assert first == {"type": "progress", "seq": oldest}
    assert [event(peer, watch)["seq"] for _ in range(HISTORY + 10 - oldest)] == list(
        range(oldest + 1, HISTORY + 11)
    )
    assert peer.result("unwatch", watch=watch) is True


def test_watching_from_a_list_seq_sees_every_change_of_the_walk(peer: SpecPeer) -> None:
    # §6.3: "watch from the first page's seq to see every change made during the walk"
    agent = fresh_agent()
    writes(peer, agent, 3)
    page = peer.result("list", agent=agent, limit=1)
    changed = peer.call_op("patch", agent=agent, key="k1", patch={"moved": True})
    watch, _ = start_watch(peer, agent=agent, since=page["seq"])
    assert event(peer, watch)["seq"] == changed["seq"] == page["seq"] + 1
    assert peer.result("unwatch", watch=watch) is True


@pytest.mark.parametrize("fields", [{"since": 1.0}, {"since": "1"}, {"prefix": 5}, {"since": -1}])
def test_watch_fields_of_the_wrong_type_are_invalid_request(
    peer: SpecPeer, fields: dict[str, Any]
) -> None:
    # §6.10 / §3.1 (since is an integer; a negative one is no seq)
    reply = peer.call_op("watch", agent=fresh_agent(), **fields)
    assert reply["ok"] is False and reply["error"]["code"] in ("invalid_request", "compacted")
    if fields.get("since") != -1:
        assert reply["error"]["code"] == "invalid_request"


def test_an_idle_watch_gets_progress_marks(make_daemon: Callable[..., DaemonProcess]) -> None:
    # §6.10: "An idle watch gets a progress event (the store's current seq) about every
    # watch_progress_s"
    daemon = make_daemon({"limits": {"watch_progress_s": 0.3}}).start()
    agent = fresh_agent()
    with SpecPeer(daemon.socket_path) as peer:
        watch, first = start_watch(peer, agent=agent)
        assert first == {"type": "progress", "seq": 0}
        start = time.monotonic()
        assert event(peer, watch, progress=True) == {"type": "progress", "seq": 0}
        assert time.monotonic() - start < 1.5
        written = peer.call_op("patch", agent=agent, key="k", patch={})
        while (mark := event(peer, watch, progress=True))["type"] != "progress":
            pass
        assert mark == {"type": "progress", "seq": written["seq"]}
        assert peer.result("unwatch", watch=watch) is True


def test_history_survives_a_kill_and_not_a_clean_stop(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # §6.10: history kept "also across a kill (from the journal). After a clean stop it
    # keeps none: a watch then resumes only from the seq at the stop"; seq grows across
    # restarts in journal mode
    daemon = make_daemon().start()
    with SpecPeer(daemon.socket_path) as peer:
        made = writes(peer, "main", 4)
    daemon.kill()
    daemon.start()
    with SpecPeer(daemon.socket_path) as peer:
        watch, _ = start_watch(peer, since=0)
        assert [event(peer, watch)["seq"] for _ in made] == [1, 2, 3, 4]
        assert peer.call_op("patch", key="k9", patch={})["seq"] == 5
        assert event(peer, watch)["seq"] == 5
    assert daemon.stop() == 0
    daemon.start()
    with SpecPeer(daemon.socket_path) as peer:
        old = peer.call_op("watch", since=4)
        assert old["ok"] is False and old["error"]["code"] == "compacted", old
        assert old["error"]["oldest_seq"] == 5
        watch, first = start_watch(peer, since=5)
        assert first == {"type": "progress", "seq": 5}
        assert peer.call_op("patch", key="k9", patch={})["seq"] == 6
        assert event(peer, watch)["seq"] == 6


def test_at_shutdown_every_watch_ends_with_shutting_down(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # §6.10: "At daemon shutdown every watch ends with a shutting_down error reply"; §9:
    # requests on an open connection during shutdown get shutting_down with their own id
    daemon = make_daemon().start()
    with SpecPeer(daemon.socket_path) as peer:
        watch, _ = start_watch(peer)
        assert daemon.process is not None
        daemon.process.terminate()
        ended = peer.reply_to(watch)
        assert ended["ok"] is False and ended["error"]["code"] == "shutting_down", ended
        try:
            late = peer.call_op("get", key="k")
        except OSError:
            late = None  # already closed: nothing to check
        if late is not None:
            assert late["ok"] is False and late["error"]["code"] == "shutting_down", late
    assert daemon.process.wait(20) == 0


@pytest.mark.parametrize("history", [5, 1000], ids=["history-moved-past", "history-kept"])
def test_a_watcher_that_does_not_read_is_paused_then_catches_up_or_lags(
    make_daemon: Callable[..., DaemonProcess], history: int
) -> None:
    # §6.10: "A watcher whose connection does not read its replies is paused; it catches
    # up from the history when it reads again. If the history moved past it meanwhile,
    # the watch ends with a lagged error reply"
    limits = {"watch_history_changes": history, "max_write_buffer_bytes": 65536}
    daemon = make_daemon({"limits": limits}).start()
    with SpecPeer(daemon.socket_path, timeout_s=10) as slow, SpecPeer(daemon.socket_path) as fast:
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        watch, _ = start_watch(slow)
        for n in range(300):
            fast.result("patch", key=f"k{n % 7}", patch={"pad": "p" * 4000, "n": n})
        if history == 1000:
            assert [event(slow, watch)["seq"] for _ in range(300)] == list(range(1, 301))
            assert slow.result("unwatch", watch=watch) is True
            return
        seqs = []
        while (last := event(slow, watch)).get("ok", True):
            assert last["type"] == "put"
            seqs.append(last["seq"])
        assert last["error"]["code"] == "lagged", last
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) < 300


# -- §6.11 prune -----------------------------------------------------------------------

RETENTION = {"mode": "enforce", "prune_after_days": 1, "max_entries": 100, "interval_s": 3600}
PRUNE_KEYS = {"mode", "dry_run", "pruned", "kept", "entries", "over_cap", "archive"}
KEPT_REASONS = {"main", "protected", "recent", "no updatedAt", "changed while pruning"}


@pytest.mark.parametrize("mode", ["enforce", "off"])
def test_prune_result_shape_and_dry_run(
    make_daemon: Callable[..., DaemonProcess], mode: str
) -> None:
    # §6.11: the result; dry_run changes nothing; not dry: archived to
    # sessions.pruned.jsonl beside the store file, then deleted through the write path
    # (journaled, seen by watches); "mode is the configured mode ... an explicit prune
    # applies the rules anyway"
    daemon = make_daemon({"retention": RETENTION | {"mode": mode}})
    old = now_ms() - 3 * DAY_MS
    seed_store(
        daemon,
        "main",
        json.dumps(
            {
                "agent:main:main": {"sessionId": "m", "updatedAt": old},
                "agent:main:old1": {"sessionId": "o1", "updatedAt": old},
                "agent:main:old2": {"sessionId": "o2", "updatedAt": old - 1000},
                "agent:main:fresh": {"sessionId": "f", "updatedAt": now_ms()},
                "agent:main:undated": {"sessionId": "u"},
            }
        ),
    )
    daemon.start()
    archive = store_file(daemon, "main").parent / "sessions.pruned.jsonl"
    with SpecPeer(daemon.socket_path) as peer:
        dry = peer.result("prune", dry_run=True)
        assert set(dry) == PRUNE_KEYS and dry["mode"] == mode and dry["dry_run"] is True
        pruned = {item["key"]: item for item in dry["pruned"]}
        assert set(pruned) == {"agent:main:old1", "agent:main:old2"}, dry
        assert pruned["agent:main:old1"] == {
            "key": "agent:main:old1",
            "reason": "age",
            "updated_at": old,
        }
        for item in dry["kept"]:
            assert set(item) == {"key", "reason", "updated_at"} and item["reason"] in KEPT_REASONS
        kept = {item["key"]: item["reason"] for item in dry["kept"]}
        assert kept.get("agent:main:main", "main") == "main"
        assert "agent:main:fresh" not in pruned and "agent:main:undated" not in pruned
        assert isinstance(dry["entries"], int) and dry["over_cap"] is False
        assert len(peer.result("list")["items"]) == 5 and not archive.exists()

        watch, _ = start_watch(peer)
        real = peer.result("prune")
        assert real["dry_run"] is False and {i["key"] for i in real["pruned"]} == set(pruned)
        assert real["archive"] == str(archive)
        lines = [json.loads(line) for line in archive.read_text().splitlines()]
        assert len(lines) == 2
        assert {"agent:main:old1", "agent:main:old2"} <= set(json.dumps(lines).split('"'))
        deletes = {event(peer, watch)["key"] for _ in range(2)}
        assert deletes == set(pruned)
        assert sorted(i["key"] for i in peer.result("list")["items"]) == [
            "agent:main:fresh",
            "agent:main:main",
            "agent:main:undated",
        ]
    assert Path(real["archive"]).parent == store_file(daemon, "main").parent
