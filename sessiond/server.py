"""The Unix-socket server: one asyncio Protocol per connection, framing, limits,
backpressure, access control, and the replies. Does I/O.

Hot path: a request whose stores are loaded and that needs no waiting (every read, every
non-durable write) is decoded, dispatched and answered inside ``data_received`` with no
task switch; every reply produced while handling one read is written with one call.
Requests that must wait (first use of a store, ``durable=true``, ``flush``) run as tasks,
but their writes are still applied in arrival order before the wait.

Bounds: connections (``busy`` beyond), requests in flight per connection (reading pauses,
the client is not failed), the transport's write buffer (a client that never reads its
replies stops being read from, so its memory stays bounded), frame size (one
``frame_too_large`` then close), a frame left incomplete for ``frame_timeout_s``, and
connections idle for ``idle_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, cast

import msgspec

from sessiond.access import AccessPolicy
from sessiond.config import Limits
from sessiond.dispatch import Dispatcher, agents_of
from sessiond.peercred import peer_credentials
from sessiond.registry import StoreRegistry
from sessiond_client.errors import (
    BusyError,
    ForbiddenError,
    FrameTooLargeError,
    InternalError,
    InvalidRequestError,
    ServerError,
    ShuttingDownError,
    UnknownOpError,
)
from sessiond_client.protocol import (
    FRAME_HEADER,
    OP_OF_REQUEST,
    OPS,
    ErrorBody,
    ErrorReply,
    FlushRequest,
    FrameDecoder,
    OkReply,
    Request,
    RequestEnvelope,
    WriteRequestBase,
)

__all__ = ["Connection", "Server"]

log = logging.getLogger("sessiond.server")

REFUSE_LINGER_S = 2.0
_request_decoder = msgspec.msgpack.Decoder(Request)
_envelope_decoder = msgspec.msgpack.Decoder(RequestEnvelope)
_encoder = msgspec.msgpack.Encoder()


def encode_reply(reply: OkReply | ErrorReply) -> bytearray:
    """One frame: 4-byte length, then the msgpack reply."""
    frame = bytearray(FRAME_HEADER.size)
    _encoder.encode_into(reply, frame, FRAME_HEADER.size)
    FRAME_HEADER.pack_into(frame, 0, len(frame) - FRAME_HEADER.size)
    return frame


def error_reply(request_id: int | None, error: ServerError) -> bytearray:
    return encode_reply(ErrorReply(request_id, ErrorBody(error.code, error.message)))


def classify_bad_payload(payload: bytes, error: Exception) -> tuple[int | None, ServerError]:
    """Turn a payload that failed to decode into (id to echo, error to send)."""
    try:
        envelope = _envelope_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, InvalidRequestError(f"payload is not a msgpack map: {error}")
    request_id = envelope.id if type(envelope.id) is int else None
    if isinstance(envelope.op, str) and envelope.op not in OPS:
        return request_id, UnknownOpError(f"unknown op {envelope.op!r}")
    return request_id, InvalidRequestError(f"invalid request: {error}")


class Server:
    """Owns the listening socket's connections and the shared request machinery."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        registry: StoreRegistry,
        limits: Limits,
        access: AccessPolicy | None,
    ) -> None:
        self.dispatcher = dispatcher
        self.registry = registry
        self.limits = limits
        self.access = access
        self.connections: set[Connection] = set()
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.ops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.connections_total = 0
        self.connections_refused = 0
        self.started_at = time.monotonic()

    def protocol_factory(self) -> Connection:
        return Connection(self)

    def stats(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "connections": len(self.connections),
            "connections_total": self.connections_total,
            "connections_refused": self.connections_refused,
            "requests_in_flight": sum(c.in_flight for c in self.connections),
            "ops": dict(self.ops),
            "errors": dict(self.errors),
        }

    def spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def sweep_forever(self) -> None:
        """Close connections stuck mid-frame or idle past their timeouts."""
        interval_s = max(0.05, min(self.limits.frame_timeout_s, self.limits.idle_timeout_s) / 4)
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check_timeouts(now)

    def begin_shutdown(self) -> None:
        self.stopping = True

    async def drain(self, timeout_s: float) -> bool:
        """Wait for in-flight requests to finish; True if they all did within the bound."""
        pending = list(self.tasks)
        if not pending:
            return True
        _, not_done = await asyncio.wait(pending, timeout=timeout_s)
        for task in not_done:
            task.cancel()
        return not not_done

    def close_all(self) -> None:
        for connection in list(self.connections):
            connection.close()


