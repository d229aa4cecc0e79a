"""Bounded resources, proven against a real daemon process.

- A read naming an agent that was never written creates nothing: no directory, no open
  descriptor, no store in ``stats`` — not even after 500 distinct names.
- ``limits.max_stores`` caps the stores held open; the least recently used ones are
  closed and reopened on use with nothing lost, also across a restart.
- Running out of descriptors makes new stores ``unavailable``; the daemon lives on and
  the stores it already has keep working.
- Replies stay under ``max_reply_bytes`` (``list`` pages, ``get_many`` asks for fewer
  keys), and peers that never read their large replies cannot grow the daemon's memory
  beyond their write buffers.
- Entry shapes are bounded (depth, member count); hostile nesting is refused quickly,
  other clients are served meanwhile, and nothing is applied.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sessiond_client import Client, InvalidRequestError, UnavailableError
from tests.support.daemon import DaemonProcess
from tests.support.good_clients import GoodClients
from tests.support.procstat import open_descriptors, rss_bytes
from tests.support.rawmsgpack import array_chain, map_of, raw_str, value
from tests.support.rawsocket import RawPeer

MiB = 1024 * 1024


def agents_dir(daemon: DaemonProcess) -> Path:
    return daemon.state_dir / "agents"


def agent_dirs(daemon: DaemonProcess) -> list[str]:
    return sorted(path.name for path in agents_dir(daemon).iterdir())


def loaded_stores(client: Client) -> set[str]:
    stats = client.stats()
    return set(stats["stores"]) | set(stats["unavailable_stores"])


def wait_for_descriptors(pid: int, expected: int, timeout_s: float = 5.0) -> list[str]:
    """The daemon's descriptors once their count is ``expected`` (or at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        names = open_descriptors(pid)
        if len(names) == expected or time.monotonic() > deadline:
            return names
        time.sleep(0.05)


# -- A1: reads of unknown agents create nothing ------------------------------------------


def read_as(client: Client, op: str, agent: str) -> None:
    """One read of ``op`` naming ``agent`` (by its key for get, else by ``agent=``)."""
    if op == "get":
        assert client.get(f"agent:{agent}:main") is None
    elif op == "get_agent":
        assert client.get("some-key", agent=agent) is None
    elif op == "get_many":
        assert client.get_many([f"agent:{agent}:a", f"agent:{agent}:b"]) == {}
    elif op == "list":
        page = client.list(agent=agent, limit=10)
        assert page.items == [] and page.cursor is None
    elif op == "stats":
        stats = client.stats(agent=agent)
        assert stats["stores"] == {} and stats["unavailable_stores"] == {}
    elif op == "flush":
        assert client.flush(agent=agent) is True
    else:
        raise AssertionError(op)


READ_OPS = ["get", "get_agent", "get_many", "list", "stats", "flush"]


