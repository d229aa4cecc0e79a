"""The asyncio client: one pipelined connection shared by every coroutine. Does I/O.

Requests are written as soon as they are made (every request made in one loop turn goes
out in one write) and replies are matched by id, so a thousand coroutines calling at once
share one connection and one round trip each. What is in flight, in which order it is
resent after a reconnect, and when a waiting call gives up is decided by the pure
:class:`~sessiond_client._pipeline.Pipeline`; this module only moves bytes.

A connection on which a call timed out or was cancelled is closed (its other calls are
resent on the next one, in order): a late reply can never be mistaken for another
request's. Reconnection happens in one background task per client, with the backoff of
:mod:`sessiond_client.retry`, while calls are waiting. :meth:`AsyncClient.aclose` fails
every call in flight at once with :class:`ClientClosedError`, stops a connect in progress
and leaks nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from sessiond_client import _core
from sessiond_client._ops_async import AsyncOperations
from sessiond_client._pipeline import PendingCall, Pipeline
from sessiond_client._watch import AsyncWatch
from sessiond_client.errors import (
    ClientClosedError,
    ConnectionLostError,
    DaemonUnavailableError,
    ForbiddenError,
    ProtocolError,
    SessiondError,
)
from sessiond_client.protocol import FrameDecoder
from sessiond_client.results import ServerInfo, WatchEvent
from sessiond_client.retry import RetryPolicy

if TYPE_CHECKING:
    from sessiond_client.redis_backend.async_transport import AsyncRedisTransport

__all__ = ["AsyncClient"]

TIMEOUT_SWEEP_S = 0.05
"""How often a connection with calls in flight checks their deadlines."""


class _Protocol(asyncio.Protocol):
    """One socket connection; hands everything to its :class:`_SocketTransport`."""

    def __init__(self, owner: _SocketTransport) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(owner.pipeline.max_reply_bytes)
        self.drop_error: SessiondError | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.owner.received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        error = self.drop_error or ConnectionLostError(f"connection closed: {exc or 'EOF'}")
        self.owner.lost(self, error)

    def drop(self, error: SessiondError) -> None:
        """Close the connection now; its calls are handled as ``error`` says."""
        if self.drop_error is None:
            self.drop_error = error
        if self.transport is not None:
            self.transport.abort()


class _SocketTransport:
    """The daemon behind a Unix socket: connects, writes frames, routes replies."""

    def __init__(self, settings: _core.ClientSettings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.loop = asyncio.get_running_loop()
        self.protocol: _Protocol | None = None
        self.connector: asyncio.Task[None] | None = None
        self.outgoing: list[bytearray] = []
        self.sweep_scheduled = False

    def _submit(self, call: _core.Call, timeout_s: float) -> PendingCall:
        pipeline = self.pipeline
        pending = pipeline.submit(call, timeout_s)
        pending.waiter = self.loop.create_future()
        if pipeline.can_send:
            self._write(pipeline.frame_for(pending, self.loop.time()))
        else:
            self._connect_soon()
        return pending

    # -- streams (watch) -------------------------------------------------------------------

    def start_stream(self, call: _core.Call) -> PendingCall:
        return self._submit(call, self.settings.timeout_s)

    async def next_event(self, stream: PendingCall) -> WatchEvent | None:
        """The stream's next event; None once it ended; its error raised."""
        while True:
            if stream.events:
                event: WatchEvent = stream.events.popleft()
                return None if event.type == "end" else event
            if stream.error is not None:
                raise stream.error
            if stream.ended:
                return None
            stream.waiter = self.loop.create_future()
            await stream.waiter

    async def stop_stream(self, stream: PendingCall) -> None:
        """Stop routing the stream's events; tell the daemon if it is still running."""
        was_running = stream.request_id in self.pipeline.in_flight and not stream.done
        self.pipeline.abandon(stream)
        if was_running and self.protocol is not None and stream.request_id is not None:
            with contextlib.suppress(SessiondError):
                await self.call(_core.unwatch_call(stream.request_id), self.settings.timeout_s)

    async def call(self, call: _core.Call, timeout_s: float) -> Any:
        pipeline = self.pipeline
        pending = self._submit(call, timeout_s)
        try:
            await pending.waiter
        except asyncio.CancelledError:
            was_in_flight = pending.request_id in pipeline.in_flight
            pipeline.abandon(pending)
            if was_in_flight and self.protocol is not None:
                self.protocol.drop(ConnectionLostError("a call on this connection was cancelled"))
            raise
        return pending.result()

    # -- writing ---------------------------------------------------------------------------

    def _write(self, frame: bytearray) -> None:
        self.outgoing.append(frame)
        if len(self.outgoing) == 1:
            self.loop.call_soon(self._flush_outgoing)
        self._schedule_sweep()

    def _flush_outgoing(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        protocol = self.protocol
        if protocol is not None and protocol.transport is not None and outgoing:
            protocol.transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    # -- connecting ------------------------------------------------------------------------

    def _connect_soon(self) -> None:
        if self.protocol is None and (self.connector is None or self.connector.done()):
            self.connector = self.loop.create_task(self._connect_while_waiting())

    async def _connect_while_waiting(self) -> None:
        pipeline = self.pipeline
        while pipeline.backlog and not pipeline.closed and self.protocol is None:
            if pipeline.attempts:
                await asyncio.sleep(pipeline.retry_delay_s())
            try:
                protocol = await self._open()
            except SessiondError as error:
                self._settle(pipeline.connect_failed(error, self.loop.time()))
                continue
            self.protocol = protocol
            frames = pipeline.connection_made(self.loop.time())
            assert protocol.transport is not None
            protocol.transport.write(b"".join(frames))
            self._schedule_sweep()

    async def _open(self) -> _Protocol:
        settings = self.settings
        protocol = _Protocol(self)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a cancellation
            # (aclose) that arrives as the connection completes, leaking it.
            async with asyncio.timeout(settings.connect_timeout_s):
                await self.loop.create_unix_connection(lambda: protocol, settings.socket_path)
        except PermissionError as error:
            raise ForbiddenError(f"cannot open {settings.socket_path}: {error}") from error
        except (OSError, TimeoutError) as error:
            raise DaemonUnavailableError(
                f"cannot connect to sessiond at {settings.socket_path}: {error}"
            ) from error
        return protocol

    # -- replies and endings -----------------------------------------------------------------

    def received(self, protocol: _Protocol, data: bytes) -> None:
        decoder = protocol.decoder
        try:
            for payload in decoder.feed(data):
                pending = self.pipeline.on_reply(_core.decode_reply(payload))
                if pending is not None:
                    self._settle([pending])
            if decoder.error is not None:
                raise ProtocolError(f"reply too large: {decoder.error}")
        except SessiondError as error:
            protocol.drop(error)
            return
        decoder.max_frame_bytes = self.pipeline.max_reply_bytes
        if self.pipeline.draining and not self.pipeline.in_flight:
            protocol.drop(ConnectionLostError("the daemon is shutting down"))

    def lost(self, protocol: _Protocol, error: SessiondError) -> None:
        if self.protocol is not protocol:
            return
        self.protocol = None
        self.outgoing.clear()
        self._settle(self.pipeline.connection_lost(error, self.loop.time()))
        if self.pipeline.backlog:
            self._connect_soon()

    def _settle(self, calls: list[PendingCall]) -> None:
        for pending in calls:
            waiter: asyncio.Future[None] = pending.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # -- deadlines -------------------------------------------------------------------------

    def _schedule_sweep(self) -> None:
        if not self.sweep_scheduled and self.pipeline.in_flight:
            self.sweep_scheduled = True
            self.loop.call_later(TIMEOUT_SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        self.sweep_scheduled = False
        expired = self.pipeline.expired(self.loop.time())
        if expired:
            self._settle(expired)
            if self.protocol is not None:
                self.protocol.drop(
                    ConnectionLostError("an earlier call on this connection timed out")
                )
        self._schedule_sweep()

    async def close(self) -> None:
        self._settle(self.pipeline.close())
        connector, self.connector = self.connector, None
        if connector is not None:
            connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connector
        protocol, self.protocol = self.protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


class AsyncClient(AsyncOperations):
    """Talks to sessiond from asyncio code. Use as ``async with AsyncClient() as client:``.

    ``target``: the daemon's socket path (default: ``$SESSIOND_SOCKET``, else the daemon's
    default path; one connection per client, opened on the first call), or a Redis or
    Valkey URL (``redis://host:6379/0``, ``redis+unix:///path/redis.sock?db=0``; see
    :mod:`sessiond_client.targets`): the same operations, executed against that server.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
        retry: RetryPolicy | None = None,
        client_name: str | None = None,
    ) -> None:
        self.settings = _core.ClientSettings.for_target(
            target, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s
        )
        self.retry = retry or RetryPolicy()
        self.client_name = client_name
        self._pipeline = Pipeline(self.retry, client_name)
        self._transport: _SocketTransport | AsyncRedisTransport | None = None

    @property
    def server_info(self) -> ServerInfo | None:
        """What the daemon said in ``hello`` on the current connection (None before)."""
        transport = self._transport
        if isinstance(transport, _SocketTransport) or transport is None:
            return self._pipeline.server_info
        return transport.server_info

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection; calls in flight fail at once with ClientClosedError."""
        if self._transport is not None:
            await self._transport.close()
        else:
            self._pipeline.close()

    def _socket(self) -> _SocketTransport | AsyncRedisTransport:
        if self._transport is None:
            if self.settings.redis is not None:
                from sessiond_client.redis_backend.async_transport import AsyncRedisTransport

                if self._pipeline.closed:
                    raise ClientClosedError("the client is closed")
                self._transport = AsyncRedisTransport(
                    self.settings.redis, self.settings, self.retry
                )
            else:
                self._transport = _SocketTransport(self.settings, self._pipeline)
        return self._transport

    async def _call(self, call: _core.Call, timeout_s: float | None = None) -> Any:
        return await self._socket().call(call, timeout_s or self.settings.timeout_s)

    def _watch(self, call: _core.Call) -> AsyncWatch:
        return AsyncWatch(self._socket(), call)
