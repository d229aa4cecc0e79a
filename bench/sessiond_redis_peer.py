"""sessiond over Redis as a benchmark contender: the real sessiond clients with a
``redis+unix://`` target, against a private ``redis-server``. Does I/O.

What it measures is what moving from the daemon to Redis (for bots on several hosts)
costs: every ``patch`` is a read (``HGET`` + the request token, one round trip) then a
compare-and-set function call (one more), with the merge done in the client by the
daemon's own code; ``update_with`` is ``get`` → callback → ``update(if_revision)``, as on
the daemon. The server is the ``redis-everysec`` peer's (``bench.redis_peer.RedisServer``:
AOF ``everysec``, Unix socket), so the raw-Redis and sessiond-over-Redis rows differ
only in what runs on top. The store is loaded through the client (pipelined
``replace``), so its entries have their sessiond layout (hash, index, stream).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.contender import Contender, LoadResult, PatchFn
from bench.entries import iter_store, session_key
from bench.redis_peer import RedisServer
from sessiond_client import AsyncClient, Client, Session

__all__ = ["SessiondRedisContender", "register_sessiond_redis"]

WORKLOADS: Final = frozenset(
    {"get_seq", "patch_seq", "get_async64", "patch_async64", "patch_8proc", "counter_8proc"}
)
LOAD_CONCURRENCY: Final = 256


def _data(session: Session) -> dict[str, Any]:
    data: dict[str, Any] = session.data
    return data


class SessiondRedisOps:
    """The blocking client on a Redis target (SyncOps)."""

    def __init__(self, target: str) -> None:
        self._client = Client(target)

    def get(self, key: str) -> object:
        return self._client.get(key)

    def patch(self, key: str, patch: dict[str, Any]) -> object:
        return self._client.patch(key, patch)

    def update_with(self, key: str, fn: PatchFn) -> object:
        return self._client.update_with(key, lambda session: fn(_data(session)))

    def read_entry(self, key: str) -> dict[str, Any] | None:
        session = self._client.get(key)
        return None if session is None else _data(session)

    def counters(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self._client.close()


class AsyncSessiondRedisOps:
    """The asyncio client on a Redis target (AsyncOps)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def get(self, key: str) -> object:
        return await self._client.get(key)

    async def patch(self, key: str, patch: dict[str, Any]) -> object:
        return await self._client.patch(key, patch)

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True)
class SessiondRedisFactory:
    target: str

    def open_sync(self) -> SessiondRedisOps:
        return SessiondRedisOps(self.target)

    async def open_async(self) -> AsyncSessiondRedisOps:
        return AsyncSessiondRedisOps(AsyncClient(self.target))


async def _load(target: str, store_size: int) -> None:
    async with AsyncClient(target, timeout_s=60.0) as client:
        limit = asyncio.Semaphore(LOAD_CONCURRENCY)

        async def store(key: str, entry: dict[str, Any]) -> None:
            async with limit:
                await client.replace(key, entry)

        await asyncio.gather(*(store(key, entry) for key, entry in iter_store(store_size)))


class SessiondRedisContender(Contender):
    """redis-server (AOF everysec) + sessiond's clients with a ``redis+unix://`` target."""

    family = "sessiond-redis"
    name = "sessiond-redis"
    description = "sessiond clients over Redis (redis+unix://), AOF appendfsync everysec"
    workloads = WORKLOADS

    def __init__(self) -> None:
        self._server: RedisServer | None = None

    def setup(self, store_size: int, work_dir: Path) -> SessiondRedisFactory:
        self._server = RedisServer(work_dir, "everysec")
        self._server.start()
        target = f"redis+unix://{self._server.socket_path}?db=0"
        asyncio.run(_load(target, store_size))
        with contextlib.closing(SessiondRedisOps(target)) as ops:
            ops.get(session_key(0))
        return SessiondRedisFactory(target)

    def teardown(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def server_pids(self) -> list[int]:
        return [] if self._server is None else [self._server.pid]

    def measure_load(self, store_size: int, work_dir: Path) -> LoadResult | None:
        return None  # the server and its AOF are the redis-everysec peer's

    def info(self) -> dict[str, Any]:
        return {"description": self.description, "appendfsync": "everysec"}


def register_sessiond_redis(register: Any) -> None:
    register(SessiondRedisContender())
