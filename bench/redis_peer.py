"""Redis as a benchmark peer: a private redis-server and redis-py clients. Does I/O.

What a user would pick instead of sessiond: each entry stored as a JSON string under its
session key on a ``redis-server`` (the distribution's package) reached over a Unix socket.

- Server: started per store in its own temp directory with its own config: Unix socket only
  (``port 0``), ``appendonly yes`` with ``appendfsync`` ``everysec`` or ``always`` (the
  contender's parameter), RDB snapshots off (``save ""``) and automatic AOF rewrites off, so
  no fork runs during a timed window. The AOF append (and, with ``always``, its fsync before
  the reply) is the persistence cost that is measured.
- ``get``: ``GET`` + ``json.loads``.
- ``patch``: one Lua script (``register_script`` → ``EVALSHA``) doing the read-modify-write on
  the server: ``cjson.decode`` the entry, merge the patch (a JSON ``null`` deletes a field),
  keep ``sessionId`` (or take the fresh uuid passed as ARGV), ``updatedAt = max(old, patch,
  now)`` with ``now`` passed as ARGV, ``cjson.encode``, ``SET``, return the JSON, which the
  client ``json.loads``. cjson writes numbers with 14 significant digits and an empty JSON
  array back as ``{}``; neither occurs in the benchmark entries.
- ``update_with``: optimistic ``WATCH``/``MULTI``/``EXEC`` retried on conflict (counted as
  ``watch_conflicts``), the Redis way to run a client-side function safely.
- In-flight workloads: redis-py has no automatic pipelining, so :class:`AsyncRedisOps`
  coalesces the calls of concurrent coroutines into one ``pipeline(transaction=False)`` per
  event-loop turn on ONE connection (what ioredis's ``enableAutoPipelining`` does). Each call's
  latency runs from its own submission to its own reply.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import redis
import redis.asyncio
import redis.utils
from redis.exceptions import BusyLoadingError, WatchError

from bench.contender import Contender, LoadResult, PatchFn
from bench.entries import iter_store
from bench.original_store import merge_entry, now_ms
from bench.procs import ServerProcess, rss_bytes

__all__ = [
    "PATCH_LUA",
    "AsyncRedisOps",
    "RedisContender",
    "RedisFactory",
    "RedisOps",
    "RedisServer",
]

READY_TIMEOUT_S: Final = 60.0
LOAD_BATCH: Final = 1000

PATCH_LUA: Final = """
local current = redis.call('GET', KEYS[1])
local entry = {}
if current then entry = cjson.decode(current) end
local patch = cjson.decode(ARGV[1])
local old_id = entry['sessionId']
local old_at = tonumber(entry['updatedAt']) or 0
local patch_at = tonumber(patch['updatedAt']) or 0
for field, value in pairs(patch) do
  if value == cjson.null then entry[field] = nil else entry[field] = value end
end
if entry['sessionId'] == nil then
  if old_id ~= nil and old_id ~= cjson.null then entry['sessionId'] = old_id
  else entry['sessionId'] = ARGV[3] end
