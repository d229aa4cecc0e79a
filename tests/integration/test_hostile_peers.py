"""Hostile and broken peers, each while 4 good clients keep working and get correct answers:
a connection flood past the limit, a peer that stalls mid-frame, and a peer that pipelines
thousands of requests without ever reading a reply."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from tests.support.daemon import DaemonProcess
from tests.support.good_clients import GoodClients
from tests.support.rawsocket import RawPeer

IDLE_CONNECTIONS = 1000
GOOD = 4


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def guarded(make_daemon: Callable[..., DaemonProcess]) -> Iterator[DaemonProcess]:
    limits = {
        # the good clients, 1000 idle peers, and the readiness probe's slot
        "max_connections": GOOD + IDLE_CONNECTIONS,
        "frame_timeout_s": 1.0,
        "max_write_buffer_bytes": 256 * 1024,
        "max_inflight_per_connection": 64,
    }
    daemon = make_daemon({"limits": limits})
    daemon.start()
    yield daemon


@pytest.mark.slow
def test_connection_flood_gets_busy_and_frees_slots(guarded: DaemonProcess) -> None:
    with GoodClients(guarded.socket_path, GOOD) as good:
        idle = [RawPeer(guarded.socket_path) for _ in range(IDLE_CONNECTIONS)]
        try:
            time.sleep(0.3)
            with RawPeer(guarded.socket_path) as refused:
                reply = refused.read_reply()
                assert reply["error"]["code"] == "busy"
                assert refused.is_closed_by_peer()
            idle.pop().close()
            time.sleep(0.3)
            with RawPeer(guarded.socket_path) as admitted:
                assert admitted.call({"op": "hello", "id": 1})["ok"] is True
        finally:
            for peer in idle:
                peer.close()
        time.sleep(0.5)
    good.check()
    with guarded.client() as client:
        stats = client.stats()
    assert stats["connections_refused"] >= 1
    assert stats["connections"] == 1


def test_stalled_frame_is_dropped_while_others_are_served(guarded: DaemonProcess) -> None:
    with GoodClients(guarded.socket_path, GOOD) as good:
        stalled = [RawPeer(guarded.socket_path, timeout_s=10.0) for _ in range(20)]
        for peer in stalled:
            peer.send_bytes(struct.pack(">I", 1000) + b"\x81")  # header, then silence
        started = time.monotonic()
        assert all(peer.is_closed_by_peer() for peer in stalled)
        assert time.monotonic() - started < 9.0
        for peer in stalled:
            peer.close()
    good.check()


def test_peer_that_never_reads_is_paused_and_memory_stays_bounded(
    guarded: DaemonProcess,
) -> None:
    with guarded.client() as client:
        client.patch("agent:main:big", {"label": "x" * 4000})
    request = msgspec.msgpack.encode({"op": "get", "id": 1, "key": "agent:main:big"})
    frame = struct.pack(">I", len(request)) + request
    batch = frame * 1000
    rss_before = rss_bytes(guarded.pid)
    with GoodClients(guarded.socket_path, GOOD) as good:
        flooder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        flooder.connect(guarded.socket_path)
        flooder.settimeout(2.0)
        sent_requests = 0
        try:
            for _ in range(200):  # up to 200k requests, ~1 GB of replies if all were answered
                flooder.sendall(batch)
                sent_requests += 1000
        except TimeoutError:
            pass  # the daemon stopped reading: our send buffer filled up
        time.sleep(1.0)
        rss_after = rss_bytes(guarded.pid)
        flooder.close()
    good.check()
    assert sent_requests < 200_000, "the daemon kept reading a peer that never reads"
    assert rss_after - rss_before < 64 * 1024 * 1024
