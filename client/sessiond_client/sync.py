"""The blocking client: thread-safe, one pipelined connection shared by all threads. Does I/O.

Threads write their requests under a send lock and wait for replies by id. There is no
reader thread: whichever waiting thread gets the read lock reads from the socket and
hands every reply it sees to its owner (leader/follower), so a single-threaded caller
pays exactly one ``sendall`` and one ``recv`` per call, with no thread hand-off. What is
in flight, in which order it is resent after a reconnect, and when a waiting call gives
up is decided by the pure :class:`~sessiond_client._pipeline.Pipeline`; the waiting
threads themselves reconnect (one at a time) when the connection is gone.

A call that times out closes the connection (every other call on it is resent on the
next one, in order): a reply arriving late can never be taken for another request's.
:meth:`Client.close` fails every call in flight at once with :class:`ClientClosedError`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sessiond_client import _core
from sessiond_client._ops_sync import SyncOperations
from sessiond_client._pipeline import PendingCall, Pipeline
from sessiond_client._watch import Watch
from sessiond_client.errors import (
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
    from sessiond_client.redis_backend.sync_transport import RedisTransport

__all__ = ["Client"]

READ_SIZE = 64 * 1024
READ_SLICE_S = 0.05
"""A blocked read wakes at least this often to check the call's deadline."""


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


