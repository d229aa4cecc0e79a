"""What only the Redis backend has: durability as the server can promise it (a kill -9
under ``appendfsync always`` or with ``WAITAOF`` loses no durable write; without an AOF
``durable=True`` is refused, nothing written), the eviction-policy guard, the
``EVALSHA`` fallback where ``FUNCTION`` is unavailable, reloading code the server lost,
surviving a server restart, and a clear error when no server answers. Each test runs
its own real server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from sessiond_client import (
    Client,
    DaemonUnavailableError,
    RetryPolicy,
    UnavailableError,
)
from tests.support.redis_server import RedisServer

StartServer = Callable[..., RedisServer]


def _write_durably_until_killed(server: RedisServer) -> list[tuple[str, int]]:
    """Four threads write durable patches; the server is killed -9 mid-stream. Returns
    every write that was acknowledged."""
    acknowledged: list[tuple[str, int]] = []
    lock = threading.Lock()
    retry = RetryPolicy(reconnect_timeout_s=0.2)

    def writer(index: int) -> None:
        with Client(server.url(), retry=retry, timeout_s=5.0) as client:
            for step in range(10_000):
                try:
                    client.patch(f"w{index}", {"inputTokens": step}, durable=True)
                except Exception:
                    return
                with lock:
                    acknowledged.append((f"w{index}", step))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    while True:
        with lock:
            if len(acknowledged) >= 200:
                break
        threads[0].join(0.01)
    server.kill()
    for thread in threads:
        thread.join(30)
    return acknowledged


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("kind", "appendfsync"), [("redis", "always"), ("valkey", "everysec")])
def test_a_kill_9_loses_no_durable_write(
    own_server: StartServer, kind: str, appendfsync: str
) -> None:
    server = own_server(kind, appendfsync=appendfsync)
    acknowledged = _write_durably_until_killed(server)
    server.start()
    with Client(server.url()) as client:
        last = dict(acknowledged)
        for key, step in last.items():
            stored = client.get(key)
            assert stored is not None, key
            assert stored.data["inputTokens"] >= step


def test_durable_writes_are_refused_where_the_server_cannot_promise_them(
    own_server: StartServer,
) -> None:
    for server in (
        own_server("redis", appendfsync=None),
        own_server("redis", appendfsync="everysec"),
    ):
        with Client(server.url()) as client:
            with pytest.raises(UnavailableError, match="durable writes are not possible"):
                client.patch("k", {"label": "x"}, durable=True)
            assert client.get("k") is None
            with pytest.raises(UnavailableError):
                client.flush()
            assert client.patch("k", {"label": "x"}).data["label"] == "x"


def test_an_evicting_memory_policy_is_refused_unless_allowed(own_server: StartServer) -> None:
    server = own_server("redis", extra_args=["--maxmemory-policy", "allkeys-lru"])
    with Client(server.url()) as client, pytest.raises(UnavailableError, match="allow_eviction"):
        client.get("k")
    with Client(server.url(allow_eviction="yes")) as client:
        assert client.patch("k", {}).data["sessionId"]
        assert client.stats()["maxmemory_policy"] == "allkeys-lru"


@pytest.mark.parametrize("kind", ["redis", "valkey"])
def test_without_functions_the_same_code_runs_with_evalsha(
    own_server: StartServer, kind: str
) -> None:
    server = own_server(kind, extra_args=["--rename-command", "FUNCTION", '""'])
    with Client(server.url()) as client:
        first = client.patch("k", {"inputTokens": 1})
        with server.raw() as raw:
            raw.script_flush()  # NOSCRIPT next time: loaded again
        second = client.update_with("k", lambda s: {"inputTokens": s.data["inputTokens"] + 1})
        assert second is not None and second.data["inputTokens"] == 2
        assert client.list().items[0].revision == second.revision
        assert first.seq == 1 and second.seq == 2
        with server.raw() as raw:
            assert raw.execute_command("SCRIPT", "EXISTS", "0" * 40) == [0]


def test_functions_the_server_lost_are_loaded_again(own_server: StartServer) -> None:
    server = own_server("redis")
    with Client(server.url()) as client:
        client.patch("k", {})
        with server.raw() as raw:
            raw.execute_command("FUNCTION", "FLUSH")
        assert client.patch("k", {"label": "again"}).data["label"] == "again"


@pytest.mark.timeout(60)
def test_calls_ride_out_a_server_restart(own_server: StartServer) -> None:
    server = own_server("redis", appendfsync="always")
    with Client(server.url(), retry=RetryPolicy(reconnect_timeout_s=10.0)) as client:
        client.patch("k", {"inputTokens": 1}, durable=True)
        server.stop()
        restarter = threading.Timer(0.3, server.start)
        restarter.start()
        updated = client.update_with("k", lambda s: {"inputTokens": s.data["inputTokens"] + 1})
        restarter.join()
        assert updated is not None and updated.data["inputTokens"] == 2


def test_no_server_is_daemon_unavailable_quickly(short_tmp: object) -> None:
    retry = RetryPolicy(first_connect_timeout_s=0.3)
    target = f"redis+unix://{short_tmp}/none.sock"
    with (
        Client(target, retry=retry) as client,
        pytest.raises(DaemonUnavailableError, match="cannot connect"),
    ):
        client.get("k")
