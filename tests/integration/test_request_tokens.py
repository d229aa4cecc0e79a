"""A write resent with the same request token is answered, not applied again — in the same
daemon, after a graceful restart, and after a kill -9 (the token is journaled with the
write it belongs to)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.support.daemon import DaemonProcess
from tests.support.rawsocket import RawPeer


def increment(token: str, if_revision: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "op": "update",
        "id": 1,
        "key": "agent:main:c",
        "patch": {"inputTokens": 1},
        "request_token": token,
    }
    if if_revision is not None:
        request["if_revision"] = if_revision
    return request


def counter_value(daemon: DaemonProcess) -> Any:
    with daemon.client() as client:
        session = client.get("agent:main:c")
        assert session is not None
        return session.data


def test_same_token_twice_applies_once(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        client.patch("agent:main:c", {"inputTokens": 0, "label": "a"})
    with RawPeer(daemon.socket_path) as peer:
        first = peer.call(
            {
                "op": "patch",
                "id": 1,
                "key": "agent:main:c",
                "patch": {"label": "b"},
                "request_token": "tok-1",
            }
        )
        with daemon.client() as client:
            client.patch("agent:main:c", {"label": "c"})
        again = peer.call(
            {
                "op": "patch",
                "id": 2,
                "key": "agent:main:c",
                "patch": {"label": "b"},
                "request_token": "tok-1",
            }
        )
    assert first["ok"] and again["ok"]
    assert again["result"] == first["result"]
    assert counter_value(daemon)["label"] == "c"
    with daemon.client() as client:
        stats = client.stats()
        assert stats["ops"]["patch"] == 4
        assert stats["replayed_writes"] == 1


def test_token_survives_kill_9(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon({"persistence": {"flush_delay_s": 60.0, "flush_max_delay_s": 60.0}})
    daemon.start()
    with daemon.client() as client:
        start = client.patch("agent:main:c", {"inputTokens": 0}, durable=True)
    with RawPeer(daemon.socket_path) as peer:
        reply = peer.call(increment("tok-crash", if_revision=start.revision))
        assert reply["ok"]
    time.sleep(0.05)
    daemon.kill()
    daemon.start()
    before_retry = counter_value(daemon)
    with RawPeer(daemon.socket_path) as peer:
        again = peer.call(increment("tok-crash", if_revision=start.revision))
    assert again["ok"], again  # a second application would fail the if_revision check
    assert again["result"]["revision"] == reply["result"]["revision"]
    assert counter_value(daemon) == before_retry


def test_token_survives_snapshots_and_restarts(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        client.patch("agent:main:c", {"inputTokens": 0})
    with RawPeer(daemon.socket_path) as peer:
        assert peer.call(increment("tok-restart"))["ok"]
    with daemon.client() as client:
        client.flush()  # the token's journal segment is now covered and deleted
        client.patch("agent:main:other", {})
        client.flush()
    assert daemon.stop() == 0
    daemon.start()
    before_retry = counter_value(daemon)
    time.sleep(0.01)  # a second application would move updatedAt
    with RawPeer(daemon.socket_path) as peer:
        again = peer.call(increment("tok-restart"))
    assert again["ok"], again
    assert counter_value(daemon) == before_retry
