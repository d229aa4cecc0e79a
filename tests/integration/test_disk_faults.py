"""Disk faults, produced for real (a full tmpfs, or a file-size limit where mounting is not
allowed): reads keep working, accepted writes stay in memory, durable writes fail with
``unavailable``, the fault shows in stats, the log and the systemd status line, and once
the disk works again everything is written out — nothing lost."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sessiond_client import Client, UnavailableError
from tests.support.daemon import DaemonProcess
from tests.support.diskfault import DiskFault

FAST_RETRY = {"retry_initial_s": 0.1, "retry_max_s": 0.5}
BLOB = "x" * 20_000  # more than the free room left in the last allocated page of a file


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def store_stats(client: Client) -> dict[str, Any]:
    stats: dict[str, Any] = client.stats()["stores"]["main"]
    return stats


@pytest.fixture
def notify_socket(short_tmp: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(short_tmp / "notify"))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def wait_for_status(sock: socket.socket, text: str, timeout_s: float = 20.0) -> str:
    """The first ``STATUS=`` line sent to the notify socket that contains ``text``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            continue
        for line in message.splitlines():
            if line.startswith("STATUS=") and text in line:
                return line
    raise TimeoutError(f"no STATUS line containing {text!r}")


def faulty_daemon(
    make_daemon: Callable[..., DaemonProcess],
    persistence: dict[str, Any],
    env: dict[str, str],
    kind: str | None = None,
) -> tuple[DaemonProcess, DiskFault]:
    daemon = make_daemon({"persistence": {**FAST_RETRY, **persistence}}, env=env)
    fault = DiskFault(daemon.state_dir, kind)
    daemon.wrapper = fault.wrapper
    daemon.start()
    fault.attach(daemon.pid)
    return daemon, fault


@pytest.mark.parametrize("kind", ["tmpfs", "rlimit"])
@pytest.mark.parametrize("mode", ["journal", "debounced"])
def test_full_disk_keeps_serving_and_loses_nothing(
    make_daemon: Callable[..., DaemonProcess], notify_socket: socket.socket, mode: str, kind: str
) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.getsockname()}
    daemon, fault = faulty_daemon(make_daemon, {"durability": mode}, env, kind)
    assert kind == "tmpfs" or fault.kind == "rlimit"  # tmpfs falls back where mounting fails
    try:
        with daemon.client() as client:
            client.patch("agent:main:before", {"label": "a"}, durable=True)
            fault.break_disk()
            client.patch("agent:main:during", {"label": "b", "blob": BLOB})
            with pytest.raises(UnavailableError, match="in memory"):
                client.patch(
                    "agent:main:durable-during", {"label": "c", "blob": BLOB}, durable=True
                )
            wait_for(lambda: store_stats(client)["failing"])
            stats = store_stats(client)
            assert stats["flush_failures"] >= 1 or mode == "journal"
            assert client.get("agent:main:during") is not None
            assert client.get("agent:main:durable-during") is not None
            wait_for_status(notify_socket, "persistence failing")
            if fault.kind == "tmpfs":
                assert "No space left on device" in stats["last_error"]
                assert "No space left on device" in daemon.log()
            fault.repair_disk()
            wait_for(lambda: not store_stats(client)["failing"])
            client.patch("agent:main:after", {"label": "d"}, durable=True)
        assert daemon.stop() == 0
        daemon.start()
        with daemon.client() as client:
            keys = {s.key for s in client.list().items}
        assert keys == {f"agent:main:{k}" for k in ("before", "during", "durable-during", "after")}
    finally:
        daemon.ensure_stopped()
        fault.close()


def test_refuse_writes_while_failing(make_daemon: Callable[..., DaemonProcess]) -> None:
    persistence = {"durability": "journal", "refuse_writes_when_failing": True}
    daemon, fault = faulty_daemon(make_daemon, persistence, {})
    try:
        with daemon.client() as client:
            client.patch("agent:main:k", {"label": "a"})
            fault.break_disk()
            client.patch("agent:main:k", {"label": "b", "blob": BLOB})  # its journal write fails
            wait_for(lambda: store_stats(client)["failing"])
            with pytest.raises(UnavailableError, match="refused"):
                client.patch("agent:main:k", {"label": "c"})
            session = client.get("agent:main:k")
            assert session is not None and session.data["label"] == "b"
            fault.repair_disk()
            wait_for(lambda: not store_stats(client)["failing"])
            assert client.patch("agent:main:k", {"label": "d"}).data["label"] == "d"
    finally:
        daemon.ensure_stopped()
        fault.close()


def test_a_failed_final_flush_says_truthfully_what_is_lost(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon, fault = faulty_daemon(make_daemon, {"durability": "journal"}, {})
    try:
        with daemon.client() as client:
            client.patch("agent:main:k", {"label": "a"}, durable=True)
            fault.break_disk()
            client.patch("agent:main:k", {"label": "b", "blob": BLOB})  # journal append fails
            wait_for(lambda: store_stats(client)["failing"])
        assert daemon.stop() == 1
        log = daemon.log()
        assert "in neither the store file nor a synced journal" in log
        assert "the journal holds every change" not in log
    finally:
        daemon.ensure_stopped()
        fault.close()
