"""What the benchmark measures, and the timed loops that client processes run. Does I/O
(through the contenders' clients) and runs only inside spawned client processes.

A :class:`Workload` names an operation mix and how many client processes / in-flight
requests drive it. :func:`run_worker` is one client process's part of one repetition: open a
client, warm up with a few gets, wait at the start gate (so all processes of a cell start
together), then issue operations back to back until the deadline. An operation already
started at the deadline is finished and counted; the worker's elapsed time runs to the end
of its last operation, so slow operations (a file store at 100k entries) are not cut off.
Latency samples are per successful operation; failed ones are counted by exception type.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from array import array
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, Protocol

from bench.contender import AsyncOps, ClientFactory, SyncOps
from bench.entries import COUNTER_FIELD, COUNTER_KEY, make_patches, random_keys
from bench.stats import WorkerResult

__all__ = [
    "WORKLOADS",
    "StartGate",
    "WorkerTask",
    "Workload",
    "increment_counter",
    "run_worker",
]

KEY_POOL_SIZE: Final = 4096
PATCH_POOL_SIZE: Final = 256
WARM_UP_OPS: Final = 30
WARM_UP_S: Final = 0.1
MAX_CONSECUTIVE_ERRORS: Final = 200


@dataclass(frozen=True)
class Workload:
    """``processes`` counted client processes each run ``op``; with ``in_flight`` > 1 each
    uses the async client with that many coroutines on one connection. ``background_writers``
    extra processes patch continuously and are not counted (their errors are)."""

    name: str
    op: str
    processes: int
    in_flight: int
    description: str
    background_writers: int = 0

    @property
    def task_count(self) -> int:
        return self.processes + self.background_writers


WORKLOADS: Final[dict[str, Workload]] = {
    workload.name: workload
    for workload in (
        Workload("get_seq", "get", 1, 1, "sequential get, one sync client"),
        Workload("patch_seq", "patch", 1, 1, "sequential patch, one sync client"),
        Workload("get_async64", "get", 1, 64, "64 gets in flight on one connection (async)"),
        Workload("patch_async64", "patch", 1, 64, "64 patches in flight on one connection"),
        Workload("patch_8proc", "patch", 8, 1, "8 client processes, sequential patch each"),
        Workload(
            "counter_8proc",
            "counter",
            8,
            1,
            "8 processes increment one shared field via update_with; lost updates counted",
        ),
        Workload(
            "get_under_writes",
            "get",
            1,
            1,
            "sequential get while another process patches non-stop (stores keep flushing)",
            background_writers=1,
        ),
    )
}


@dataclass(frozen=True)
class WorkerTask:
    """One client process's assignment for one repetition (pickled to the pool)."""

    factory: ClientFactory
    workload: str
    op: str
    in_flight: int
    store_size: int
    duration_s: float
    seed: int
    counted: bool
    cpus: frozenset[int] | None = None
    """CPUs this client process runs on (``bench.placement``); None leaves it as it is."""


class StartGate(Protocol):
    """Synchronises the processes of one repetition (see ``bench.pool``)."""

    def wait(self) -> float:
        """Report ready, block until the common start; returns how late this worker is (s)."""
        ...


def increment_counter(entry: dict[str, Any]) -> dict[str, Any]:
    """``update_with`` callback of the lost-update workload."""
    return {COUNTER_FIELD: int(entry.get(COUNTER_FIELD) or 0) + 1}


def run_worker(task: WorkerTask, gate: StartGate) -> WorkerResult:
    """Run this process's share of one repetition and return what it measured."""
    if task.cpus is not None:
        os.sched_setaffinity(0, task.cpus)
    if task.in_flight > 1:
        return _run_coroutine(_run_async(task, gate))
    ops = task.factory.open_sync()
    try:
        keys = itertools.cycle(random_keys(task.store_size, KEY_POOL_SIZE, task.seed))
        _warm_up_sync(ops, keys)
        operation = _sync_operation(ops, task, keys)
        late_s = gate.wait()
        result = _timed_loop(operation, task.duration_s)
        result.counted = task.counted
        result.late_start_s = late_s
        result.events.update(ops.counters())
        return result
    finally:
        ops.close()


