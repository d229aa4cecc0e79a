"""A pool of spawned client processes with a common start gate. Does I/O (processes, IPC).

Client processes are started once (``spawn``, so they share nothing with the orchestrator)
and reused for every repetition: process start-up and imports are never inside a timed
window. For each repetition the orchestrator submits one :class:`~bench.workloads.WorkerTask`
per process; each worker opens its client, warms up, reports ready and waits. When all are
ready the orchestrator publishes a start time a few ms ahead and every worker starts its
timed loop at that instant. A worker that is still busy with one task cannot take another,
so ``n`` tasks on an idle pool of at least ``n`` processes land in ``n`` distinct processes.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import time
from collections.abc import Sequence
from multiprocessing.sharedctypes import Synchronized
from typing import Final

from bench.stats import WorkerResult
from bench.workloads import WorkerTask, run_worker

__all__ = ["ClientPool"]

START_MARGIN_S: Final = 0.02
POLL_S: Final = 0.0005

_ready: Synchronized[int] | None = None
_start_at: Synchronized[float] | None = None


def _init_worker(ready: Synchronized[int], start_at: Synchronized[float]) -> None:
    global _ready, _start_at
    _ready, _start_at = ready, start_at


class _SharedGate:
    """Worker side of the gate: count in, then wait for the published wall-clock start."""

    def wait(self) -> float:
        assert _ready is not None and _start_at is not None, "not in a pool worker"
        with _ready.get_lock():
            _ready.value += 1
        while (start_at := _start_at.value) <= 0:
            time.sleep(POLL_S)
        remaining_s = start_at - time.time()
        if remaining_s > 0:
            time.sleep(remaining_s)
        return max(0.0, -remaining_s)


def _run_task(task: WorkerTask) -> WorkerResult:
    return run_worker(task, _SharedGate())


class ClientPool:
    """``size`` spawned client processes; :meth:`run` runs one repetition of a cell."""

    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._ready: Synchronized[int] = context.Value("i", 0)
        self._start_at: Synchronized[float] = context.Value("d", 0.0)
        self._pool = context.Pool(
            size, initializer=_init_worker, initargs=(self._ready, self._start_at)
        )
        self.size = size

    def run(self, tasks: Sequence[WorkerTask], timeout_s: float) -> list[WorkerResult]:
        """Start ``tasks`` together; raise if one fails or they do not finish in time."""
        if len(tasks) > self.size:
            raise ValueError(f"{len(tasks)} tasks for a pool of {self.size}")
        self._ready.value = 0
        self._start_at.value = 0.0
        pending = [self._pool.apply_async(_run_task, (task,)) for task in tasks]
        try:
            self._wait_ready(pending, len(tasks), timeout_s)
        except BaseException:
            self._release_and_drain(pending, timeout_s)
            raise
        self._start_at.value = time.time() + START_MARGIN_S
        deadline = time.monotonic() + timeout_s
        return [result.get(timeout=max(0.1, deadline - time.monotonic())) for result in pending]

    def _wait_ready(
        self,
        pending: Sequence[multiprocessing.pool.AsyncResult[WorkerResult]],
        count: int,
        timeout_s: float,
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while self._ready.value < count:
            failed = [result for result in pending if result.ready()]
            if failed:
                failed[0].get()  # re-raises the worker's exception
            if time.monotonic() > deadline:
                raise TimeoutError(f"client processes not ready after {timeout_s} s")
            time.sleep(POLL_S)

    def _release_and_drain(
        self, pending: Sequence[multiprocessing.pool.AsyncResult[WorkerResult]], timeout_s: float
    ) -> None:
        """Let the workers already at the gate run out, so the pool is clean for the next cell."""
        self._start_at.value = time.time()
        for result in pending:
            result.wait(timeout_s)

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()