end
entry['updatedAt'] = math.max(old_at, patch_at, tonumber(ARGV[2]))
local encoded = cjson.encode(entry)
redis.call('SET', KEYS[1], encoded)
return encoded
"""


def _config_text(work_dir: Path, appendfsync: str) -> str:
    return "\n".join(
        [
            "port 0",
            f"unixsocket {work_dir / 'redis.sock'}",
            "unixsocketperm 700",
            f'dir "{work_dir}"',
            "daemonize no",
            'save ""',
            "appendonly yes",
            f"appendfsync {appendfsync}",
            "auto-aof-rewrite-percentage 0",
            "databases 1",
            'logfile ""',
            "",
        ]
    )


class RedisServer:
    """One redis-server process with its config, data and socket in ``work_dir``."""

    def __init__(self, work_dir: Path, appendfsync: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: apt-get install -y redis-server")
        self.binary = binary
        self.work_dir = work_dir
        self.socket_path = work_dir / "redis.sock"
        self.config_path = work_dir / "redis.conf"
        self.config_path.write_text(_config_text(work_dir, appendfsync))
        self._process: ServerProcess | None = None

    def start(self) -> float:
        """Start and wait until commands are served (AOF loaded); returns seconds taken."""
        started = time.perf_counter()
        self._process = ServerProcess(
            [self.binary, str(self.config_path)], self.work_dir / "redis.log", cwd=self.work_dir
        )
        self._process.wait_for_socket(self.socket_path, READY_TIMEOUT_S)
        with self.client() as client:
            while True:
                try:
                    client.ping()
                    break
                except BusyLoadingError:
                    time.sleep(0.005)
        return time.perf_counter() - started

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket_path))

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None


def load_store(server: RedisServer, store_size: int) -> None:
    """SET every entry of the benchmark store, pipelined in batches."""
    with server.client() as client:
        pipe = client.pipeline(transaction=False)
        for index, (key, entry) in enumerate(iter_store(store_size), start=1):
            pipe.set(key, json.dumps(entry, separators=(",", ":")))
            if index % LOAD_BATCH == 0:
                pipe.execute()
        pipe.execute()


def _decode(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    entry: dict[str, Any] = json.loads(raw)
    return entry


def _patch_args(patch: dict[str, Any]) -> list[str | int]:
    return [json.dumps(patch, separators=(",", ":")), now_ms(), str(uuid.uuid4())]


class RedisOps:
    """Blocking redis-py client (SyncOps)."""

    def __init__(self, socket_path: Path) -> None:
        self._client = redis.Redis(unix_socket_path=str(socket_path))
        self._patch_script = self._client.register_script(PATCH_LUA)
        self._watch_conflicts = 0

    def get(self, key: str) -> dict[str, Any] | None:
        return _decode(self._client.get(key))

    read_entry = get

    def patch(self, key: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        return _decode(self._patch_script(keys=[key], args=_patch_args(patch)))

    def update_with(self, key: str, fn: PatchFn) -> dict[str, Any] | None:
        with self._client.pipeline() as pipe:
            while True:
                try:
                    return self._try_update(pipe, key, fn)
                except WatchError:
                    self._watch_conflicts += 1

    @staticmethod
    def _try_update(pipe: Any, key: str, fn: PatchFn) -> dict[str, Any] | None:
        pipe.watch(key)
        existing = _decode(pipe.get(key))
        if existing is None:
            pipe.unwatch()
            return None
        merged = merge_entry(existing, fn(existing), now_ms())
        pipe.multi()
        pipe.set(key, json.dumps(merged, separators=(",", ":")))
        pipe.execute()
        return merged

    def counters(self) -> dict[str, int]:
        return {"watch_conflicts": self._watch_conflicts}

    def close(self) -> None:
        self._client.close()


class AsyncRedisOps:
    """redis.asyncio on one connection; concurrent calls are auto-pipelined (AsyncOps)."""

    def __init__(self, client: redis.asyncio.Redis, patch_sha: str) -> None:
        self._client = client
        self._patch_sha = patch_sha
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._draining = False

    @classmethod
    async def connect(cls, socket_path: Path) -> AsyncRedisOps:
        client = redis.asyncio.Redis(unix_socket_path=str(socket_path))
        sha: Any = await client.script_load(PATCH_LUA)  # bytes: no decode_responses
        return cls(client, sha.decode() if isinstance(sha, bytes) else sha)

    async def get(self, key: str) -> dict[str, Any] | None:
        return _decode(await self._call(("GET", key)))

    async def patch(self, key: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        command = ("EVALSHA", self._patch_sha, 1, key, *_patch_args(patch))
        return _decode(await self._call(command))

    def _call(self, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._send_batch(batch)
        finally:
            self._draining = False

    async def _send_batch(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for command, _ in batch:
            pipe.execute_command(*command)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            replies = [exc] * len(batch)
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True)
class RedisFactory:
    socket_path: Path

    def open_sync(self) -> RedisOps:
        return RedisOps(self.socket_path)

    async def open_async(self) -> AsyncRedisOps:
        return await AsyncRedisOps.connect(self.socket_path)


ALL_WORKLOADS: Final = frozenset(
    {
        "get_seq",
        "patch_seq",
        "get_async64",
        "patch_async64",
        "patch_8proc",
        "counter_8proc",
        "get_under_writes",
    }
)
WRITE_WORKLOADS: Final = frozenset({"patch_seq", "patch_async64", "patch_8proc"})


class RedisContender(Contender):
    """redis-server + redis-py; ``appendfsync`` is ``everysec`` or ``always``."""

    family = "redis"

    def __init__(self, appendfsync: str, workloads: frozenset[str] = ALL_WORKLOADS) -> None:
        if appendfsync not in {"everysec", "always", "no"}:
            raise ValueError(f"appendfsync {appendfsync!r}")
        self.appendfsync = appendfsync
        self.name = f"redis-{appendfsync}"
        self.description = f"redis-server via redis-py, Unix socket, AOF appendfsync {appendfsync}"
        self.workloads = workloads
        self._server: RedisServer | None = None

    def setup(self, store_size: int, work_dir: Path) -> RedisFactory:
        self._server = RedisServer(work_dir, self.appendfsync)
        self._server.start()
        load_store(self._server, store_size)
        return RedisFactory(self._server.socket_path)

    def teardown(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def server_pids(self) -> list[int]:
        return [] if self._server is None else [self._server.pid]

    def measure_load(self, store_size: int, work_dir: Path) -> LoadResult:
        """Fill, stop, restart on the AOF: time to serve again, RSS growth per entry."""
        server = RedisServer(work_dir, self.appendfsync)
        try:
            server.start()
            empty_rss = rss_bytes(server.pid)
            load_store(server, store_size)
            server.stop()
            load_time_s = server.start()
            with server.client() as client:
                used_memory = int(client.info("memory")["used_memory"])
            loaded_rss = rss_bytes(server.pid)
        finally:
            server.stop()
        return LoadResult(
            load_time_s=load_time_s,
            bytes_per_entry=(loaded_rss - empty_rss) / max(1, store_size),
            details={"used_memory_bytes": used_memory, "rss_bytes": loaded_rss},
        )

    def info(self) -> dict[str, Any]:
        version = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        return {
            "description": self.description,
            "server": version,
            "redis_py": redis.__version__,
            "hiredis_parser": bool(redis.utils.HIREDIS_AVAILABLE),
            "appendfsync": self.appendfsync,
            "rdb_saves": 'off (save ""), auto AOF rewrite off',
        }
