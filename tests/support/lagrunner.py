"""A job runner for crash tests with a sync "in flight": each job runs at once (its I/O
happens, in order, on the calling thread), but its future settles only a few event-loop
iterations later. No I/O of its own.

:class:`~sessiond.syncthread.InlineRunner` settles at once, so nothing can happen
between a sync and the code that learns it completed. With the real sync thread, the
loop keeps running meanwhile: records are appended, durable writes start waiting, a
snapshot asks for rotation. :class:`LaggingRunner` makes that window deterministic: the
job covers exactly what existed when it was handed over, and ``lag`` loop iterations of
other work run before the caller resumes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

__all__ = ["LaggingRunner"]

T = TypeVar("T")


class LaggingRunner:
    """Runs each job at once; settles its future ``lag`` loop iterations later."""

    def __init__(self, lag: int = 3) -> None:
        self.lag = lag

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        try:
            result = fn(*args)
        except Exception as error:  # handed back to the awaiting coroutine, later
            outcome: Callable[[], None] = partial(future.set_exception, error)
        else:
            outcome = partial(future.set_result, result)

        def settle(remaining: int) -> None:
            if remaining > 0:
                loop.call_soon(settle, remaining - 1)
            elif not future.done():  # done: the waiter was cancelled (the process was killed)
                outcome()

        loop.call_soon(settle, self.lag - 1)
        return future
