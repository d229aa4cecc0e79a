"""The clients' lifecycle: closing fails the calls in flight at once (ClientClosedError, not
retried), closing while connecting leaks nothing, a client that has never reached the
daemon fails within about a second, and replies are bounded by what the daemon announces
in ``hello`` rather than by a fixed size."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sessiond_client import (
    AsyncClient,
    Client,
    ClientClosedError,
    DaemonUnavailableError,
    RetryPolicy,
)
from tests.support.daemon import DaemonProcess


class SilentServer:
    """Accepts connections and reads, but never answers."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent(short_tmp: Path) -> Iterator[SilentServer]:
    server = SilentServer(short_tmp / "silent.sock")
    yield server
    server.close()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_close_fails_calls_in_flight_at_once(silent: SilentServer) -> None:
    client = Client(silent.path, timeout_s=30.0)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.get("k")
        except BaseException as error:
            outcome.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.2)
    closed_at = time.monotonic()
    client.close()
    caller.join(5)
    assert time.monotonic() - closed_at < 1.0
    assert len(outcome) == 1 and isinstance(outcome[0], ClientClosedError)
    with pytest.raises(ClientClosedError):
        client.get("k")


async def test_aclose_fails_calls_in_flight_at_once(silent: SilentServer) -> None:
    client = AsyncClient(silent.path, timeout_s=30.0)
    call = asyncio.ensure_future(client.get("k"))
    await asyncio.sleep(0.2)
    closed_at = time.monotonic()
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await asyncio.wait_for(call, 5)
    assert time.monotonic() - closed_at < 1.0


async def test_aclose_while_connecting_leaks_nothing(short_tmp: Path) -> None:
    before = open_descriptors()
    tasks_before = asyncio.all_tasks()
    retry = RetryPolicy(first_connect_timeout_s=30.0)
    client = AsyncClient(str(short_tmp / "nobody.sock"), retry=retry)
    call = asyncio.ensure_future(client.get("k"))
    await asyncio.sleep(0.3)  # the client keeps trying to connect
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await asyncio.wait_for(call, 5)
    await asyncio.sleep(0.05)
    assert open_descriptors() == before
    assert asyncio.all_tasks() == tasks_before


def test_a_client_that_never_reached_the_daemon_fails_within_a_second(short_tmp: Path) -> None:
    started = time.monotonic()
    with (
        Client(str(short_tmp / "nobody.sock")) as client,
        pytest.raises(DaemonUnavailableError, match="cannot connect"),
    ):
        client.get("k")
    assert time.monotonic() - started < 2.0


async def test_an_async_client_that_never_reached_the_daemon_fails_within_a_second(
    short_tmp: Path,
) -> None:
    started = time.monotonic()
    async with AsyncClient(str(short_tmp / "nobody.sock")) as client:
        with pytest.raises(DaemonUnavailableError):
            await client.get("k")
    assert time.monotonic() - started < 2.0


def test_replies_up_to_the_announced_limit_are_accepted(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    limits = {"max_reply_bytes": 40 << 20, "max_entry_bytes": 1 << 20}
    daemon = make_daemon({"limits": limits}).start()
    blob = "y" * 900_000
    with daemon.client(timeout_s=30.0) as client:
        for n in range(25):
            client.patch(f"agent:main:big{n}", {"label": "big", "blob": blob})
        page = client.list(limit=25)  # ~22 MB: more than the old fixed 16 MiB
        assert len(page.items) == 25
        assert client.server_info is not None and client.server_info.max_reply_bytes == 40 << 20