class _Waiter:
    """How a thread sleeps while another one reads (made only when it has to sleep)."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event: threading.Event | None = None


class _Connection:
    """One socket and its frame decoder (replaced on every reconnect)."""

    __slots__ = ("decoder", "sock")

    def __init__(self, sock: socket.socket, max_frame_bytes: int) -> None:
        self.sock = sock
        self.decoder = FrameDecoder(max_frame_bytes)


class _SocketTransport:
    """The daemon behind a Unix socket, shared by threads."""

    def __init__(self, settings: _core.ClientSettings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.connection: _Connection | None = None
        self.state_lock = threading.Lock()  # the pipeline and the connection slot
        self.send_lock = threading.Lock()  # ids are taken and written in one step
        self.read_lock = threading.Lock()  # one leader reads at a time
        self.connect_lock = threading.Lock()  # one thread connects at a time
        self.next_attempt_at = 0.0
        self.sleepers = 0
        self.read_buffer = bytearray(READ_SIZE)
        self.read_view = memoryview(self.read_buffer)

    def call(self, call: _core.Call, timeout_s: float) -> Any:
        pending = self._submit(call, timeout_s)
        self._wait(pending, lambda: pending.done)
        return pending.result()

    def _submit(self, call: _core.Call, timeout_s: float) -> PendingCall:
        """Register a call and, when connected, write it (ids are taken in wire order)."""
        pipeline = self.pipeline
        with self.send_lock:
            with self.state_lock:
                pending = pipeline.submit(call, timeout_s)
                pending.waiter = _Waiter()
                connection = self.connection if pipeline.can_send else None
                if connection is not None:
                    frame = pipeline.frame_for(pending, time.monotonic())
            if connection is not None:
                self._send(connection, frame)
        return pending

    # -- streams (watch) -------------------------------------------------------------------

    def start_stream(self, call: _core.Call) -> PendingCall:
        return self._submit(call, self.settings.timeout_s)

    def next_event(self, stream: PendingCall) -> WatchEvent | None:
        """The stream's next event (blocking); None once it ended; its error raised."""
        self._wait(stream, lambda: bool(stream.events) or stream.done)
        with self.state_lock:
            event: WatchEvent | None = stream.events.popleft() if stream.events else None
        if event is None:
            if stream.error is not None:
                raise stream.error
            return None
        return None if event.type == "end" else event

    def stop_stream(self, stream: PendingCall) -> None:
        """Stop routing the stream's events; tell the daemon if it is still running."""
        with self.state_lock:
            was_running = stream.request_id in self.pipeline.in_flight and not stream.done
            self.pipeline.abandon(stream)
        if was_running and self.connection is not None and stream.request_id is not None:
            with contextlib.suppress(SessiondError):
                self.call(_core.unwatch_call(stream.request_id), self.settings.timeout_s)

    def _send(self, connection: _Connection, frame: bytes | bytearray) -> None:
        """Write under the send lock (held by the caller)."""
        try:
            connection.sock.sendall(frame)
        except OSError as error:
            self._lost(
                connection,
                self._refusal_waiting(connection) or ConnectionLostError(f"send failed: {error}"),
            )

    def _refusal_waiting(self, connection: _Connection) -> SessiondError | None:
        """A daemon that refuses a connection (busy, forbidden, shutting down) writes one
        error and closes; when our send then fails, that error is still waiting to be read
        and says more than the broken pipe."""
        try:
            data = connection.sock.recv(READ_SIZE, socket.MSG_DONTWAIT)
            for payload in connection.decoder.feed(data):
                reply = _core.decode_reply(payload)
                if reply.id is None:
                    return _core.reply_error(reply)
        except (OSError, SessiondError):
            return None
        return None

    # -- waiting -------------------------------------------------------------------------

    def _wait(self, pending: PendingCall, ready: Callable[[], bool]) -> None:
        """Read (or wait while another thread reads, or reconnect) until ``ready()``."""
        while not ready():
            connection = self.connection
            if connection is None:
                self._connect_or_sleep(pending, ready)
            elif self.read_lock.acquire(blocking=False):
                try:
                    if not ready() and self.connection is connection:
                        self._read_once(connection)
                finally:
                    self.read_lock.release()
                    self._wake_all()
            else:
                self._sleep(pending, ready, READ_SLICE_S)
            self._check_deadlines()

    def _sleep(self, pending: PendingCall, ready: Callable[[], bool], seconds: float) -> None:
        waiter: _Waiter = pending.waiter
        with self.state_lock:
            if ready():
                return
            event = waiter.event = waiter.event or threading.Event()
            event.clear()
            self.sleepers += 1
        try:
            event.wait(seconds)
        finally:
            with self.state_lock:
                self.sleepers -= 1

    def _wake_all(self) -> None:
        """The leader stopped reading (or the state changed): sleepers check again. A
        lone caller (no sleepers) skips the lock."""
        if not self.sleepers:
            return
        with self.state_lock:
            waiters = [p.waiter for p in self.pipeline.in_flight.values()]
            waiters += [p.waiter for p in self.pipeline.backlog]
        for waiter in waiters:
            if waiter is not None and waiter.event is not None:
                waiter.event.set()

    def _settle(self, calls: list[PendingCall]) -> None:
        for pending in calls:
            waiter: _Waiter | None = pending.waiter
            if waiter is not None and waiter.event is not None:
                waiter.event.set()

    def _check_deadlines(self) -> None:
        with self.state_lock:
            next_deadline = self.pipeline.next_deadline
            if next_deadline is None or next_deadline > time.monotonic():
                return
            expired = self.pipeline.expired(time.monotonic())
            connection = self.connection
        self._settle(expired)
        if expired and connection is not None:
            self._lost(
                connection, ConnectionLostError("an earlier call on this connection timed out")
            )

    # -- reading ---------------------------------------------------------------------------

    def _read_once(self, connection: _Connection) -> None:
        try:
            # recv_into a buffer kept for the client: recv(n) would allocate (mmap) and
            # free n bytes on every call.
            count = connection.sock.recv_into(self.read_buffer)
        except (BlockingIOError, TimeoutError):
            return  # SO_RCVTIMEO expired: nothing yet, the caller checks its deadline
        except OSError as error:
            self._lost(connection, ConnectionLostError(f"receive failed: {error}"))
            return
        if count == 0:
            self._lost(connection, ConnectionLostError("the daemon closed the connection"))
            return
        decoder = connection.decoder
        try:
            payloads = decoder.feed(self.read_view[:count].tobytes())
            with self.state_lock:
                done = [self.pipeline.on_reply(_core.decode_reply(p)) for p in payloads]
                draining = self.pipeline.draining and not self.pipeline.in_flight
            if decoder.error is not None:
                raise ProtocolError(f"reply too large: {decoder.error}")
        except SessiondError as error:
            self._lost(connection, error)
            return
        decoder.max_frame_bytes = self.pipeline.max_reply_bytes
        self._settle([pending for pending in done if pending is not None])
        if draining:
            self._lost(connection, ConnectionLostError("the daemon is shutting down"))

    def _lost(self, connection: _Connection, error: SessiondError) -> None:
        """The connection is over: resend or fail its calls (once per connection)."""
        with self.state_lock:
            if self.connection is not connection:
                return
            self.connection = None
            failed = self.pipeline.connection_lost(error, time.monotonic())
            if self.pipeline.attempts:
                self.next_attempt_at = time.monotonic() + self.pipeline.retry_delay_s()
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_RDWR)
        connection.sock.close()
        self._settle(failed)
        self._wake_all()

    # -- connecting ------------------------------------------------------------------------

    def _connect_or_sleep(self, pending: PendingCall, ready: Callable[[], bool]) -> None:
        delay_s = self.next_attempt_at - time.monotonic()
        if delay_s > 0 or not self.connect_lock.acquire(blocking=False):
            self._sleep(pending, ready, max(0.001, min(delay_s, READ_SLICE_S)))
            return
        try:
            if self.connection is None and not ready():
                self._connect()
        finally:
            self.connect_lock.release()
            self._wake_all()

    def _connect(self) -> None:
        try:
            sock = self._open()
        except SessiondError as error:
            with self.state_lock:
                failed = self.pipeline.connect_failed(error, time.monotonic())
                self.next_attempt_at = time.monotonic() + self.pipeline.retry_delay_s()
            self._settle(failed)
            return
        connection = _Connection(sock, self.pipeline.max_reply_bytes)
        with self.send_lock:
            with self.state_lock:
                if self.pipeline.closed:
                    sock.close()
                    return
                frames = self.pipeline.connection_made(time.monotonic())
                self.connection = connection
            self._send(connection, b"".join(frames))

    def _open(self) -> socket.socket:
        path = self.settings.socket_path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.settings.connect_timeout_s)
        try:
            sock.connect(path)
        except PermissionError as error:
            sock.close()
            raise ForbiddenError(f"cannot open {path}: {error}") from error
        except OSError as error:
            sock.close()
            raise DaemonUnavailableError(
                f"cannot connect to sessiond at {path}: {error}"
            ) from error
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(READ_SLICE_S))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.settings.timeout_s))
        return sock

    def close(self) -> None:
        with self.state_lock:
            failed = self.pipeline.close()
            connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
            connection.sock.close()
        self._settle(failed)


class Client(SyncOperations):
    """Blocking sessiond client; safe to share between threads. ``with Client() as c:``.

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
        self._transport: _SocketTransport | RedisTransport
        if self.settings.redis is not None:
            from sessiond_client.redis_backend.sync_transport import RedisTransport

            self._transport = RedisTransport(self.settings.redis, self.settings, self.retry)
        else:
            self._transport = _SocketTransport(self.settings, self._pipeline)

    @property
    def server_info(self) -> ServerInfo | None:
        """What the daemon said in ``hello`` on the current connection (None before)."""
        transport = self._transport
        if isinstance(transport, _SocketTransport):
            return self._pipeline.server_info
        return transport.server_info

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; calls in flight fail at once with ClientClosedError."""
        self._transport.close()

    def _call(self, call: _core.Call, timeout_s: float | None = None) -> Any:
        return self._transport.call(call, timeout_s or self.settings.timeout_s)

    def _watch(self, call: _core.Call) -> Watch:
        return Watch(self._transport, call)
