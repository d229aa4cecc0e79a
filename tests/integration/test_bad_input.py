"""Bad input gets a clear error and loses nothing; other clients are never affected."""

from __future__ import annotations

import struct
from collections.abc import Callable

import msgspec
import pytest

from tests.support.daemon import DaemonProcess
from tests.support.rawsocket import RawPeer


@pytest.fixture
def seeded(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    daemon = make_daemon({"limits": {"max_entry_bytes": 1024 * 1024, "frame_timeout_s": 1.0}})
    daemon.start()
    with daemon.client() as client:
        client.patch("agent:main:keep", {"label": "precious"})
    return daemon


def assert_untouched(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        session = client.get("agent:main:keep")
        assert session is not None and session.data["label"] == "precious"
        assert client.stats()["stores"]["main"]["entries"] == 1


def test_garbage_payload_gets_invalid_request_and_connection_stays_usable(
    seeded: DaemonProcess,
) -> None:
    with RawPeer(seeded.socket_path) as peer:
        peer.send_payload(b"\xc1\xff garbage")
        reply = peer.read_reply()
        assert reply["ok"] is False
        assert reply["id"] is None
        assert reply["error"]["code"] == "invalid_request"
        assert peer.call({"op": "get", "id": 7, "key": "agent:main:keep"})["id"] == 7
    assert_untouched(seeded)


def test_wrong_types_get_invalid_request_with_the_request_id(seeded: DaemonProcess) -> None:
    with RawPeer(seeded.socket_path) as peer:
        reply = peer.call({"op": "get", "id": 3, "key": 12})
        assert reply == {"id": 3, "ok": False, "error": reply["error"]}
        assert reply["error"]["code"] == "invalid_request"
        assert "key" in reply["error"]["message"]
        reply = peer.call({"op": "patch", "id": 4, "key": "agent:main:keep", "patch": [1, 2]})
        assert reply["error"]["code"] == "invalid_request"
        reply = peer.call(
            {"op": "patch", "id": 5, "key": "agent:main:keep", "patch": {"updatedAt": "soon"}}
        )
        assert reply["error"]["code"] == "invalid_request"
        assert peer.call({"op": "get", "id": 6, "key": "agent:main:keep"})["ok"] is True
    assert_untouched(seeded)


def test_unknown_op_gets_unknown_op(seeded: DaemonProcess) -> None:
    with RawPeer(seeded.socket_path) as peer:
        reply = peer.call({"op": "drop_everything", "id": 9})
        assert reply["id"] == 9
        assert reply["error"]["code"] == "unknown_op"
        assert peer.call({"op": "hello", "id": 10, "protocol": 1})["ok"] is True
    assert_untouched(seeded)


def test_oversize_length_header_gets_frame_too_large_then_close(seeded: DaemonProcess) -> None:
    with RawPeer(seeded.socket_path) as peer:
        peer.send_bytes(struct.pack(">I", 0xFFFFFFF0))
        reply = peer.read_reply()
        assert reply["error"]["code"] == "frame_too_large"
        assert peer.is_closed_by_peer()
    assert_untouched(seeded)


def test_truncated_frame_then_hang_up_is_harmless(seeded: DaemonProcess) -> None:
    with RawPeer(seeded.socket_path) as peer:
        payload = msgspec.msgpack.encode(
            {"op": "patch", "id": 1, "key": "agent:main:keep", "patch": {"label": "clobbered"}}
        )
        peer.send_bytes(struct.pack(">I", len(payload)) + payload[:-5])
    assert_untouched(seeded)


def test_stalled_partial_frame_is_dropped_after_the_frame_timeout(seeded: DaemonProcess) -> None:
    with RawPeer(seeded.socket_path, timeout_s=5.0) as peer:
        peer.send_bytes(struct.pack(">I", 100) + b"x" * 10)
        assert peer.is_closed_by_peer()
    assert_untouched(seeded)


def test_entry_over_the_configured_limit_is_refused(seeded: DaemonProcess) -> None:
    with seeded.client() as client, RawPeer(seeded.socket_path, timeout_s=30) as peer:
        big = "x" * (10 * 1024 * 1024)
        reply = peer.call(
            {"op": "patch", "id": 1, "key": "agent:main:keep", "patch": {"blob": big}}
        )
        assert reply["error"]["code"] == "invalid_request"
        assert "exceeds the limit" in reply["error"]["message"]
        assert client.get("agent:main:keep") is not None
    assert_untouched(seeded)