class Connection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.limits = server.limits
        self.decoder = FrameDecoder(server.limits.max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.in_flight = 0
        self.reading_paused = False
        self.writing_paused = False
        self.partial_since: float | None = None
        self.last_activity = time.monotonic()
        self.outbox: list[bytearray] | None = None
        self.peer = "?"
        self.refused = False

    # -- connection lifecycle -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        server = self.server
        server.connections_total += 1
        transport.set_write_buffer_limits(high=self.limits.max_write_buffer_bytes)
        if not self._peer_allowed(transport):
            return
        if len(server.connections) >= self.limits.max_connections or server.stopping:
            server.connections_refused += 1
            error = (
                ShuttingDownError("the daemon is shutting down")
                if server.stopping
                else BusyError(f"connection limit of {self.limits.max_connections} reached")
            )
            self._refuse(error)
            return
        server.connections.add(self)

    def _peer_allowed(self, transport: asyncio.Transport) -> bool:
        policy = self.server.access
        if policy is None:
            return True
        sock = transport.get_extra_info("socket")
        creds = peer_credentials(sock)
        self.peer = f"pid={creds.pid} uid={creds.uid} gid={creds.gid}"
        if policy.allows(creds):
            return True
        log.warning("refused connection from %s: not an allowed uid or group", self.peer)
        self.server.connections_refused += 1
        self._refuse(ForbiddenError(f"uid {creds.uid} is not allowed to use this daemon"))
        return False

    def _refuse(self, error: ServerError) -> None:
        """Send one connection-level error, then close — after a short linger.

        Closing at once would make a peer whose first request is still on its way get a
        broken pipe instead of the reason; reading (and ignoring) what it sends for
        :data:`REFUSE_LINGER_S` lets it read the error first, whatever its language.
        """
        transport = self.transport
        assert transport is not None
        self.refused = True
        self.server.errors[error.code] += 1
        transport.write(error_reply(None, error))
        if transport.can_write_eof():
            transport.write_eof()
        asyncio.get_running_loop().call_later(REFUSE_LINGER_S, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def check_timeouts(self, now: float) -> None:
        if (
            self.partial_since is not None
            and now - self.partial_since > self.limits.frame_timeout_s
        ):
            log.info(
                "dropping %s: incomplete frame for %.1f s", self.peer, now - self.partial_since
            )
            self.server.errors["frame_timeout"] += 1
            self.close()
        elif self.in_flight == 0 and now - self.last_activity > self.limits.idle_timeout_s:
            log.debug("closing idle connection %s", self.peer)
            self.close()

    # -- flow control ---------------------------------------------------------------------

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        should_pause = (
            self.writing_paused or self.in_flight >= self.limits.max_inflight_per_connection
        )
        if should_pause and not self.reading_paused:
            self.reading_paused = True
            transport.pause_reading()
        elif not should_pause and self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()

    # -- requests -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        self.last_activity = time.monotonic()
        try:
            payloads = self.decoder.feed(data)
        except FrameTooLargeError as error:
            self._refuse(error)
            return
        if len(payloads) == 1:  # the usual case: one request, its reply written at once
            self.handle_payload(payloads[0])
        else:
            self.outbox = []
            for payload in payloads:
                self.handle_payload(payload)
            outbox, self.outbox = self.outbox, None
            if outbox and self.transport is not None:
                self.server.registry.append_journals()
                self.transport.write(b"".join(outbox))
        if self.decoder.buffered_bytes:
            self.partial_since = self.partial_since or self.last_activity
        else:
            self.partial_since = None

    def send(self, frame: bytearray) -> None:
        if self.outbox is not None:
            self.outbox.append(frame)
        elif self.transport is not None and not self.transport.is_closing():
            self.server.registry.append_journals()
            self.transport.write(frame)
            self.last_activity = time.monotonic()

    def reply_error(self, request_id: int | None, error: ServerError) -> None:
        self.server.errors[error.code] += 1
        self.send(error_reply(request_id, error))

    def handle_payload(self, payload: bytes) -> None:
        try:
            request = _request_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            self.reply_error(*classify_bad_payload(payload, error))
            return
        server = self.server
        op = OP_OF_REQUEST[type(request)]
        server.ops[op] += 1
        if server.stopping:
            self.reply_error(request.id, ShuttingDownError("the daemon is shutting down"))
            return
        try:
            agents = agents_of(request)
            if isinstance(request, FlushRequest) or not server.registry.all_loaded(agents):
                self._spawn(self.handle_later(request, agents))
                return
            result = server.dispatcher.handle(request, agents)
        except ServerError as error:
            self.reply_error(request.id, error)
            return
        except Exception:
            log.exception("internal error handling %s", op)
            self.reply_error(request.id, InternalError(f"internal error handling {op}"))
            return
        if isinstance(request, WriteRequestBase) and request.durable:
            self._spawn(self.reply_when_durable(request.id, agents, result))
        else:
            self.send(encode_reply(OkReply(request.id, result)))

    def _spawn(self, coroutine: Any) -> None:
        self.in_flight += 1
        task = self.server.spawn(coroutine)
        task.add_done_callback(self._request_done)
        self._update_reading()

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self.in_flight -= 1
        self._update_reading()

    async def handle_later(self, request: Request, agents: tuple[str, ...]) -> None:
        """Requests that await: store loading, ``flush``, then the normal path."""
        server = self.server
        try:
            await server.registry.load_all(agents)
            if isinstance(request, FlushRequest):
                await server.registry.flush(request.agent)
                self.send(encode_reply(OkReply(request.id, True)))
                return
            result = server.dispatcher.handle(request, agents)
            if isinstance(request, WriteRequestBase) and request.durable:
                await server.registry.wait_durable(agents)
        except ServerError as error:
            self.reply_error(request.id, error)
            return
        except Exception:
            log.exception("internal error handling %s", type(request).__name__)
            self.reply_error(request.id, InternalError("internal error"))
            return
        self.send(encode_reply(OkReply(request.id, result)))

    async def reply_when_durable(
        self, request_id: int, agents: tuple[str, ...], result: Any
    ) -> None:
        try:
            await self.server.registry.wait_durable(agents)
        except ServerError as error:
            self.reply_error(request_id, error)
            return
        self.send(encode_reply(OkReply(request_id, result)))
