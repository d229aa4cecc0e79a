"""The Unix-socket server: one asyncio Protocol per connection, framing, limits,
backpressure, access control, and the one path every request takes. Does I/O.

One request path. Each connection keeps a queue of the requests it has read, and runs
them strictly in the order they arrived: a request whose store must first be loaded
blocks the queue (the requests behind it wait, whatever they are), every other request
is applied at once inside ``data_received`` with no task switch. Applying and answering
are separate: a durable write or a ``flush`` is applied in order, and its reply is sent
when the disk has it, while the requests behind it go on. Replies may therefore come
out of order; changes never do.

One error boundary. Decoding, validation, the operation and the encoding of the reply
all happen inside :meth:`Connection._answer` / :meth:`Connection._answer_later`, which
turn every failure into an error reply for that request (``invalid_request`` for bad
input, ``internal`` plus a logged traceback for a bug) and keep the connection. A reply
larger than ``max_reply_bytes`` is replaced by an error that says so.

Bounds: connections (``busy`` beyond), requests in flight per connection (reading pauses,
the client is not failed), the transport's write buffer (a client that never reads its
replies stops being read from, so its memory stays bounded), frame size (the requests
before the oversized frame are answered, then one ``frame_too_large`` and close), a frame
left incomplete for ``frame_timeout_s`` (an ``invalid_request`` error, then close), and
connections idle for ``idle_timeout_s`` (closed quietly).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import msgspec

from sessiond.access import AccessPolicy
from sessiond.config import Limits
from sessiond.dispatch import Dispatcher, agents_of
from sessiond.metrics import OpMetrics
from sessiond.peercred import peer_credentials
from sessiond.registry import StoreRegistry
from sessiond.requestid import request_id_of
from sessiond.store import Change, SessionStore, encode_for_wire
from sessiond.watch import WatchHub
from sessiond_client.checks import project, wire_agent
from sessiond_client.errors import (
    BusyError,
    CompactedError,
    ForbiddenError,
    InternalError,
    InvalidRequestError,
    LaggedError,
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
    ImportRequest,
    OkReply,
    PruneRequest,
    Request,
    RequestEnvelope,
    UnwatchRequest,
    WatchEvent,
    WatchRequest,
    WriteRequestBase,
)

__all__ = ["Connection", "Server"]

_perf_counter = time.perf_counter
_OPENS_FOR_WRITE = (WriteRequestBase, WatchRequest)  # a tuple: `A | B` builds a union per call
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
    oldest_seq = error.oldest_seq if isinstance(error, CompactedError) else None
    return encode_reply(ErrorReply(request_id, ErrorBody(error.code, error.message, oldest_seq)))


def classify_bad_payload(payload: bytes, error: Exception) -> tuple[int | None, ServerError]:
    """Turn a payload that failed to decode into (id to echo, error to send)."""
    try:
        envelope = _envelope_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        if not payload or payload[0] not in _MAP_HEADERS:
            return None, InvalidRequestError(f"payload is not a msgpack map: {error}")
        # Wherever the damage is, the id may be intact: find it without decoding.
        return request_id_of(payload), InvalidRequestError(f"invalid request: {error}")
    request_id = envelope.id if type(envelope.id) is int else None
    if isinstance(envelope.op, str) and envelope.op not in OPS:
        return request_id, UnknownOpError(f"unknown op {envelope.op!r}")
    return request_id, InvalidRequestError(f"invalid request: {error}")


_MAP_HEADERS = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])


def decode_request(payload: bytes) -> Request:
    """The request in ``payload``, or the :class:`ServerError` to answer it with."""
    try:
        request: Request = _request_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise _BadPayload(*classify_bad_payload(payload, error)) from None
    except UnicodeDecodeError as error:
        reason = InvalidRequestError(f"a string is not valid UTF-8: {error.reason}")
        raise _BadPayload(*classify_bad_payload(payload, reason)) from None
    except RecursionError:
        reason = InvalidRequestError("the request is nested too deeply")
        raise _BadPayload(*classify_bad_payload(payload, reason)) from None
    return request


async def _then(wait: Awaitable[None], result: Any) -> Any:
    """``result``, once ``wait`` is done."""
    await wait
    return result


class _BadPayload(Exception):
    def __init__(self, request_id: int | None, error: ServerError) -> None:
        super().__init__(error.message)
        self.request_id = request_id
        self.error = error


class _Watch:
    """One watch of one connection: a :class:`sessiond.watch.Watcher` that writes events."""

    __slots__ = (
        "connection",
        "fields",
        "hub",
        "last_sent_at",
        "position",
        "prefix",
        "request_id",
        "store",
    )

    def __init__(
        self,
        connection: Connection,
        request: WatchRequest,
        *,
        fields: list[str] | None,
        hub: WatchHub,
        store: SessionStore,
    ) -> None:
        self.connection = connection
        request_id, prefix = request.id, request.prefix
        self.request_id = request_id
        self.prefix = prefix
        self.fields = fields
        self.hub = hub
        self.store = store
        self.position = 0
        self.last_sent_at = time.monotonic()

    def offer(self, change: Change) -> bool:
        connection = self.connection
        if connection.writing_paused or connection.transport is None:
            return False
        self.position = change.seq
        if change.key.startswith(self.prefix):
            self.send(self._event(change))
        return True

    def _event(self, change: Change) -> WatchEvent:
        entry = change.entry
        if entry is None:
            return WatchEvent(type="delete", seq=change.seq, key=change.key)
        if self.fields is None:
            wire = self.store.wire_value(change.key, entry)
        else:
            wire = encode_for_wire(project(entry.value(), self.fields))
        return WatchEvent(
            type="put", seq=change.seq, key=change.key, entry=wire, revision=entry.revision
        )

    def send(self, event: WatchEvent) -> None:
        self.last_sent_at = time.monotonic()
        self.connection._send_result(self.request_id, event, None)

    def dropped(self, error: LaggedError) -> None:
        self.connection.watches.pop(self.request_id, None)
        self.connection._send_error(self.request_id, error)


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
        # Plain dicts: a Counter's += costs several times more, on every request.
        self.ops: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.connections_total = 0
        self.connections_refused = 0
        self.started_at = time.monotonic()
        self.op_metrics: dict[str, OpMetrics] = {}

    def record(self, op: str, code: str, seconds: float) -> None:
        """One answered request: its op, its reply's code (``ok`` or the error), its time."""
        metrics = self.op_metrics.get(op)
        if metrics is None:
            metrics = self.op_metrics[op] = OpMetrics()
        metrics.observe(code, seconds)

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
            "requests": {op: dict(m.codes) for op, m in self.op_metrics.items()},
            "latency": {op: m.histogram() for op, m in self.op_metrics.items()},
        }

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def sweep_forever(self) -> None:
        """Close connections stuck mid-frame or idle past their timeouts; mark idle watches'
        progress."""
        while True:
            limits = self.limits
            spacing_s = min(limits.frame_timeout_s, limits.idle_timeout_s, limits.watch_progress_s)
            await asyncio.sleep(max(0.05, spacing_s / 4))
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check_timeouts(now)

    def begin_shutdown(self) -> None:
        self.stopping = True
        for connection in list(self.connections):
            connection.end_watches(ShuttingDownError("the daemon is shutting down"))

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
    """One client connection: its frames, its request queue, its replies."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.decoder = FrameDecoder(server.limits.max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[bytes] = deque()
        self.blocked = False
        self.waiting = 0
        self.reading_paused = False
        self.writing_paused = False
        self.partial_since: float | None = None
        self.last_activity = time.monotonic()
        self.outbox: list[bytearray] | None = None
        self.outbox_bytes = 0
        self.timing: tuple[str, float] | None = None
        """(op, start) of the request being answered, for the latency metrics."""
        self.watches: dict[int, _Watch] = {}
        self.peer = "?"
        self.refused = False
        self.refusal: ServerError | None = None

    @property
    def limits(self) -> Limits:
        return self.server.limits  # a reload replaces them

    @property
    def in_flight(self) -> int:
        """Requests read but not answered: queued, blocked or waiting for the disk."""
        return len(self.queue) + self.waiting

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
        errors = self.server.errors
        errors[error.code] = errors.get(error.code, 0) + 1
        transport.write(error_reply(None, error))
        if transport.can_write_eof():
            transport.write_eof()
        asyncio.get_running_loop().call_later(REFUSE_LINGER_S, transport.close)

    def _refuse_when_answered(self, error: ServerError) -> None:
        """Stop reading, answer what was read before, then refuse with ``error``."""
        self.refusal = error
        self._refuse_if_answered()

    def _refuse_if_answered(self) -> None:
        idle = self.in_flight == 0 and self.transport is not None
        if self.refusal is not None and not self.refused and idle:
            self._refuse(self.refusal)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.queue.clear()
        self.transport = None
        for watch in list(self.watches.values()):
            watch.hub.unsubscribe(watch)
        self.watches.clear()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def check_timeouts(self, now: float) -> None:
        if self.refused or self.refusal is not None:
            return
        if (
            self.partial_since is not None
            and now - self.partial_since > self.limits.frame_timeout_s
        ):
            log.info(
                "dropping %s: incomplete frame for %.1f s", self.peer, now - self.partial_since
            )
            self._refuse_when_answered(
                InvalidRequestError(
                    f"a frame stayed incomplete for more than {self.limits.frame_timeout_s} s"
                )
            )
        elif self.watches:
            self._mark_progress(now)
        elif self.in_flight == 0 and now - self.last_activity > self.limits.idle_timeout_s:
            log.debug("closing idle connection %s", self.peer)
            self.close()

    # -- flow control ---------------------------------------------------------------------

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        for watch in list(self.watches.values()):
            if self.writing_paused:
                break
            watch.hub.catch_up(watch)
        self._run_queue()
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        should_pause = (
            self.writing_paused
            or self.refusal is not None
            or self.in_flight >= self.limits.max_inflight_per_connection
        )
        if should_pause and not self.reading_paused:
            self.reading_paused = True
            transport.pause_reading()
        elif not should_pause and self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()

    # -- reading and the request queue ------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.refused or self.refusal is not None:
            return
        self.last_activity = time.monotonic()
        decoder = self.decoder
        self.queue.extend(decoder.feed(data))
        self._run_queue()
        if decoder.error is not None:
            self._refuse_when_answered(decoder.error)
            return
        if decoder.buffered_bytes:
            self.partial_since = self.partial_since or self.last_activity
        else:
            self.partial_since = None
        self._update_reading()

    def _run_queue(self) -> None:
        """Run queued requests in arrival order until the queue is empty, one of them must
        wait for its stores to load, or the peer stops reading its replies (the transport's
        buffer passed its high-water mark: :meth:`resume_writing` goes on). Replies made
        meanwhile go out in batched writes of at most a quarter of that mark, so a peer
        that never reads holds at most about one buffer and one reply of the daemon's
        memory, whatever it pipelined."""
        if self.blocked or not self.queue:
            return
        self.outbox = []
        try:
            while self.queue and not self.blocked and not self.writing_paused:
                self._start(self.queue.popleft())
        finally:
            self._flush_outbox()
            self.outbox = None
        self._refuse_if_answered()

    def _flush_outbox(self) -> None:
        outbox = self.outbox
        if outbox:
            self.outbox, self.outbox_bytes = [], 0
            self._write(outbox[0] if len(outbox) == 1 else b"".join(outbox))

    def _start(self, payload: bytes) -> None:
        """Begin one request: answer it now, or block the queue until its stores load."""
        server = self.server
        try:
            request = decode_request(payload)
        except _BadPayload as bad:
            self._send_error(bad.request_id, bad.error)
            return
        op = OP_OF_REQUEST[type(request)]
        ops = server.ops
        ops[op] = ops.get(op, 0) + 1
        self.timing = (op, _perf_counter())
        if server.stopping:
            self._send_error(request.id, ShuttingDownError("the daemon is shutting down"))
            return
        prepare = self._answer(request)
        if prepare is not None:
            self.blocked = True
            self.waiting += 1
            timing, self.timing = self.timing, None
            self.server.spawn(self._answer_after_load(request, prepare, timing))
        self.timing = None

    def _answer(self, request: Request) -> Callable[[], Awaitable[None]] | None:
        """Apply ``request`` and answer it (at once, or once durable); or, when a store it
        names must be loaded first, return the loader without doing anything."""
        registry = self.server.registry
        try:
            if isinstance(request, FlushRequest):  # nothing to load: only loaded stores are dirty
                agent = None if request.agent is None else wire_agent(request.agent)
                self._answer_later(request.id, _then(registry.flush(agent), True), None)
                return None
            if isinstance(request, UnwatchRequest):
                self._unwatch(request)
                return None
            agents = agents_of(request)
            if isinstance(request, PruneRequest):  # loads only a store that exists
                prune = registry.prune(agents[0], dry_run=request.dry_run)
                self._answer_later(request.id, prune, None)
                return None
            for_write = isinstance(request, _OPENS_FOR_WRITE) or (
                isinstance(request, ImportRequest) and request.commit
            )
            if not registry.ready(agents, for_write=for_write):
                return lambda: registry.prepare(agents, for_write=for_write)
            if isinstance(request, WatchRequest):
                self._watch(request, agents[0])
                return None
            outcome = self.server.dispatcher.execute(request, agents)
        except ServerError as error:
            self._send_error(request.id, error)
            return None
        except Exception:
            self._send_internal_error(request)
            return None
        durable = isinstance(request, ImportRequest) and request.commit
        if durable or (isinstance(request, WriteRequestBase) and request.durable):
            wait = _then(registry.wait_durable(agents), outcome.result)
            self._answer_later(request.id, wait, outcome.seq)
        else:
            self._send_result(request.id, outcome.result, outcome.seq)
        return None

    async def _answer_after_load(
        self,
        request: Request,
        prepare: Callable[[], Awaitable[None]],
        timing: tuple[str, float] | None,
    ) -> None:
        """Load what ``request`` needs, answer it, then run the requests queued behind it."""
        try:
            while prepare is not None:
                try:
                    await prepare()
                    self.timing = timing
                except ServerError as error:
                    self._send_error(request.id, error)
                    break
                except Exception:
                    self._send_internal_error(request)
                    break
                # A store may have been unloaded again meanwhile: check, and load again.
                prepare = self._answer(request)  # type: ignore[assignment]
        finally:
            self.timing = None
            self.waiting -= 1
            self.blocked = False
            if self.transport is not None:
                self._run_queue()
                self._update_reading()
                self._refuse_if_answered()

    def _answer_later(
        self, request_id: int, result: Coroutine[Any, Any, Any], seq: int | None
    ) -> None:
        """Reply with what ``result`` returns, once it does (a durable write, flush, prune)."""
        self.waiting += 1
        timing, self.timing = self.timing, None
        self.server.spawn(self._reply_when_done(request_id, result, seq, timing))

    async def _reply_when_done(
        self,
        request_id: int,
        result_of: Coroutine[Any, Any, Any],
        seq: int | None,
        timing: tuple[str, float] | None,
    ) -> None:
        try:
            result = await result_of
            self.timing = timing
        except ServerError as error:
            self._send_error(request_id, error)
        except Exception:
            log.exception("internal error while waiting for request %s", request_id)
            self._send_error(request_id, InternalError("internal error"))
        else:
            self._send_result(request_id, result, seq)
        finally:
            self.timing = None
            self.waiting -= 1
            self._update_reading()
            self._refuse_if_answered()

    # -- watches -------------------------------------------------------------------------

    def _watch(self, request: WatchRequest, agent_id: str) -> None:
        """Start a watch: a progress mark with its starting seq, then the changes."""
        limits = self.limits
        if request.id in self.watches:
            raise InvalidRequestError(f"a watch with id {request.id} is already running")
        if len(self.watches) >= limits.max_watches_per_connection:
            raise InvalidRequestError(
                f"at most {limits.max_watches_per_connection} watches per connection"
            )
        registry = self.server.registry
        fields = self.server.dispatcher.check_projection(request.fields)
        hub = registry.hub_for(agent_id)
        store = registry.store_for(agent_id, for_write=True)
        watch = _Watch(self, request, fields=fields, hub=hub, store=store)
        hub.subscribe(watch, request.since)
        self.watches[request.id] = watch
        watch.send(WatchEvent(type="progress", seq=watch.position))
        hub.catch_up(watch)

    def _unwatch(self, request: UnwatchRequest) -> None:
        watch = self.watches.pop(request.watch, None)
        if watch is not None:
            watch.hub.unsubscribe(watch)
            watch.send(WatchEvent(type="end", seq=watch.position))
        self._send_result(request.id, watch is not None, None)

    def _mark_progress(self, now: float) -> None:
        """Idle watches get a progress mark: the store's seq, a position to save."""
        for watch in list(self.watches.values()):
            hub = watch.hub
            if now - watch.last_sent_at < self.limits.watch_progress_s or watch in hub.behind:
                continue
            if self.writing_paused:
                return
            watch.position = hub.seq
            watch.send(WatchEvent(type="progress", seq=hub.seq))

    def end_watches(self, error: ServerError) -> None:
        """The daemon stops: every watch ends with ``error`` (clients watch again later)."""
        for watch in list(self.watches.values()):
            watch.hub.unsubscribe(watch)
            self._send_error(watch.request_id, error)
        self.watches.clear()

    # -- replies -------------------------------------------------------------------------

    def _send_result(self, request_id: int, result: Any, seq: int | None) -> None:
        try:
            frame = encode_reply(OkReply(request_id, True, result, seq))
        except Exception:
            log.exception("could not encode the reply to request %s", request_id)
            self._send_error(request_id, InternalError("the reply could not be encoded"))
            return
        max_reply_bytes = self.limits.max_reply_bytes
        if len(frame) - FRAME_HEADER.size > max_reply_bytes:
            self._send_error(
                request_id,
                InvalidRequestError(
                    f"the reply ({len(frame) - FRAME_HEADER.size} bytes) exceeds "
                    f"max_reply_bytes ({max_reply_bytes}): ask for less (page, fewer keys)"
                ),
            )
            return
        timing = self.timing
        if timing is not None:  # _measure("ok"), inlined: it runs for every reply
            self.timing = None
            self.server.record(timing[0], "ok", _perf_counter() - timing[1])
        self._send(frame)

    def _measure(self, code: str) -> None:
        """Count the request being answered (by op and code) and time it, once."""
        timing = self.timing
        if timing is not None:
            self.timing = None
            self.server.record(timing[0], code, time.perf_counter() - timing[1])

    def _send_internal_error(self, request: Request) -> None:
        op = OP_OF_REQUEST[type(request)]
        log.exception("internal error handling %s", op)
        self._send_error(request.id, InternalError(f"internal error handling {op}"))

    def _send_error(self, request_id: int | None, error: ServerError) -> None:
        errors = self.server.errors
        errors[error.code] = errors.get(error.code, 0) + 1
        self._measure(error.code)
        self._send(error_reply(request_id, error))

    def _send(self, frame: bytearray) -> None:
        if self.outbox is None:
            self._write(frame)
            return
        self.outbox.append(frame)
        self.outbox_bytes += len(frame)
        if self.outbox_bytes >= self.limits.max_write_buffer_bytes // 4:
            self._flush_outbox()  # the transport may pause writing now: the queue stops

    def _write(self, data: bytes | bytearray) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            # A reply may only leave once the journal records of what it acknowledges
            # reached the kernel (a kill -9 then cannot lose an acknowledged write).
            self.server.registry.append_journals()
            transport.write(data)
            self.last_activity = time.monotonic()
