"""PROTOCOL.md, statement by statement, against a real daemon over a raw Unix socket:
§1 connection and order, §2 frames, §3 requests and replies (and the §3.3 example bytes),
§9 connection-level errors, §10 error codes.

The expectations come from PROTOCOL.md and README.md only (a client author in another
language has nothing else); frames are built with struct + msgpack by hand. §4-§8 are in
``test_protocol_spec_*.py`` beside this file.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.support.daemon import DaemonProcess
from tests.support.rawmsgpack import array_chain, map_of, raw_str, value
from tests.support.spec_peer import (
    SpecPeer,
    fresh_agent,
    fresh_key,
    running_daemon,
    seed_store,
)

MAX_FRAME = 4096
FRAME_TIMEOUT_S = 0.5
IDLE_TIMEOUT_S = 1.0
CODES = {
    "invalid_request",
    "unknown_op",
    "frame_too_large",
    "not_found",
    "conflict",
    "forbidden",
    "unavailable",
    "busy",
    "shutting_down",
    "internal",
    "compacted",
    "lagged",
}


@pytest.fixture(scope="module")
def wire() -> Iterator[DaemonProcess]:
    """One daemon with a small frame limit and short frame/idle timeouts (§2)."""
    limits = {
        "max_frame_bytes": MAX_FRAME,
        "frame_timeout_s": FRAME_TIMEOUT_S,
        "idle_timeout_s": IDLE_TIMEOUT_S,
    }
    with running_daemon({"limits": limits}) as daemon:
        yield daemon


def frame(message: Any) -> bytes:
    payload = msgspec.msgpack.encode(message)
    return struct.pack(">I", len(payload)) + payload


def assert_error(reply: dict[str, Any], code: str, rid: int | None) -> None:
    assert reply.get("ok") is False, reply
    assert reply["id"] == rid, reply
    assert reply["error"]["code"] == code, reply
    assert isinstance(reply["error"]["message"], str), reply


# -- §1 Connection ----------------------------------------------------------------------


def test_pipelined_requests_are_applied_in_the_order_sent(wire: DaemonProcess) -> None:
    # §1: one connection carries any number of requests; pipelined requests apply in order
    key = fresh_key()
    with SpecPeer(wire.socket_path) as peer:
        ids = []
        for n in range(1, 41):
            ids.append(peer.send_op("patch", key=key, patch={"n": n}))
            ids.append(peer.send_op("get", key=key))
        replies = {rid: peer.reply_to(rid) for rid in ids}
    seqs = [replies[rid]["seq"] for rid in ids[0::2]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for n, get_id in enumerate(ids[1::2], start=1):
        assert replies[get_id]["result"]["entry"]["n"] == n


def _write_big_store(daemon: DaemonProcess, agent: str, entries: int) -> None:
    pad = "x" * 400
    store = {
        f"agent:{agent}:k{i}": {"sessionId": f"s{i}", "updatedAt": 1000 + i, "pad": pad}
        for i in range(entries)
    }
    seed_store(daemon, agent, json.dumps(store))


def test_order_holds_behind_the_first_use_of_a_store_that_must_load(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # §1: "applied in the order they were sent, always — also when the first of them has
    # to wait for its store to load"
    daemon = make_daemon()
    _write_big_store(daemon, "big", 40_000)
    daemon.start()
    with SpecPeer(daemon.socket_path, timeout_s=30) as peer:
        first = peer.send_op("patch", agent="big", key="o", patch={"n": 1})
        other = peer.send_op("patch", key="agent:main:after", patch={"n": 1})
        read1 = peer.send_op("get", agent="big", key="o")
        second = peer.send_op("patch", agent="big", key="o", patch={"n": 2})
        read2 = peer.send_op("get", agent="big", key="o")
        replies = {rid: peer.reply_to(rid) for rid in (first, other, read1, second, read2)}
    assert replies[read1]["result"]["entry"]["n"] == 1
    assert replies[read2]["result"]["entry"]["n"] == 2
    assert replies[first]["seq"] < replies[second]["seq"]
    # the main-store write was sent after the first big-store write: applied after it
    big_at = replies[first]["result"]["entry"]["updatedAt"]
    main_at = replies[other]["result"]["entry"]["updatedAt"]
    assert main_at >= big_at, (big_at, main_at)


def test_order_holds_behind_the_first_use_of_a_new_agent(wire: DaemonProcess) -> None:
    # §1: order also behind a request that opens a never-used store
    agent = fresh_agent()
    with SpecPeer(wire.socket_path) as peer:
        ids = [
            peer.send_op("patch", agent=agent, key="a", patch={"n": 1}),
            peer.send_op("get", agent=agent, key="a"),
            peer.send_op("patch", agent=agent, key="a", patch={"n": 2}),
            peer.send_op("list", agent=agent),
            peer.send_op("delete", agent=agent, key="a"),
            peer.send_op("get", agent=agent, key="a"),
        ]
        replies = [peer.reply_to(rid) for rid in ids]
    assert replies[1]["result"]["entry"]["n"] == 1
    assert [item["entry"]["n"] for item in replies[3]["result"]["items"]] == [2]
    assert replies[4]["result"] is True
    assert replies[5]["result"] is None
    assert [replies[i]["seq"] for i in (0, 2, 4)] == [1, 2, 3]


def test_a_read_after_a_durable_write_sees_it_whatever_the_reply_order(
    wire: DaemonProcess,
) -> None:
    # §1: replies may come out of order (durable writes), but application is in order
    key = fresh_key()
    with SpecPeer(wire.socket_path) as peer:
        write = peer.send_op("patch", key=key, patch={"v": "durable"}, durable=True)
        read = peer.send_op("get", key=key)
        assert peer.reply_to(read)["result"]["entry"]["v"] == "durable"
        assert peer.reply_to(write)["ok"] is True


# -- §2 Frames ---------------------------------------------------------------------------


def test_a_payload_of_exactly_max_frame_bytes_is_accepted(wire: DaemonProcess) -> None:
    # §2: "the payload is at most max_frame_bytes"
    key = fresh_key()
    base = len(msgspec.msgpack.encode({"op": "patch", "id": 1, "key": key, "patch": {"p": ""}}))
    pad = "x" * 1000
    while True:  # the msgpack string header grows with the string: aim by trial
        payload = msgspec.msgpack.encode({"op": "patch", "id": 1, "key": key, "patch": {"p": pad}})
        if len(payload) == MAX_FRAME:
            break
        pad = "x" * (len(pad) + MAX_FRAME - len(payload))
        assert len(pad) < MAX_FRAME + base
    with SpecPeer(wire.socket_path) as peer:
        peer.send_payload(payload)
        reply = peer.read_reply()
    assert reply["ok"] is True, reply
    assert reply["result"]["entry"]["p"] == pad


def test_requests_before_an_oversized_frame_are_answered_then_frame_too_large_and_close(
    wire: DaemonProcess,
) -> None:
    # §2: requests completely received before an oversized header are applied and
    # answered, then one frame_too_large (id null), then the connection is closed; the
    # oversized payload is never read (no payload is sent here at all)
    key = fresh_key()
    with SpecPeer(wire.socket_path) as peer:
        peer.send_bytes(
            frame({"op": "patch", "id": 1, "key": key, "patch": {"n": 1}})
            + frame({"op": "get", "id": 2, "key": key})
            + frame({"op": "patch", "id": 3, "key": key, "patch": {"n": 2}})
            + struct.pack(">I", MAX_FRAME + 1)
        )
        replies = peer.read_until_eof()
    assert [r["id"] for r in replies[:3]] == [1, 2, 3], replies
    assert all(r["ok"] for r in replies[:3]), replies
    assert replies[1]["result"]["entry"]["n"] == 1
    assert len(replies) == 4, replies
    assert_error(replies[3], "frame_too_large", None)
    with SpecPeer(wire.socket_path) as check:
        assert check.result("get", key=key)["entry"]["n"] == 2


def test_after_frame_too_large_the_daemon_half_closes_and_discards_for_about_2_s(
    wire: DaemonProcess,
) -> None:
    # §9: "The daemon then writes EOF (half-close), reads and discards whatever the peer
    # still sends for 2 s, and closes"
    with SpecPeer(wire.socket_path) as peer:
        peer.send_bytes(struct.pack(">I", 10 * MAX_FRAME) + b"\0" * 100)
        replies = peer.read_until_eof()  # EOF: the write half is closed
        eof_at = time.monotonic()
        assert [r["error"]["code"] for r in replies] == ["frame_too_large"]
        peer.sock.settimeout(0.5)
        closed_after = None
        while time.monotonic() - eof_at < 5.0:
            try:
                peer.sock.sendall(b"\0" * 1024)
            except OSError:  # EPIPE / ECONNRESET: the daemon closed its end
                closed_after = time.monotonic() - eof_at
                break
            time.sleep(0.05)
    assert closed_after is not None, "the daemon never closed its reading end"
    assert 1.0 <= closed_after <= 3.5, closed_after


@pytest.mark.parametrize("cut", ["in the header", "in the payload"])
def test_an_incomplete_frame_is_answered_with_invalid_request_then_closed(
    wire: DaemonProcess, cut: str
) -> None:
    # §2: the requests received before it are answered, then one invalid_request (id
    # null, "a frame stayed incomplete..."), then the connection is closed as in §9
    key = fresh_key()
    tail = b"\x00\x00" if cut == "in the header" else struct.pack(">I", 100) + b"\x85" + b"a" * 9
    with SpecPeer(wire.socket_path) as peer:
        peer.send_bytes(
            frame({"op": "patch", "id": 1, "key": key, "patch": {"n": 1}})
            + frame({"op": "get", "id": 2, "key": key})
            + tail
        )
        start = time.monotonic()
        replies = peer.read_until_eof()
        elapsed = time.monotonic() - start
    assert [r["id"] for r in replies[:2]] == [1, 2], replies
    assert len(replies) == 3, replies
    assert_error(replies[2], "invalid_request", None)
    assert "incomplete" in replies[2]["error"]["message"]
    assert FRAME_TIMEOUT_S * 0.8 <= elapsed <= FRAME_TIMEOUT_S + 3.0, elapsed


def test_a_silent_connection_with_nothing_in_flight_is_closed_without_a_message(
    wire: DaemonProcess,
) -> None:
    # §2: idle for idle_timeout_s -> closed without a message
    with SpecPeer(wire.socket_path) as peer:
        peer.result("hello")
        elapsed, received = peer.wait_eof(IDLE_TIMEOUT_S + 4.0)
    assert received == b""
    assert IDLE_TIMEOUT_S * 0.8 <= elapsed <= IDLE_TIMEOUT_S + 2.0, elapsed


def test_a_connection_with_an_active_watch_is_not_closed_when_idle(wire: DaemonProcess) -> None:
    # §2: only a connection with "no active watch" is closed for idleness
    with SpecPeer(wire.socket_path) as peer:
        watch = peer.send_op("watch", agent=fresh_agent())
        assert peer.reply_to(watch)["result"]["type"] == "progress"
        time.sleep(IDLE_TIMEOUT_S * 2.5)
        assert peer.quiet_for(0.05)  # neither data nor EOF
        assert peer.result("unwatch", watch=watch) is True


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(msgspec.msgpack.encode([1, 2]), id="array"),
        pytest.param(msgspec.msgpack.encode("get"), id="string"),
        pytest.param(msgspec.msgpack.encode(7), id="integer"),
        pytest.param(b"\xc1", id="not-msgpack"),
        pytest.param(b"\x82\xa2op\xa3get", id="truncated-map"),
    ],
)
def test_a_payload_that_is_not_a_map_is_invalid_request_with_id_null(
    wire: DaemonProcess, payload: bytes
) -> None:
    # §2: the payload is one msgpack map; §3.2 id null when no integer id can be read
    with SpecPeer(wire.socket_path) as peer:
        peer.send_payload(payload)
        assert_error(peer.read_reply(), "invalid_request", None)
        assert peer.result("hello")["protocol"] == 1  # §10: not a connection-level error


def test_a_map_with_a_non_string_key_at_the_top_is_invalid_request(wire: DaemonProcess) -> None:
    # §2: "one msgpack map with string keys"
    with SpecPeer(wire.socket_path) as peer:
        peer.send_payload(
            map_of((value("op"), value("get")), (value("id"), value(4)), (b"\x01", b"\x01"))
        )
        reply = peer.read_reply()
    assert reply["ok"] is False and reply["error"]["code"] == "invalid_request", reply


# -- §3.1 Request ------------------------------------------------------------------------


@pytest.mark.parametrize("rid", [0, 1, -1, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1])
def test_the_id_is_echoed_exactly(wire: DaemonProcess, rid: int) -> None:
    # §3.1: any msgpack integer in the int64 or uint64 range, echoed exactly
    with SpecPeer(wire.socket_path) as peer:
        peer.send({"op": "get", "id": rid, "key": "k"})
        raw = peer.read_payload()
    reply = msgspec.msgpack.decode(raw)
    assert type(reply["id"]) is int and reply["id"] == rid, reply
    assert reply["ok"] is True


def test_ids_need_not_be_unique_or_ordered(wire: DaemonProcess) -> None:
    # §3.1: "Ids need not be unique or ordered"
    with SpecPeer(wire.socket_path) as peer:
        for rid in (5, 5, 3, -9):
            peer.send_op("hello", rid=rid)
        replies = [peer.read_reply() for _ in range(4)]
    assert sorted(r["id"] for r in replies) == [-9, 3, 5, 5]
    assert all(r["ok"] for r in replies)


@pytest.mark.parametrize(
    "request_map",
    [
        pytest.param({"op": "get", "key": "k"}, id="missing"),
        pytest.param({"op": "get", "id": "1", "key": "k"}, id="string"),
        pytest.param({"op": "get", "id": 1.0, "key": "k"}, id="float"),
        pytest.param({"op": "get", "id": True, "key": "k"}, id="true"),
        pytest.param({"op": "get", "id": None, "key": "k"}, id="null"),
        pytest.param({"op": "get", "id": [1], "key": "k"}, id="array"),
    ],
)
def test_a_request_without_an_integer_id_is_answered_with_id_null(
    wire: DaemonProcess, request_map: dict[str, Any]
) -> None:
    # §3.2: "id is null when the daemon could not read an integer id"
    with SpecPeer(wire.socket_path) as peer:
        peer.send(request_map)
        assert_error(peer.read_reply(), "invalid_request", None)
        assert peer.result("hello")["protocol"] == 1


@pytest.mark.parametrize("id_first", [True, False], ids=["id-first", "id-last"])
def test_the_id_is_found_in_a_request_with_invalid_utf8(
    wire: DaemonProcess, id_first: bool
) -> None:
    # §3.2: "When a request cannot be decoded at all (invalid UTF-8, absurd nesting), the
    # daemon still finds its top-level id if it is intact"
    pairs = [(value("op"), value("get")), (value("key"), raw_str(b"k\xff\xfe"))]
    id_pair = (value("id"), value(77))
    payload = map_of(id_pair, *pairs) if id_first else map_of(*pairs, id_pair)
    with SpecPeer(wire.socket_path) as peer:
        peer.send_payload(payload)
        assert_error(peer.read_reply(), "invalid_request", 77)
        assert peer.result("hello")["protocol"] == 1


def test_the_id_is_found_in_a_request_with_absurd_nesting(wire: DaemonProcess) -> None:
    # §3.2: absurd nesting, id intact (placed before the deep value)
    deep = array_chain(3000)
    payload = map_of(
        (value("id"), value(78)),
        (value("op"), value("patch")),
        (value("key"), value("k")),
        (value("patch"), map_of((value("a"), deep))),
    )
    with SpecPeer(wire.socket_path) as peer:
        peer.send_payload(payload)
        assert_error(peer.read_reply(), "invalid_request", 78)
        assert peer.result("hello")["protocol"] == 1


def test_an_unknown_op_is_unknown_op_with_the_id(wire: DaemonProcess) -> None:
    # §3.1: "An unknown op gets unknown_op (with the id)"
    with SpecPeer(wire.socket_path) as peer:
        assert_error(peer.call_op("frobnicate"), "unknown_op", 1)
        assert_error(peer.call_op("GET", key="k"), "unknown_op", 2)  # ops are exact


@pytest.mark.parametrize(
    "request_map",
    [
        pytest.param({"op": "get", "id": 9, "key": 5}, id="integer-for-string"),
        pytest.param({"op": "list", "id": 9, "limit": 10.0}, id="float-for-integer"),
        pytest.param({"op": "list", "id": 9, "active_minutes": True}, id="true-for-number"),
        pytest.param(
            {"op": "patch", "id": 9, "key": "k", "patch": {}, "durable": 1}, id="int-bool"
        ),
        pytest.param({"op": "get_many", "id": 9, "keys": "k"}, id="string-for-list"),
        pytest.param({"op": "patch", "id": 9, "key": "k", "patch": [1]}, id="list-for-map"),
        pytest.param({"op": 5, "id": 9}, id="op-not-string"),
    ],
)
def test_a_field_of_the_wrong_type_is_invalid_request(
    wire: DaemonProcess, request_map: dict[str, Any]
) -> None:
    # §3.1: "a field of the wrong type ... is invalid_request"
    with SpecPeer(wire.socket_path) as peer:
        peer.send(request_map)
        assert_error(peer.read_reply(), "invalid_request", 9)


@pytest.mark.parametrize(
    "request_map",
    [
        pytest.param({"op": "patch", "key": "k", "patch": {}, "durable": None}, id="durable"),
        pytest.param({"op": "update_last_route", "key": "k", "touch": None}, id="touch"),
        pytest.param({"op": "prune", "dry_run": None}, id="dry_run"),
    ],
)
def test_null_in_a_field_not_written_t_or_null_is_invalid_request(
    wire: DaemonProcess, request_map: dict[str, Any]
) -> None:
    # §3.1: "A field that may be null is written T | null" — so null elsewhere is the
    # wrong type
    with SpecPeer(wire.socket_path) as peer:
        peer.send({**request_map, "id": 10, "agent": fresh_agent()})
        assert_error(peer.read_reply(), "invalid_request", 10)


def test_null_in_a_nullable_field_is_the_same_as_leaving_it_out(wire: DaemonProcess) -> None:
    # §3.1: "a null there is the same as leaving the field out"
    agent = fresh_agent()
    with SpecPeer(wire.socket_path) as peer:
        peer.result("patch", agent=agent, key="a", patch={"label": "x"})
        nulls = {
            "prefix": None,
            "active_minutes": None,
            "label": None,
            "spawned_by": None,
            "cursor": None,
            "fields": None,
            "limit": None,
        }
        assert peer.result("list", agent=agent, **nulls) == peer.result("list", agent=agent)
        written = peer.result(
            "patch", agent=agent, key="a", patch={"n": 1}, if_revision=None, request_token=None
        )
        assert written["entry"]["n"] == 1
        assert peer.result("hello", client=None)["protocol"] == 1


def test_unknown_extra_fields_are_ignored(wire: DaemonProcess) -> None:
    # §3.1: "Unknown extra fields are ignored"
    key = fresh_key()
    with SpecPeer(wire.socket_path) as peer:
        entry = peer.result("patch", key=key, patch={"n": 1}, future_option={"x": [1]})["entry"]
        assert peer.result("get", key=key, zzz=1) == peer.result("get", key=key)
        assert entry["n"] == 1 and "future_option" not in entry


# -- §3.2 Reply --------------------------------------------------------------------------


def test_seq_is_present_only_on_writes_that_changed_the_store(wire: DaemonProcess) -> None:
    # §3.2: seq on a write that changed its store; absent for update/delete of a missing
    # key, reads and errors
    agent = fresh_agent()
    with SpecPeer(wire.socket_path) as peer:
        created = peer.call_op("patch", agent=agent, key="a", patch={"n": 1})
        assert created["seq"] == 1
        assert peer.call_op("update", agent=agent, key="a", patch={"n": 2})["seq"] == 2
        assert "seq" not in peer.call_op("update", agent=agent, key="missing", patch={"n": 1})
        assert "seq" not in peer.call_op("delete", agent=agent, key="missing")
        assert "seq" not in peer.call_op("get", agent=agent, key="a")
        assert "seq" not in peer.call_op("get_many", agent=agent, keys=["a"])
        assert "seq" not in peer.call_op("hello")
        conflict = peer.call_op("patch", agent=agent, key="a", patch={}, if_revision="0" * 16)
        assert conflict["ok"] is False and "seq" not in conflict
        route = peer.call_op("update_last_route", agent=agent, key="a", to="x")
        assert route["seq"] == 3
        assert peer.call_op("delete", agent=agent, key="a")["seq"] == 4


def test_reply_maps_hold_id_ok_and_result_or_error(wire: DaemonProcess) -> None:
    # §3.2: the two reply shapes
    with SpecPeer(wire.socket_path) as peer:
        good = peer.call_op("get", key=fresh_key())
        bad = peer.call_op("get", key="")
    assert {"id", "ok", "result"} <= set(good) and "error" not in good
    assert {"id", "ok", "error"} <= set(bad) and "result" not in bad
    assert isinstance(bad["error"]["code"], str) and isinstance(bad["error"]["message"], str)


# -- §3.3 Example ------------------------------------------------------------------------

EXAMPLE = bytes.fromhex("00 00 00 12 83 a2 6f 70 a3 67 65 74 a2 69 64 01 a3 6b 65 79 a1 6b")


def test_the_example_frame_is_what_msgpack_gives() -> None:
    # §3.3: the payload is 18 bytes, the frame is the 22 bytes shown
    assert frame({"op": "get", "id": 1, "key": "k"}) == EXAMPLE
    assert len(EXAMPLE) - 4 == 18 == struct.unpack(">I", EXAMPLE[:4])[0]


def test_the_example_frame_gets_a_get_reply(wire: DaemonProcess) -> None:
    # §3.3: those exact bytes are a `get` of key `k` with id 1
    with SpecPeer(wire.socket_path) as peer:
        peer.send_bytes(EXAMPLE)
        reply = peer.read_reply()
    assert reply["id"] == 1 and reply["ok"] is True


# -- §9 Connection-level errors -----------------------------------------------------------


def test_busy_is_sent_with_id_null_and_readable_after_writing(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # §9: busy (max_connections reached) with id null; EOF, discard for 2 s, close: "a
    # peer that was writing its first requests can still read why"; §8: not applied
    daemon = make_daemon({"limits": {"max_connections": 2}}).start()
    key = fresh_key()
    with SpecPeer(daemon.socket_path) as one, SpecPeer(daemon.socket_path) as two:
        one.result("hello")
        two.result("hello")
        with SpecPeer(daemon.socket_path) as third:
            third.send({"op": "patch", "id": 1, "key": key, "patch": {"n": 1}})
            time.sleep(0.2)
            third.send({"op": "get", "id": 2, "key": key})
            replies = third.read_until_eof()
        assert len(replies) == 1, replies
        assert_error(replies[0], "busy", None)
        assert one.result("get", key=key) is None
        assert one.result("stats")["connections_refused"] >= 1


def _connect_as_nobody(socket_path: str) -> bytes:
    """Connect as uid/gid 65534 in a forked child; every byte the daemon sent."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only syscalls, then _exit
        status = 1
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5.0)
                sock.connect(socket_path)
                sock.sendall(frame({"op": "get", "id": 1, "key": "k"}))
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            os.write(write_fd, data)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return data


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
def test_a_peer_not_allowed_gets_one_forbidden_reply_with_id_null(
    make_daemon: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    # §1/§9: anyone else gets one forbidden reply (id null), then the connection is closed
    daemon = make_daemon({"access": {"socket_mode": 0o666}}).start()
    short_tmp.chmod(0o711)
    daemon.root.chmod(0o711)
    data = _connect_as_nobody(daemon.socket_path)
    (length,) = struct.unpack(">I", data[:4])
    reply = msgspec.msgpack.decode(data[4 : 4 + length])
    assert len(data) == 4 + length, "more than one reply"
    assert_error(reply, "forbidden", None)


def test_many_unanswered_requests_pause_reading_but_never_fail_the_client(
    wire: DaemonProcess,
) -> None:
    # §9: more than max_inflight_per_connection (256) unanswered requests, and a client
    # that does not read: reading pauses, nothing fails
    key = fresh_key()
    count = 3000
    with SpecPeer(wire.socket_path, timeout_s=20) as peer:
        peer.result("patch", key=key, patch={"pad": "p" * 1500})
        frames = b"".join(frame({"op": "get", "id": 100 + i, "key": key}) for i in range(count))
        sender = threading.Thread(target=peer.send_bytes, args=(frames,))
        sender.start()
        time.sleep(0.5)  # the daemon's write buffer and the socket fill up meanwhile
        replies = [peer.read_reply() for _ in range(count)]
        sender.join(10)
    assert sorted(r["id"] for r in replies) == list(range(100, 100 + count))
    assert all(r["ok"] for r in replies)


# -- §10 Error codes ---------------------------------------------------------------------


def test_missing_things_are_not_errors_and_not_found_is_never_sent(wire: DaemonProcess) -> None:
    # §10: not_found is "reserved, not sent by version 1"
    agent = fresh_agent()
    with SpecPeer(wire.socket_path) as peer:
        assert peer.result("get", agent=agent, key="nope") is None
        assert peer.result("get_many", agent=agent, keys=["nope"]) == {}
        assert peer.result("update", agent=agent, key="nope", patch={}) is None
        assert peer.result("delete", agent=agent, key="nope") is False
        assert peer.result("unwatch", agent=agent, watch=12345) is False
        assert peer.result("list", agent=agent)["items"] == []


def test_every_error_code_sent_is_one_of_section_10(wire: DaemonProcess) -> None:
    # §10: codes are those of the table; conflict only for writes; stats counts by code
    agent = fresh_agent()
    with SpecPeer(wire.socket_path) as peer:
        peer.result("patch", agent=agent, key="a", patch={})
        seen = {
            peer.error("get", agent=agent, key="")["code"],
            peer.error("nope", agent=agent)["code"],
            peer.error("patch", agent=agent, key="a", patch={}, if_absent=True)["code"],
            peer.error("watch", agent=agent, since=10**6)["code"],
        }
        errors = peer.result("stats")["errors"]
    assert seen == {"invalid_request", "unknown_op", "conflict", "compacted"}
    assert set(errors) <= CODES, errors
    assert "internal" not in errors, errors
