"""Where blocking persistence calls run: one dedicated thread fed by the event loop. Does
I/O (it runs the fsyncs, renames and unlinks it is handed).

Group commit needs one fsync in flight while the next batch gathers, and no more: a
single long-lived thread, fed through a queue, runs jobs in the order the loop submits
them and hands each result back with one ``call_soon_threadsafe`` (no executor, no new
thread, no context copy per batch). :class:`InlineRunner` runs jobs in the calling
thread instead, for deterministic in-process tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

__all__ = ["InlineRunner", "JobRunner", "SyncThread"]

T = TypeVar("T")


class JobRunner(Protocol):
    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` off the event loop; the future holds its result."""
        ...


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, asyncio.Future[Any]]


class SyncThread:
    """One daemon thread running jobs in submission order."""

    def __init__(self, name: str = "sessiond-sync") -> None:
        self.name = name
        self.jobs: queue.SimpleQueue[
            tuple[
                Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, asyncio.Future[Any]
            ]
            | None
        ] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._ensure_started()
        self.jobs.put((fn, args, loop, future))
        return future

    def _ensure_started(self) -> None:
        if self.thread is not None:
            return
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self.thread.start()

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            fn, args, loop, future = job
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # handed back to the awaiting coroutine
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, result, error)

    def stop(self) -> None:
        """Let the thread finish the queued jobs and exit."""
        with self.lock:
            thread, self.thread = self.thread, None
        if thread is not None:
            self.jobs.put(None)
            thread.join(timeout=30)


class InlineRunner:
    """Runs each job at once in the calling thread (deterministic tests)."""

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            future.set_result(fn(*args))
        except Exception as error:
            future.set_exception(error)
        return future
