"""sessiond as a benchmark contender: the daemon as a process, the real clients. Does I/O.

Written against the announced API (adjust here when it settles):

- daemon: ``python -m sessiond serve --state-dir DIR --socket PATH [--config FILE]`` with
  the bench's own interpreter and this checkout first on ``PYTHONPATH`` (so the code under
  test is the working tree, never a stale installed copy), ready when the socket accepts;
  stores may load lazily, so ``setup`` issues one ``get`` before any timed window;
- clients: ``from sessiond_client import Client, AsyncClient``; ``Client(socket_path)`` is a
  context manager with ``get(key) -> Session | None`` (``.data`` the stored object,
  ``.entry`` its typed view, ``.revision``), ``patch(key, patch, durable=False) -> Session``
  and ``update_with(key, fn)`` where ``fn`` gets the ``Session``;
  ``AsyncClient`` has the same methods as coroutines.

``get``/``patch`` return the client's typed ``Session`` unconverted: decoding into it is part
of the client's work, just as ``json.loads`` is part of the Redis peer's.

The client package is imported dynamically while its API is in flux (mypy sees ``Any``).
When ``sessiond_client`` is not installed, ``client/`` of this checkout is put on the path.

REGISTRATION POINT: :func:`register_sessiond` registers every sessiond contender; the
workload names are in ``bench.workloads.WORKLOADS``. Durable writes, 8 processes, the async
client, ``get`` p99 during flushes (``get_under_writes`` at 100k) and load time / memory per
entry (``measure_load``) are all covered by the two contenders below.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from bench.contender import Contender, LoadResult, PatchFn
from bench.entries import iter_store, session_key
from bench.original_store import STORE_RELATIVE_PATH, write_store_file
from bench.procs import REPO_ROOT, ServerProcess, rss_bytes

__all__ = [
    "SessiondContender",
    "SessiondFactory",
    "register_sessiond",
    "unavailable_reason",
]

CLIENT_DIR: Final = REPO_ROOT / "client"
READY_TIMEOUT_S: Final = 120.0
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


def register_sessiond(register: Callable[[Contender], None]) -> None:
    """Register the sessiond contenders. Called by ``bench.registry.build_registry``."""
    register(SessiondContender("sessiond"))
    register(SessiondContender("sessiond-durable", durable=True, workloads=WRITE_WORKLOADS))
    # Snapshots as often as the debounce allows (every ~1 s under writes) instead of the
    # journal mode's 5 s spacing: get latency while the store is continuously flushed.
    register(
        SessiondContender(
            "sessiond-flushing",
            config_toml="[persistence]\njournal_snapshot_interval_s = 0.0\n",
            workloads=frozenset({"get_seq", "get_under_writes"}),
        )
    )


def _client_module() -> Any:
    if importlib.util.find_spec("sessiond_client") is None and CLIENT_DIR.is_dir():
        sys.path.insert(0, str(CLIENT_DIR))
    return importlib.import_module("sessiond_client")


def daemon_command() -> list[str]:
    return [sys.executable, "-m", "sessiond"]


def _daemon_env() -> dict[str, str]:
    """The checkout's packages first, so an uninstalled tree runs as it is."""
    paths = [str(REPO_ROOT), str(CLIENT_DIR), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}


def unavailable_reason() -> str | None:
    """Why sessiond cannot be benchmarked in this checkout, or None when it can."""
    try:
        client = _client_module()
    except Exception as exc:  # a half-edited checkout raises anything at import time
        return f"sessiond_client not importable: {exc!r}"
    missing = [name for name in ("Client", "AsyncClient") if not hasattr(client, name)]
    if missing:
        return f"sessiond_client has no {', '.join(missing)} yet"
    if importlib.util.find_spec("sessiond.__main__") is None:
        return "no sessiond.__main__ (python -m sessiond)"
    return None


def msgspec_decode_s(path: Path) -> float:
    """Best of 3: how long msgspec alone takes to decode the store file into Python objects
    (the yardstick for the daemon's load time)."""
    data = path.read_bytes()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        msgspec.json.decode(data)
        best = min(best, time.perf_counter() - started)
    return best


def _session_dict(session: Any) -> dict[str, Any]:
    """The stored JSON object of a ``Session`` (``.data``; else the typed view's dict)."""
    data = getattr(session, "data", None)
    if isinstance(data, dict):
        return data
    converted: dict[str, Any] = session.entry.to_dict()
    return converted


class SessiondOps:
    """Blocking sessiond client (SyncOps)."""

    def __init__(self, socket_path: Path, durable: bool) -> None:
        self._stack = contextlib.ExitStack()
        self._client = self._stack.enter_context(_client_module().Client(str(socket_path)))
        self._durable = durable

    def get(self, key: str) -> object:
        return self._client.get(key)

    def patch(self, key: str, patch: dict[str, Any]) -> object:
        return self._client.patch(key, patch, durable=self._durable)

    def update_with(self, key: str, fn: PatchFn) -> object:
        return self._client.update_with(key, lambda session: fn(_session_dict(session)))

    def read_entry(self, key: str) -> dict[str, Any] | None:
        session = self._client.get(key)
        return None if session is None else _session_dict(session)

    def counters(self) -> dict[str, int]:
        return {}

    def flush(self) -> None:
        self._client.flush()

    def close(self) -> None:
        self._stack.close()


