"""The interface every benchmark contender implements. Pure: no I/O here (implementations do).

A :class:`Contender` lives in the orchestrating process. ``setup`` prepares a store of a given
size (writes files, starts its server process) and returns a :class:`ClientFactory`: a small
picklable object that the spawned client processes use to open their own connections
(:class:`SyncOps` for sequential clients, :class:`AsyncOps` for in-flight ones). Everything
timed runs in those client processes, never in the orchestrator.

Operation semantics every contender must provide (so the numbers compare like with like):

- ``get(key)``: the entry, decoded to Python objects as a caller would use it, or None.
- ``patch(key, patch)``: merge (``sessionId`` kept, ``updatedAt = max(old, patch, now)``,
  ``{...existing, ...patch}``), creating the entry if missing; returns the new entry.
- ``update_with(key, fn)``: read-modify-write that is safe across processes: ``fn(entry)``
  returns a patch that is merged; no update may be lost. Returns the new entry or None when
  the key does not exist.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "AsyncOps",
    "ClientFactory",
    "Contender",
    "LoadResult",
    "PatchFn",
    "SyncOps",
    "Unsupported",
]

PatchFn = Callable[[dict[str, Any]], dict[str, Any]]
"""``update_with`` callback: the current entry (as a dict) in, a patch out."""


class Unsupported(Exception):
    """A contender cannot run a workload (the cell is reported as n/a)."""


class SyncOps(Protocol):
    """A blocking client, used by one thread."""

    def get(self, key: str) -> object: ...

    def patch(self, key: str, patch: dict[str, Any]) -> object: ...

    def update_with(self, key: str, fn: PatchFn) -> object: ...

    def read_entry(self, key: str) -> dict[str, Any] | None:
        """Untimed helper for checks (the lost-update count): the entry as a plain dict."""
        ...

    def counters(self) -> dict[str, int]:
        """Contender-specific event counts since open (retries, conflicts, evictions...)."""
        ...

    def close(self) -> None: ...


class AsyncOps(Protocol):
    """An asyncio client on ONE connection that many coroutines use at once (pipelined)."""

    def get(self, key: str) -> Awaitable[object]: ...

    def patch(self, key: str, patch: dict[str, Any]) -> Awaitable[object]: ...

    async def aclose(self) -> None: ...


class ClientFactory(Protocol):
    """Picklable recipe for clients: sent to each spawned client process."""

    def open_sync(self) -> SyncOps: ...

    async def open_async(self) -> AsyncOps:
        """Raise :class:`Unsupported` when the contender has no async client."""
        ...


@dataclass(frozen=True)
class LoadResult:
    """Cold start: time until the store answers, and resident memory it costs per entry."""

    load_time_s: float
    bytes_per_entry: float | None
    details: dict[str, Any] = field(default_factory=dict)


class Contender(abc.ABC):
    """One thing being measured: a store implementation plus its configuration.

    Subclasses set ``name`` (unique, shown in the table), ``family`` (``--only`` selects by
    name or family) and ``workloads`` (names of the workloads it can run; others are n/a).
    ``size_independent`` contenders (the floor) run at the first store size only and their
    numbers are reused, marked, at the other sizes.
    """

    name: str = ""
    family: str = ""
    description: str = ""
    workloads: frozenset[str] = frozenset()
    size_independent: bool = False

    @abc.abstractmethod
    def setup(self, store_size: int, work_dir: Path) -> ClientFactory:
        """Create a store of ``store_size`` entries (``bench.entries.iter_store``) and start
        whatever serves it. ``work_dir`` is a fresh directory owned by this contender."""

    @abc.abstractmethod
    def teardown(self) -> None:
        """Stop processes started by ``setup``; leave nothing running. Must be idempotent."""

    def quiesce(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Called before every repetition, untimed: let work left by the previous cell finish
        (a pending flush), so one cell's writes are not paid for by the next cell."""

    def server_pids(self) -> list[int]:
        """Processes serving the store now (pinned per workload by ``bench.placement``)."""
        return []

    def measure_load(self, store_size: int, work_dir: Path) -> LoadResult | None:
        """Cold-start cost of a store of ``store_size`` entries; None when not applicable.

        Called with a fresh ``work_dir`` and without ``setup`` (the contender builds what it
        needs and cleans up before returning)."""
        return None

    def info(self) -> dict[str, Any]:
        """Versions and configuration, written to the JSON results."""
        return {"description": self.description}