def _warm_up_sync(ops: SyncOps, keys: itertools.cycle[str]) -> None:
    started = time.perf_counter()
    for _ in range(WARM_UP_OPS):
        ops.get(next(keys))
        if time.perf_counter() - started > WARM_UP_S:
            return


def _sync_operation(
    ops: SyncOps, task: WorkerTask, keys: itertools.cycle[str]
) -> Callable[[], Any]:
    if task.op == "get":
        return lambda: ops.get(next(keys))
    if task.op == "patch":
        patches = itertools.cycle(make_patches(PATCH_POOL_SIZE, task.seed))
        return lambda: ops.patch(next(keys), next(patches))
    if task.op == "counter":
        return lambda: ops.update_with(COUNTER_KEY, increment_counter)
    raise ValueError(f"unknown op {task.op!r}")


def _timed_loop(operation: Callable[[], Any], duration_s: float) -> WorkerResult:
    latencies: array[int] = array("q")
    errors: dict[str, int] = {}
    consecutive_errors = 0
    start_ns = now_ns = time.perf_counter_ns()
    deadline_ns = start_ns + int(duration_s * 1e9)
    while now_ns < deadline_ns:
        try:
            operation()
        except Exception as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            consecutive_errors += 1
            now_ns = time.perf_counter_ns()
            if consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                errors["aborted"] = 1
                break
            continue
        end_ns = time.perf_counter_ns()
        latencies.append(end_ns - now_ns)
        consecutive_errors = 0
        now_ns = end_ns
    return WorkerResult(
        ops=len(latencies),
        elapsed_s=(now_ns - start_ns) / 1e9,
        latencies_ns=latencies.tobytes(),
        errors=errors,
    )


async def _run_async(task: WorkerTask, gate: StartGate) -> WorkerResult:
    ops = await task.factory.open_async()
    try:
        keys = itertools.cycle(random_keys(task.store_size, KEY_POOL_SIZE, task.seed))
        for _ in range(WARM_UP_OPS):
            await ops.get(next(keys))
        operation = _async_operation(ops, task, keys)
        # Blocking the loop here is fine: nothing else runs on it before the start.
        late_s = gate.wait()
        result = await _timed_lanes(operation, task.in_flight, task.duration_s)
        result.counted = task.counted
        result.late_start_s = late_s
        return result
    finally:
        await ops.aclose()


def _run_coroutine(coroutine: Coroutine[Any, Any, WorkerResult]) -> WorkerResult:
    """On uvloop when it is installed, as the daemon and a fast client would run."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    result: WorkerResult = uvloop.run(coroutine)
    return result


def _async_operation(
    ops: AsyncOps, task: WorkerTask, keys: itertools.cycle[str]
) -> Callable[[], Awaitable[object]]:
    if task.op == "get":
        return lambda: ops.get(next(keys))
    if task.op == "patch":
        patches = itertools.cycle(make_patches(PATCH_POOL_SIZE, task.seed))
        return lambda: ops.patch(next(keys), next(patches))
    raise ValueError(f"op {task.op!r} has no async form")


async def _timed_lanes(
    operation: Callable[[], Awaitable[object]], lanes: int, duration_s: float
) -> WorkerResult:
    latencies: array[int] = array("q")
    errors: dict[str, int] = {}
    start_ns = time.perf_counter_ns()
    deadline_ns = start_ns + int(duration_s * 1e9)

    async def lane() -> None:
        consecutive_errors = 0
        while (begin_ns := time.perf_counter_ns()) < deadline_ns:
            try:
                await operation()
            except Exception as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                consecutive_errors += 1
                if consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                    errors["aborted"] = 1
                    return
                continue
            latencies.append(time.perf_counter_ns() - begin_ns)
            consecutive_errors = 0

    await asyncio.gather(*(lane() for _ in range(lanes)))
    return WorkerResult(
        ops=len(latencies),
        elapsed_s=(time.perf_counter_ns() - start_ns) / 1e9,
        latencies_ns=latencies.tobytes(),
        errors=errors,
    )
