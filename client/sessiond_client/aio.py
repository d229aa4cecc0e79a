"""The asyncio client: one pipelined connection shared by every coroutine. Does I/O.

Requests are written as soon as they are made and replies are matched by id, so a
thousand coroutines calling at once share one connection and one round trip each. A
connection on which a call timed out or was cancelled is closed (its other in-flight
calls fail with :class:`ConnectionLostError` and are retried if idempotent): a late reply
can then never be mistaken for another request's. Reconnection is lazy, on the next call,
with the backoff of :mod:`sessiond_client.retry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, cast

from sessiond_client import _core
from sessiond_client._core import FLUSH_TIMEOUT_S
from sessiond_client.errors import (
    ConflictError,
    ConnectionLostError,
    DaemonUnavailableError,
    ForbiddenError,
    FrameTooLargeError,
    ProtocolError,
    RequestTimeoutError,
    SessiondError,
)
from sessiond_client.protocol import FrameDecoder, Reply, Request
from sessiond_client.results import Resolution, ServerInfo, Session, SessionPage

__all__ = ["AsyncClient"]

UpdateFn = Callable[[Session], "Mapping[str, Any] | Awaitable[Mapping[str, Any] | None] | None"]


class _Expired(Exception):
    """Set on a call's future when its timeout passes (never escapes the client)."""


TIMEOUT_SWEEP_S = 0.05
"""How often a connection with calls in flight checks their deadlines."""