class AsyncSessiondOps:
    """sessiond's AsyncClient: one pipelined connection (AsyncOps)."""

    def __init__(self, stack: contextlib.AsyncExitStack, client: Any, durable: bool) -> None:
        self._stack = stack
        self._client = client
        self._durable = durable

    @classmethod
    async def connect(cls, socket_path: Path, durable: bool) -> AsyncSessiondOps:
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(_client_module().AsyncClient(str(socket_path)))
        return cls(stack, client, durable)

    async def get(self, key: str) -> object:
        return await self._client.get(key)

    async def patch(self, key: str, patch: dict[str, Any]) -> object:
        return await self._client.patch(key, patch, durable=self._durable)

    async def aclose(self) -> None:
        await self._stack.aclose()


@dataclass(frozen=True)
class SessiondFactory:
    socket_path: Path
    durable: bool = False

    def open_sync(self) -> SessiondOps:
        return SessiondOps(self.socket_path, self.durable)

    async def open_async(self) -> AsyncSessiondOps:
        return await AsyncSessiondOps.connect(self.socket_path, self.durable)


class SessiondContender(Contender):
    """One sessiond daemon per store; ``durable`` makes every patch wait for its flush."""

    family = "sessiond"

    def __init__(
        self,
        name: str,
        *,
        durable: bool = False,
        config_toml: str | None = None,
        workloads: frozenset[str] = ALL_WORKLOADS,
    ) -> None:
        self.name = name
        self.durable = durable
        self.config_toml = config_toml
        self.workloads = workloads
        self.description = "sessiond daemon" + (", durable=True writes" if durable else "")
        self._daemon: ServerProcess | None = None
        self._factory: SessiondFactory | None = None

    def _start(self, work_dir: Path) -> tuple[ServerProcess, Path]:
        state_dir = work_dir / "state"
        socket_path = work_dir / "sessiond.sock"
        argv = [*daemon_command(), "serve", "--state-dir", str(state_dir)]
        argv += ["--socket", str(socket_path)]
        if self.config_toml is not None:
            config_path = work_dir / "sessiond.toml"
            config_path.write_text(self.config_toml)
            argv += ["--config", str(config_path)]
        daemon = ServerProcess(argv, work_dir / "sessiond.log", cwd=REPO_ROOT, env=_daemon_env())
        daemon.wait_for_socket(socket_path, READY_TIMEOUT_S)
        return daemon, socket_path

    def setup(self, store_size: int, work_dir: Path) -> SessiondFactory:
        write_store_file(work_dir / "state" / STORE_RELATIVE_PATH, dict(iter_store(store_size)))
        self._daemon, socket_path = self._start(work_dir)
        self._factory = SessiondFactory(socket_path, self.durable)
        ops = self._factory.open_sync()
        try:
            ops.get(session_key(0))  # stores load lazily: pay the load outside timed windows
        finally:
            ops.close()
        return self._factory

    def quiesce(self) -> None:
        """Wait for the flush of the previous cell's writes (``flush`` op)."""
        if self._factory is not None:
            ops = self._factory.open_sync()
            try:
                ops.flush()
            finally:
                ops.close()

    def teardown(self) -> None:
        self._factory = None
        if self._daemon is not None:
            self._daemon.stop(timeout_s=60.0)
            self._daemon = None

    def server_pids(self) -> list[int]:
        return [] if self._daemon is None else [self._daemon.pid]

    def measure_load(self, store_size: int, work_dir: Path) -> LoadResult | None:
        """Daemon start to first answered get; RSS over a daemon serving an empty store.

        The baseline is a separate run on an empty state directory, so the number is right
        whether the daemon loads stores eagerly at start or lazily on first use."""
        if self.durable or self.config_toml is not None:
            return None  # a variant of the plain contender: the same daemon and store
        empty_rss, empty_s = self._timed_first_get(work_dir / "empty")
        loaded_dir = work_dir / "loaded"
        store_file = loaded_dir / "state" / STORE_RELATIVE_PATH
        write_store_file(store_file, dict(iter_store(store_size)))
        loaded_rss, loaded_s = self._timed_first_get(loaded_dir)
        file_bytes = store_file.stat().st_size
        return LoadResult(
            # The daemon's own start (interpreter, imports) is the empty run's time.
            load_time_s=max(0.0, loaded_s - empty_s),
            bytes_per_entry=(loaded_rss - empty_rss) / max(1, store_size),
            details={
                "rss_bytes": loaded_rss,
                "empty_rss_bytes": empty_rss,
                "file_bytes": file_bytes,
                "msgspec_decode_s": msgspec_decode_s(store_file),
                "rss_over_file": (loaded_rss - empty_rss) / max(1, file_bytes),
            },
        )

    def _timed_first_get(self, work_dir: Path) -> tuple[int, float]:
        """Start a daemon on ``work_dir``, answer one get: (its RSS then, seconds taken)."""
        work_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        daemon, socket_path = self._start(work_dir)
        try:
            ops = SessiondFactory(socket_path).open_sync()
            try:
                ops.get(session_key(0))
            finally:
                ops.close()
            elapsed_s = time.perf_counter() - started
            return rss_bytes(daemon.pid), elapsed_s
        finally:
            daemon.stop(timeout_s=60.0)

    def info(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "command": daemon_command(),
            "durable": self.durable,
            "config": self.config_toml,
        }
