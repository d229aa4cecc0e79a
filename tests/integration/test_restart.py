"""Restarts: a graceful stop keeps everything; a crash keeps every acknowledged durable write."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.support.daemon import DaemonProcess


def test_sigterm_flushes_and_a_restart_serves_everything(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        written = {
            f"agent:main:k{i}": client.patch(f"agent:main:k{i}", {"label": str(i)}).data
            for i in range(50)
        }
        client.delete("agent:main:k0")
        del written["agent:main:k0"]
    assert daemon.stop() == 0
    assert json.loads(daemon.store_path.read_text()) == written
    assert not list(daemon.store_path.parent.glob("*.tmp"))
    daemon.start()
    with daemon.client() as client:
        for key, data in written.items():
            session = client.get(key)
            assert session is not None and session.data == data
        assert client.get("agent:main:k0") is None


def test_kill_9_keeps_acknowledged_durable_writes(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # Snapshots are pushed far out so only the journal can have saved the writes.
    daemon = make_daemon({"persistence": {"flush_delay_s": 60.0, "flush_max_delay_s": 60.0}})
    daemon.start()
    with daemon.client() as client:
        durable = client.patch("agent:main:durable", {"label": "kept"}, durable=True)
        deleted = client.patch("agent:main:gone", {"label": "x"}, durable=True)
        client.delete("agent:main:gone", durable=True)
    daemon.kill()
    assert not daemon.store_path.exists()  # nothing but the journal was written
    daemon.start()
    with daemon.client() as client:
        session = client.get("agent:main:durable")
        assert session is not None and session.data == durable.data
        assert session.revision == durable.revision
        assert client.get("agent:main:gone") is None
    assert deleted.data["label"] == "x"


def test_revisions_stay_valid_across_restarts(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        before = client.patch("agent:main:k", {"label": "a"})
    daemon.restart()
    with daemon.client() as client:
        after = client.patch("agent:main:k", {"label": "b"}, if_revision=before.revision)
        assert after.data["label"] == "b"


def test_debounced_mode_durable_write_survives_kill_9(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon(
        {
            "persistence": {
                "durability": "debounced",
                "flush_delay_s": 60.0,
                "flush_max_delay_s": 60.0,
            }
        }
    )
    daemon.start()
    with daemon.client() as client:
        written = client.patch("agent:main:k", {"label": "durable"}, durable=True)
    daemon.kill()
    assert json.loads(daemon.store_path.read_text()) == {"agent:main:k": written.data}
    assert not list(daemon.store_path.parent.glob("*.journal.*"))


def test_second_daemon_on_the_same_state_dir_fails_clearly(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    first = make_daemon().start()
    with first.client() as client:
        client.patch("agent:main:k", {"label": "first"})
    second = make_daemon()
    second.state_dir = first.state_dir  # same state, its own socket
    second.start(wait=False)
    assert second.process is not None
    assert second.process.wait(30) == 75
    assert "already serving the state directory" in second.log()
    with first.client() as client:
        session = client.get("agent:main:k")
        assert session is not None and session.data["label"] == "first"
        client.patch("agent:main:k", {"label": "still serving"})
    assert first.stop() == 0


def test_second_daemon_on_the_same_socket_fails_clearly(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    first = make_daemon().start()
    second = make_daemon()
    second.socket_path = first.socket_path  # its own state, the same socket
    second.start(wait=False)
    assert second.process is not None
    assert second.process.wait(30) == 75
    assert "another process is listening" in second.log()
    with first.client() as client:
        assert client.hello().server == "sessiond"
