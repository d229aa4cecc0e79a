"""Client transport behaviour against peers the test controls: timeouts close the connection
(never reused), cancellation does too, connection-level refusals surface as their error
class, and a missing daemon gives DaemonUnavailableError after the retry budget."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from sessiond_client import (
    AsyncClient,
    BusyError,
    Client,
    DaemonUnavailableError,
    RequestTimeoutError,
    RetryPolicy,
)


class SilentServer:
    """Accepts connections and reads requests, but never answers; counts connections."""

    def __init__(self, path: Path) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(16)
        self.path = str(path)
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()


class RefusingServer(SilentServer):
    """Answers every connection with one connection-level ``busy`` error, then closes."""

    def _accept(self) -> None:
        reply = msgspec.msgpack.encode(
            {"id": None, "ok": False, "error": {"code": "busy", "message": "full"}}
        )
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(connection)
            connection.sendall(struct.pack(">I", len(reply)) + reply)
            connection.close()


@pytest.fixture
def silent(short_tmp: Path) -> Iterator[SilentServer]:
    server = SilentServer(short_tmp / "silent.sock")
    yield server
    server.close()


def test_sync_timeout_closes_the_connection(silent: SilentServer) -> None:
    with Client(silent.path, timeout_s=0.3) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            client.get("k")
        assert time.monotonic() - started < 3.0
        with pytest.raises(RequestTimeoutError):
            client.get("k")
    assert len(silent.accepted) == 2  # the timed-out connection was not reused


async def test_async_timeout_and_cancellation_close_the_connection(silent: SilentServer) -> None:
    async with AsyncClient(silent.path, timeout_s=0.3) as client:
        with pytest.raises(RequestTimeoutError):
            await client.get("k")
        task = asyncio.ensure_future(client.get("k"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(RequestTimeoutError):
            await client.get("k")
    await asyncio.sleep(0.05)
    assert len(silent.accepted) == 3


def test_connection_level_refusal_is_its_error_class(short_tmp: Path) -> None:
    server = RefusingServer(short_tmp / "busy.sock")
    try:
        retry = RetryPolicy(reconnect_timeout_s=0.5)
        with Client(server.path, retry=retry) as client, pytest.raises(BusyError):
            client.get("k")
        assert len(server.accepted) > 1  # busy is retried (with backoff) until the budget
    finally:
        server.close()


def test_missing_daemon_is_unavailable_after_the_retry_budget(short_tmp: Path) -> None:
    retry = RetryPolicy(reconnect_timeout_s=0.3)
    started = time.monotonic()
    with (
        Client(str(short_tmp / "nobody.sock"), retry=retry) as client,
        pytest.raises(DaemonUnavailableError, match="cannot connect"),
    ):
        client.hello()
    assert 0.3 <= time.monotonic() - started < 5.0