class _Connection(asyncio.Protocol):
    """One socket connection: writes requests, routes replies to their futures.

    Deadlines are checked by one sweep every :data:`TIMEOUT_SWEEP_S` while calls are in
    flight, instead of a timer per call: the pipelined path stays cheap.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self.decoder = FrameDecoder(max_frame_bytes)
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.deadlines: dict[int, float] = {}
        self.transport: asyncio.Transport | None = None
        self.broken: SessiondError | None = None
        self.ids = itertools.count(1)
        self.outgoing: list[bytearray] = []
        self.loop = asyncio.get_running_loop()
        self.sweep_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def _sweep(self) -> None:
        self.sweep_scheduled = False
        now = self.loop.time()
        expired = [call_id for call_id, deadline in self.deadlines.items() if deadline <= now]
        for call_id in expired:
            del self.deadlines[call_id]
            future = self.pending.pop(call_id, None)
            if future is not None and not future.done():
                future.set_exception(_Expired())
        self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        if self.deadlines and not self.sweep_scheduled:
            self.sweep_scheduled = True
            self.loop.call_later(TIMEOUT_SWEEP_S, self._sweep)

    def data_received(self, data: bytes) -> None:
        try:
            for payload in self.decoder.feed(data):
                reply = _core.decode_reply(payload)
                if reply.id is None:
                    # A connection-level refusal (busy, forbidden, frame_too_large...).
                    raise _core.reply_error(reply) or ProtocolError("reply without an id")
                future = self.pending.pop(reply.id, None)
                self.deadlines.pop(reply.id, None)
                if future is not None and not future.done():
                    future.set_result(reply)
        except (SessiondError, FrameTooLargeError) as error:
            self.abort(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail_pending(self.broken or ConnectionLostError(f"connection closed: {exc or 'EOF'}"))

    def _fail_pending(self, error: SessiondError) -> None:
        if self.broken is None:
            self.broken = error
        pending, self.pending = self.pending, {}
        self.deadlines.clear()
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def abort(self, error: SessiondError) -> None:
        """Fail every pending call with ``error`` and drop the connection."""
        self._fail_pending(error)
        if self.transport is not None:
            self.transport.abort()

    @property
    def usable(self) -> bool:
        return self.broken is None and self.transport is not None

    def send(self, request: Request, timeout_s: float) -> asyncio.Future[Reply]:
        """Queue ``request``; every request queued in one loop turn goes out in one write.

        The future fails with :class:`_Expired` if no reply came within ``timeout_s``.
        """
        if self.broken is not None or self.transport is None:
            # Refused (busy, forbidden...) or closed since it was handed out: nothing
            # would ever answer on it.
            raise self.broken or ConnectionLostError("the connection is closed")
        request.id = call_id = next(self.ids)
        loop = self.loop
        future: asyncio.Future[Reply] = loop.create_future()
        self.pending[call_id] = future
        self.deadlines[call_id] = loop.time() + timeout_s
        self._schedule_sweep()
        self.outgoing.append(_core.encode_request_frame(request))
        if len(self.outgoing) == 1:
            loop.call_soon(self._write_outgoing)
        return future

    def _write_outgoing(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if self.transport is not None and outgoing:
            self.transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))


class AsyncClient(_core.ClientBase):
    """Talks to sessiond from asyncio code. Use as ``async with AsyncClient() as client:``."""

    def _init_connection_state(self) -> None:
        self._connection: _Connection | None = None
        self._connect_lock = asyncio.Lock()

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
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None and connection.transport is not None:
            connection.transport.close()

    async def _connected(self) -> _Connection:
        connection = self._connection
        if connection is not None and connection.usable:
            return connection
        async with self._connect_lock:
            if self._connection is not None and self._connection.usable:
                return self._connection
            if self._closed:
                raise DaemonUnavailableError("the client is closed")
            self._connection = await self._open()
            return self._connection

    async def _open(self) -> _Connection:
        settings = self.settings
        loop = asyncio.get_running_loop()
        connection = _Connection(settings.max_frame_bytes)
        try:
            await asyncio.wait_for(
                loop.create_unix_connection(lambda: connection, settings.socket_path),
                settings.connect_timeout_s,
            )
        except PermissionError as error:
            raise ForbiddenError(f"cannot open {settings.socket_path}: {error}") from error
        except (OSError, TimeoutError) as error:
            raise DaemonUnavailableError(
                f"cannot connect to sessiond at {settings.socket_path}: {error}"
            ) from error
        return connection

    async def _call(self, call: _core.Call, timeout_s: float | None = None) -> Any:
        try:
            return await self._call_once(call, timeout_s or self.settings.timeout_s)
        except SessiondError as error:
            if not self.retry.should_retry(error, retry_safe=call.retry_safe, elapsed_s=0.0):
                raise
        return await self._retry(call, timeout_s)

    async def _retry(self, call: _core.Call, timeout_s: float | None) -> Any:
        """Later attempts of a call whose first attempt failed in a retryable way."""
        started = time.monotonic()
        for attempt in itertools.count():
            await asyncio.sleep(self.retry.backoff.delay_s(attempt))
            try:
                return await self._call_once(call, timeout_s or self.settings.timeout_s)
            except SessiondError as error:
                if not self.retry.should_retry(
                    error, retry_safe=call.retry_safe, elapsed_s=time.monotonic() - started
                ):
                    raise
        raise AssertionError("unreachable")

    async def _call_once(self, call: _core.Call, timeout_s: float) -> Any:
        connection = self._connection
        if connection is None or not connection.usable:
            connection = await self._connected()
        future = connection.send(call.request, timeout_s)
        try:
            reply = await future
        except _Expired:
            connection.abort(ConnectionLostError("an earlier call on this connection timed out"))
            raise RequestTimeoutError(f"{call.op} got no reply within {timeout_s} s") from None
        except asyncio.CancelledError:
            connection.abort(
                ConnectionLostError("an earlier call on this connection was cancelled")
            )
            raise
        return _core.reply_result(reply, call.convert)

    # -- operations (same names and parameters as the sync Client) ---------------------

    async def hello(self) -> ServerInfo:
        """Protocol version, server name and version, and the daemon's frame limit."""
        result: ServerInfo = await self._call(_core.hello_call(self.client_name))
        return result

    async def get(self, key: str, *, agent: str | None = None) -> Session | None:
        """The entry stored under ``key``, or ``None``."""
        result: Session | None = await self._call(_core.get_call(key, agent))
        return result

    async def get_many(
        self, keys: Sequence[str], *, agent: str | None = None
    ) -> dict[str, Session]:
        """The entries of the keys that exist (missing keys are absent from the map)."""
        result: dict[str, Session] = await self._call(_core.get_many_call(keys, agent))
        return result

    async def list(
        self,
        *,
        agent: str | None = None,
        prefix: str | None = None,
        active_minutes: float | None = None,
        label: str | None = None,
        spawned_by: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SessionPage:
        """One page of entries, newest ``updatedAt`` first; pass ``cursor`` for the next."""
        result: SessionPage = await self._call(
            _core.list_call(
                agent=agent,
                prefix=prefix,
                active_minutes=active_minutes,
                label=label,
                spawned_by=spawned_by,
                limit=limit,
                cursor=cursor,
            )
        )
        return result

    async def patch(
        self,
        key: str,
        patch: Mapping[str, Any],
        *,
        agent: str | None = None,
        if_revision: str | None = None,
        durable: bool = False,
    ) -> Session:
        """Merge ``patch`` into the entry (creating it); a ``None`` value deletes a field."""
        result: Session = await self._call(
            _core.patch_call(
                key=key, patch=patch, agent=agent, if_revision=if_revision, durable=durable
            )
        )
        return result

    async def update(
        self,
        key: str,
        patch: Mapping[str, Any],
        *,
        agent: str | None = None,
        if_revision: str | None = None,
        durable: bool = False,
    ) -> Session | None:
        """Merge ``patch`` only if the entry exists; ``None`` if it does not."""
        result: Session | None = await self._call(
            _core.update_call(
                key=key, patch=patch, agent=agent, if_revision=if_revision, durable=durable
            )
        )
        return result

    async def replace(
        self,
        key: str,
        entry: Mapping[str, Any],
        *,
        agent: str | None = None,
        if_revision: str | None = None,
        durable: bool = False,
    ) -> Session:
        """Store ``entry`` exactly as given (``sessionId`` required)."""
        result: Session = await self._call(
            _core.replace_call(
                key=key, entry=entry, agent=agent, if_revision=if_revision, durable=durable
            )
        )
        return result

    async def update_last_route(
        self,
        key: str,
        *,
        provider: str | None = None,
        to: str | None = None,
        account_id: str | None = None,
        touch: bool = False,
        agent: str | None = None,
        durable: bool = False,
    ) -> Session:
        """Record the last delivery route; ``updatedAt`` moves only if ``touch``."""
        result: Session = await self._call(
            _core.update_last_route_call(
                key=key,
                provider=provider,
                to=to,
                account_id=account_id,
                touch=touch,
                agent=agent,
                durable=durable,
            )
        )
        return result

    async def delete(
        self,
        key: str,
        *,
        agent: str | None = None,
        if_revision: str | None = None,
        durable: bool = False,
    ) -> bool:
        """Remove the entry; ``True`` if it existed."""
        result: bool = await self._call(
            _core.delete_call(key=key, agent=agent, if_revision=if_revision, durable=durable)
        )
        return result

    async def resolve(
        self,
        ctx: Mapping[str, Any],
        *,
        agent: str | None = None,
        authorized: bool = True,
        scope: Literal["per-sender", "global"] | None = None,
        main_key: str | None = None,
        idle_minutes: float | None = None,
        reset_triggers: Sequence[str] | None = None,
        durable: bool = False,
    ) -> Resolution:
        """Map a message context to its session, creating or renewing it atomically."""
        result: Resolution = await self._call(
            _core.resolve_call(
                ctx=ctx,
                agent=agent,
                authorized=authorized,
                scope=scope,
                main_key=main_key,
                idle_minutes=idle_minutes,
                reset_triggers=reset_triggers,
                durable=durable,
            )
        )
        return result

    async def flush(self, *, agent: str | None = None) -> bool:
        """Return once everything accepted so far is written to the store file."""
        result: bool = await self._call(_core.flush_call(agent), timeout_s=FLUSH_TIMEOUT_S)
        return result

    async def stats(self) -> dict[str, Any]:
        """The daemon's counters (per op, connections, stores, flushes, uptime)."""
        result: dict[str, Any] = await self._call(_core.stats_call())
        return result

    async def update_with(
        self,
        key: str,
        fn: UpdateFn,
        *,
        agent: str | None = None,
        durable: bool = False,
        max_attempts: int = 100,
    ) -> Session | None:
        """Read → ``fn(session)`` → ``update(if_revision=...)``, retried on conflict.

        ``fn`` returns a patch (or ``None`` for "no change"); it may be a coroutine
        function. Returns the updated session, the unchanged one, or ``None`` if the key
        does not exist (the original ``updateSessionStoreEntry`` contract).
        """
        for attempt in range(max_attempts):
            session = await self.get(key, agent=agent)
            if session is None:
                return None
            outcome = fn(session)
            if inspect.isawaitable(outcome):
                outcome = await outcome
            patch = _core.patch_from_update(outcome)
            if patch is None:
                return session
            with contextlib.suppress(ConflictError):
                return await self.update(
                    key, patch, agent=agent, if_revision=session.revision, durable=durable
                )
            await asyncio.sleep(self.retry.backoff.delay_s(min(attempt, 4)))
        raise ConflictError(f"update_with({key!r}) kept conflicting after {max_attempts} attempts")