def test_reads_of_never_written_agents_create_nothing(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon().start()
    with daemon.client() as client:
        client.patch("agent:main:real", {"label": "real"})
        client.flush()  # the snapshot is written and the journal rotated: a steady state
        before = open_descriptors(daemon.pid)
        assert agent_dirs(daemon) == ["main"]
        for op in READ_OPS:
            read_as(client, op, f"ghost-{op.replace('_', '-')}")
            assert agent_dirs(daemon) == ["main"], f"{op} created a store directory"
            assert open_descriptors(daemon.pid) == before, f"{op} left a descriptor open"
            assert loaded_stores(client) == {"main"}, f"{op} created a store"
        for index in range(500):
            read_as(client, READ_OPS[index % len(READ_OPS)], f"never{index}")
        assert agent_dirs(daemon) == ["main"]
        assert len(wait_for_descriptors(daemon.pid, len(before))) == len(before)
        assert loaded_stores(client) == {"main"}
        # The real store is untouched and still serves reads and writes.
        session = client.get("agent:main:real")
        assert session is not None and session.data["label"] == "real"
        assert client.patch("agent:main:real", {"label": "again"}).data["label"] == "again"
        assert [s.key for s in client.list().items] == ["agent:main:real"]
    assert daemon.stop() == 0


# -- A2: at most max_stores open -------------------------------------------------------


CAPPED_AGENTS = [f"cap{index}" for index in range(6)]


def check_capped_stores(client: Client, rounds: int) -> None:
    """Every agent's entries are there; never more than 3 stores loaded meanwhile."""
    for agent in CAPPED_AGENTS:
        page = client.list(agent=agent, limit=100)
        assert {s.key: s.data["label"] for s in page.items} == {
            f"agent:{agent}:k{r}": f"{agent}-{r}" for r in range(rounds)
        }
        session = client.get(f"agent:{agent}:k0")
        assert session is not None and session.data["label"] == f"{agent}-0"
        assert len(loaded_stores(client)) <= 3


def test_max_stores_closes_idle_stores_and_loses_nothing(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon({"limits": {"max_stores": 3}}).start()
    with daemon.client() as client:
        for round_ in range(2):  # the second round reopens every store that was closed
            for agent in CAPPED_AGENTS:
                written = client.patch(f"agent:{agent}:k{round_}", {"label": f"{agent}-{round_}"})
                assert written.data["label"] == f"{agent}-{round_}"
                assert len(loaded_stores(client)) <= 3
        check_capped_stores(client, rounds=2)
    assert daemon.stop() == 0
    for agent in CAPPED_AGENTS:  # every store was written out when it was closed
        assert (agents_dir(daemon) / agent / "sessions" / "sessions.json").is_file()
    daemon.start()
    with daemon.client() as client:
        assert len(loaded_stores(client)) <= 3  # preloading stopped at the cap too
        check_capped_stores(client, rounds=2)
    daemon.kill()  # a crash: the journals of the stores open at the time hold their changes
    daemon.start()
    with daemon.client() as client:
        check_capped_stores(client, rounds=2)


# -- A3: out of descriptors ----------------------------------------------------------------


def test_running_out_of_descriptors_makes_new_stores_unavailable_only(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # The default limits.max_stores (256) is far above what 64 descriptors can hold open:
    # descriptors run out first.
    daemon = make_daemon(wrapper=["prlimit", "--nofile=64:64"]).start()
    opened: list[str] = []
    refused: list[str] = []
    with daemon.client(timeout_s=10.0) as client:
        for index in range(200):
            agent = f"fd{index}"
            try:
                client.patch(f"agent:{agent}:k", {"label": agent})
            except UnavailableError as error:
                refused.append(str(error))
                if len(refused) >= 10:
                    break
            else:
                assert not refused, f"{agent} opened after {len(refused)} refusals"
                opened.append(agent)
        assert opened, "no store could be opened at all"
        assert refused, f"{len(opened)} stores opened under a 64-descriptor limit"
        assert daemon.process is not None and daemon.process.poll() is None
        # The stores opened before keep serving reads and writes.
        for agent in opened:
            session = client.get(f"agent:{agent}:k")
            assert session is not None and session.data["label"] == agent
            written = client.patch(f"agent:{agent}:k", {"label": f"{agent}+"}, durable=True)
            assert written.data["label"] == f"{agent}+"
        stats = client.stats()
        assert "internal" not in stats["errors"], stats["errors"]
    with daemon.client() as fresh:  # and new connections are still accepted
        assert fresh.hello().server == "sessiond"
    assert daemon.stop() == 0


# -- A4: replies are bounded --------------------------------------------------------------

REPLY_LIMITS = {
    "max_entry_bytes": 200_000,
    "max_reply_bytes": 512 * 1024,  # about 5 entries of ~100 KB per reply
    "max_write_buffer_bytes": 256 * 1024,
}
BIG_ENTRIES = 40
AS_LIMIT = ["prlimit", f"--as={2048 * MiB}"]  # so a runaway daemon cannot take the host down


def big_key(index: int) -> str:
    return f"agent:main:big{index:02d}"


def big_blob(index: int) -> str:
    return f"{index:02d}" * 50_000  # ~100 KB, different per entry


@pytest.fixture
def big_store(make_daemon: Callable[..., DaemonProcess]) -> Iterator[DaemonProcess]:
    daemon = make_daemon({"limits": REPLY_LIMITS}, wrapper=AS_LIMIT).start()
    with daemon.client() as client:
        for index in range(BIG_ENTRIES):
            client.patch(big_key(index), {"label": "big", "blob": big_blob(index)})
    yield daemon


def test_list_pages_fit_max_reply_bytes_and_cover_every_entry_once(
    big_store: DaemonProcess,
) -> None:
    with RawPeer(big_store.socket_path, timeout_s=30) as peer:
        hello = peer.call({"op": "hello", "id": 1, "protocol": 1})
        max_reply_bytes = hello["result"]["max_reply_bytes"]
        assert max_reply_bytes == REPLY_LIMITS["max_reply_bytes"]
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            request: dict[str, Any] = {"op": "list", "id": 2 + pages, "limit": 1000}
            if cursor is not None:
                request["cursor"] = cursor
            peer.send(request)
            payload = peer.read_payload()
            assert len(payload) <= max_reply_bytes, f"page {pages}: {len(payload)} bytes"
            reply = msgspec.msgpack.decode(payload)
            assert reply["ok"] is True, reply
            pages += 1
            for item in reply["result"]["items"]:
                index = int(item["key"][-2:])
                assert item["entry"]["blob"] == big_blob(index)
                seen.append(item["key"])
            cursor = reply["result"]["cursor"]
            if cursor is None:
                break
            assert pages < 100, "paging does not end"
    assert pages > 1  # 40 entries of 100 KB do not fit one 512 KB reply
    assert sorted(seen) == [big_key(index) for index in range(BIG_ENTRIES)]  # each once


def test_get_many_over_the_reply_limit_asks_for_fewer_keys(big_store: DaemonProcess) -> None:
    with big_store.client() as client:
        few = client.get_many([big_key(index) for index in range(3)])
        assert sorted(few) == [big_key(index) for index in range(3)]
        with pytest.raises(InvalidRequestError, match="fewer"):
            client.get_many([big_key(index) for index in range(BIG_ENTRIES)])
        assert client.hello().server == "sessiond"  # the connection is still good


FLOODERS = 8
FLOOD_SECONDS = 4.0
RSS_SLACK = 32 * MiB
"""Beyond the write buffers: the interpreter and allocator (freed replies are not always
returned to the system at once) and one read chunk (256 KB) per peer in flight."""


def flood_batch() -> bytes:
    """Requests whose replies are large: get_many of 4 big entries, list pages."""
    keys = [big_key(index) for index in range(4)]
    frames = []
    for index in range(200):
        request: dict[str, Any] = (
            {"op": "get_many", "id": index, "keys": keys}
            if index % 2
            else {"op": "list", "id": index, "limit": 1000}
        )
        payload = msgspec.msgpack.encode(request)
        frames.append(struct.pack(">I", len(payload)) + payload)
    return b"".join(frames)


def flood(path: str, stop: threading.Event, sent: list[int], slot: int) -> None:
    """Send batches as long as the daemon reads them; never read a reply."""
    batch = flood_batch()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.setblocking(False)
        offset = 0
        while not stop.is_set():
            try:
                offset += sock.send(batch[offset:])
            except BlockingIOError:
                time.sleep(0.01)
                continue
            except OSError:
                return  # the daemon closed us: that bounds our memory too
            sent[slot] += 1
            if offset == len(batch):
                offset = 0


def test_peers_that_never_read_large_replies_keep_memory_bounded(
    big_store: DaemonProcess,
) -> None:
    """Each peer may cost the daemon its write buffer (``max_write_buffer_bytes``, where
    it stops reading that peer) plus the one reply that crossed that mark (at most
    ``max_reply_bytes``); everything else is :data:`RSS_SLACK`."""
    process = big_store.process
    assert process is not None
    with big_store.client(timeout_s=30) as client:
        client.list(limit=1000)  # warm up: every entry's reply form is built once
        client.get_many([big_key(index) for index in range(4)])
    time.sleep(0.5)
    rss_before = rss_bytes(big_store.pid)
    per_peer = REPLY_LIMITS["max_write_buffer_bytes"] + REPLY_LIMITS["max_reply_bytes"]
    bound = rss_before + FLOODERS * per_peer + RSS_SLACK
    stop = threading.Event()
    sent = [0] * FLOODERS
    threads = [
        threading.Thread(target=flood, args=(big_store.socket_path, stop, sent, slot), daemon=True)
        for slot in range(FLOODERS)
    ]
    peak = rss_before
    with GoodClients(big_store.socket_path, 2) as good:
        for thread in threads:
            thread.start()
        try:
            deadline = time.monotonic() + FLOOD_SECONDS
            while time.monotonic() < deadline and process.poll() is None:
                peak = max(peak, rss_bytes(big_store.pid))
                time.sleep(0.01)
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
    assert process.poll() is None, "the daemon died"
    assert all(sent), f"a peer could not send at all: {sent}"
    assert peak <= bound, (
        f"RSS grew from {rss_before / MiB:.0f} MiB to {peak / MiB:.0f} MiB "
        f"(bound {bound / MiB:.0f} MiB)"
    )
    good.check(min_rounds=5)


# -- A5: entry shape limits ---------------------------------------------------------------


def nested_object(depth: int, innermost: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object ``depth`` levels deep counting itself; the innermost one is ``innermost``
    (default empty: a member in it is one level deeper still)."""
    inner: dict[str, Any] = dict(innermost or {})
    for _ in range(depth - 1):
        inner = {"n": inner}
    return inner


@pytest.fixture
def shaped(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    daemon = make_daemon().start()
    with daemon.client() as client:
        client.patch("agent:main:shape", {"label": "before"})
    return daemon


def assert_unchanged(client: Client, revision: str) -> None:
    session = client.get("agent:main:shape")
    assert session is not None
    assert session.data["label"] == "before" and "deep" not in session.data
    assert session.revision == revision


def test_patch_depth_limit_counts_the_entry_itself(shaped: DaemonProcess) -> None:
    with shaped.client() as client:
        before = client.get("agent:main:shape")
        assert before is not None
        # The patch is level 1, its field "deep" level 2: 31 more levels make 32.
        with pytest.raises(InvalidRequestError, match="nested deeper than the limit of 32"):
            client.patch("agent:main:shape", {"deep": nested_object(32)})
        assert_unchanged(client, before.revision)
        with pytest.raises(InvalidRequestError, match="limit of 32"):  # a scalar at level 33
            client.patch("agent:main:shape", {"deep": nested_object(31, {"x": 1})})
        assert_unchanged(client, before.revision)
        with pytest.raises(InvalidRequestError, match="limit of 32"):  # same through replace
            client.replace("agent:main:shape", {"sessionId": "s", "deep": nested_object(32)})
        assert_unchanged(client, before.revision)
        # 32 levels pass: an empty object at level 32, or a scalar at level 32.
        written = client.patch("agent:main:shape", {"deep": nested_object(31)})
        assert written.data["deep"] == nested_object(31)
        written = client.patch("agent:main:shape", {"deep": nested_object(30, {"x": 1})})
        assert written.data["deep"] == nested_object(30, {"x": 1})
        session = client.get("agent:main:shape")
        assert session is not None and session.data["deep"] == nested_object(30, {"x": 1})
        assert client.hello().max_depth == 32  # the default, as announced


def test_patch_member_count_limit(shaped: DaemonProcess) -> None:
    with shaped.client() as client:
        before = client.get("agent:main:shape")
        assert before is not None
        # 1 member ("deep") + 10,000 array items: one more than the limit.
        with pytest.raises(InvalidRequestError, match="limit of 10000 fields"):
            client.patch("agent:main:shape", {"deep": list(range(10_000))})
        assert_unchanged(client, before.revision)
        members = {f"f{index}": index for index in range(10_001)}
        with pytest.raises(InvalidRequestError, match="limit of 10000 fields"):
            client.patch("agent:main:shape", members)
        assert_unchanged(client, before.revision)
        written = client.patch("agent:main:shape", {"deep": list(range(9_999))})  # exactly 10,000
        assert len(written.data["deep"]) == 9_999
        assert client.hello().max_fields == 10_000  # the default, as announced


def hostile_patch(request_id: int, nested: bytes) -> bytes:
    return map_of(
        (raw_str(b"op"), value("patch")),
        (raw_str(b"id"), value(request_id)),
        (raw_str(b"key"), value("agent:main:shape")),
        (raw_str(b"patch"), map_of((raw_str(b"deep"), nested))),
    )


HALF_MB = 512 * 1024
HOSTILE_NESTINGS = {
    # one chain half a megabyte deep
    "one deep chain": array_chain(HALF_MB),
    # 1,900 chains of 256 levels side by side (each within any decoder's recursion
    # limit; ~980 KB as JSON, so within max_entry_bytes: only the depth limit refuses it)
    "many deep chains": b"\xdc" + struct.pack(">H", 1900) + array_chain(256) * 1900,
}


@pytest.mark.parametrize("shape", sorted(HOSTILE_NESTINGS))
def test_half_megabyte_of_nested_arrays_is_refused_quickly(
    shaped: DaemonProcess, shape: str
) -> None:
    nested = HOSTILE_NESTINGS[shape]
    assert len(nested) > 0.9 * HALF_MB
    with shaped.client() as client:
        before = client.get("agent:main:shape")
    assert before is not None
    with GoodClients(shaped.socket_path, 2) as good, RawPeer(shaped.socket_path) as peer:
        for request_id in range(1, 6):
            started = time.monotonic()
            peer.send_payload(hostile_patch(request_id, nested))
            reply = peer.read_reply()
            elapsed = time.monotonic() - started
            assert reply["ok"] is False and reply["error"]["code"] == "invalid_request", reply
            assert elapsed < 2.0, f"refusing took {elapsed:.2f} s"
        assert peer.call({"op": "get", "id": 99, "key": "agent:main:shape"})["id"] == 99
        time.sleep(0.5)
    good.check(min_rounds=5)
    with shaped.client() as client:
        assert_unchanged(client, before.revision)
