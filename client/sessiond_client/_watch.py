"""``watch()``'s handle in both clients: a context manager that iterates change events.
No I/O of its own: it asks the client's transport for the next event of one streaming
call, and ends the watch (``unwatch``) when the block is left.

The transport resends a watch after a reconnect from the last ``seq`` it delivered, so a
watcher sees every change once, in order, across daemon restarts, without doing anything.
``position`` is that seq: save it to watch again later from where this one stopped.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol

from sessiond_client._core import Call
from sessiond_client.results import WatchEvent

__all__ = ["AsyncWatch", "Watch"]


class StreamTransport(Protocol):
    def start_stream(self, call: Call) -> Any: ...

    def next_event(self, stream: Any) -> WatchEvent | None: ...

    def stop_stream(self, stream: Any) -> None: ...


class AsyncStreamTransport(Protocol):
    def start_stream(self, call: Call) -> Any: ...

    async def next_event(self, stream: Any) -> WatchEvent | None: ...

    async def stop_stream(self, stream: Any) -> None: ...


class Watch:
    """``with client.watch(...) as events: for event in events: ...``"""

    def __init__(self, transport: StreamTransport, call: Call) -> None:
        self._transport = transport
        self._call = call
        self._stream: Any = None
        self.position: int | None = None
        """The seq of the last event delivered (None before the first)."""

    def __enter__(self) -> Watch:
        self._stream = self._transport.start_stream(self._call)
        return self

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> WatchEvent:
        if self._stream is None:
            raise RuntimeError("use the watch in a with block")
        event = self._transport.next_event(self._stream)
        if event is None:
            raise StopIteration
        self.position = event.seq
        return event

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._transport.stop_stream(self._stream)


class AsyncWatch:
    """``async with client.watch(...) as events: async for event in events: ...``"""

    def __init__(self, transport: AsyncStreamTransport, call: Call) -> None:
        self._transport = transport
        self._call = call
        self._stream: Any = None
        self.position: int | None = None
        """The seq of the last event delivered (None before the first)."""

    async def __aenter__(self) -> AsyncWatch:
        self._stream = self._transport.start_stream(self._call)
        return self

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        if self._stream is None:
            raise RuntimeError("use the watch in an async with block")
        event = await self._transport.next_event(self._stream)
        if event is None:
            raise StopAsyncIteration
        self.position = event.seq
        return event

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            await self._transport.stop_stream(self._stream)
