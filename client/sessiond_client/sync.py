"""The blocking client: thread-safe, one pipelined connection shared by all threads. Does I/O.

Threads write their requests under a send lock and wait for replies by id. There is no
reader thread: whichever waiting thread gets the read lock reads from the socket and
hands every reply it sees to its owner (leader/follower), so a single-threaded caller
pays exactly one ``sendall`` and one ``recv`` per call, with no thread hand-off.

A call that times out closes the connection (every other in-flight call on it fails
with :class:`ConnectionLostError` and is retried if idempotent): a reply arriving late
can never be taken for another request's.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

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

__all__ = ["Client"]

READ_SIZE = 64 * 1024
READ_SLICE_S = 0.05
"""A blocked read wakes at least this often to check the call's deadline."""


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


class _Waiter:
    """One call waiting for its reply. The event is only made for a thread that has to
    sleep while another thread reads (a lone caller reads its own reply)."""

    __slots__ = ("error", "event", "reply")

    def __init__(self) -> None:
        self.reply: Reply | None = None
        self.error: SessiondError | None = None
        self.event: threading.Event | None = None

    @property
    def done(self) -> bool:
        return self.reply is not None or self.error is not None


class _Connection:
    """One socket, shared by threads: leader/follower reading, locked writing.

    The socket is blocking with ``SO_RCVTIMEO`` = :data:`READ_SLICE_S`, so a read costs one
    ``recv`` system call (no ``select`` first) and the reader still wakes up regularly to
    check its deadline; ``SO_SNDTIMEO`` bounds a send to a daemon that stopped reading us.
    """

    def __init__(self, sock: socket.socket, max_frame_bytes: int) -> None:
        self.sock = sock
        self.decoder = FrameDecoder(max_frame_bytes)
        self.pending: dict[int, _Waiter] = {}
        self.ids = itertools.count(1)
        self.state_lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.read_lock = threading.Lock()
        self.broken: SessiondError | None = None
        self.read_buffer = bytearray(READ_SIZE)
        self.read_view = memoryview(self.read_buffer)
        self.followers = 0

    def send(self, request: Request) -> _Waiter:
        waiter = _Waiter()
        with self.state_lock:
            if self.broken is not None:
                raise self.broken
            request.id = next(self.ids)
            self.pending[request.id] = waiter
        frame = _core.encode_request_frame(request)
        try:
            with self.send_lock:
                self.sock.sendall(frame)
        except OSError as error:
            self.fail(self._refusal_waiting() or ConnectionLostError(f"send failed: {error}"))
        return waiter

    def _refusal_waiting(self) -> SessiondError | None:
        """A daemon that refuses a connection (busy, forbidden, shutting down) writes one
        error and closes; when our send then fails, that error is still waiting to be read
        and says more than the broken pipe."""
        try:
            data = self.sock.recv(READ_SIZE, socket.MSG_DONTWAIT)
            for payload in self.decoder.feed(data):
                reply = _core.decode_reply(payload)
                if reply.id is None:
                    return _core.reply_error(reply)
        except (OSError, SessiondError, FrameTooLargeError):
            return None
        return None

    def wait(self, waiter: _Waiter, deadline: float) -> Reply:
        while not waiter.done:
            if time.monotonic() >= deadline:
                self.fail(ConnectionLostError("an earlier call on this connection timed out"))
                raise RequestTimeoutError("no reply within the timeout")
            if self.read_lock.acquire(blocking=False):
                try:
                    if not waiter.done:
                        self._read_once()
                finally:
                    self.read_lock.release()
                    self._wake_a_follower()
            else:
                self._sleep_as_follower(waiter, deadline)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.reply is not None
        return waiter.reply

    def _sleep_as_follower(self, waiter: _Waiter, deadline: float) -> None:
        with self.state_lock:
            if waiter.done:
                return
            event = waiter.event = waiter.event or threading.Event()
            event.clear()
            self.followers += 1
        try:
            event.wait(max(0.0, min(deadline - time.monotonic(), READ_SLICE_S)))
        finally:
            with self.state_lock:
                self.followers -= 1

    def _wake_a_follower(self) -> None:
        # The leader stopped reading: a follower still waiting must take over. A lone
        # caller (no followers) skips the lock.
        if not self.followers:
            return
        with self.state_lock:
            for waiter in self.pending.values():
                if waiter.event is not None:
                    waiter.event.set()
                    return

    def _read_once(self) -> None:
        try:
            # recv_into a buffer kept for the connection: recv(n) would allocate (mmap)
            # and free n bytes on every call.
            count = self.sock.recv_into(self.read_buffer)
        except (BlockingIOError, TimeoutError):
            return  # SO_RCVTIMEO expired: nothing yet, the caller checks its deadline
        except OSError as error:
            self.fail(ConnectionLostError(f"receive failed: {error}"))
            return
        if count == 0:
            self.fail(ConnectionLostError("the daemon closed the connection"))
            return
        try:
            for payload in self.decoder.feed(self.read_view[:count].tobytes()):
                self._deliver(_core.decode_reply(payload))
        except (SessiondError, FrameTooLargeError) as error:
            self.fail(error)

    def _deliver(self, reply: Reply) -> None:
        if reply.id is None:
            raise _core.reply_error(reply) or ProtocolError("reply without an id")
        with self.state_lock:
            waiter = self.pending.pop(reply.id, None)
            if waiter is None:
                return
            waiter.reply = reply
            event = waiter.event
        if event is not None:
            event.set()

    def fail(self, error: SessiondError) -> None:
        """Fail every pending call and close the socket; the connection is never reused."""
        with self.state_lock:
            if self.broken is None:
                self.broken = error
            pending, self.pending = self.pending, {}
        for waiter in pending.values():
            waiter.error = error
            if waiter.event is not None:
                waiter.event.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    @property
    def usable(self) -> bool:
        return self.broken is None


class Client(_core.ClientBase):
    """Blocking sessiond client; safe to share between threads. ``with Client() as c:``."""

    def _init_connection_state(self) -> None:
        self._connection: _Connection | None = None
        self._connect_lock = threading.Lock()

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
        with self._connect_lock:
            self._closed = True
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.fail(ConnectionLostError("the client was closed"))

    def _connected(self) -> _Connection:
        connection = self._connection
        if connection is not None and connection.usable:
            return connection
        with self._connect_lock:
            if self._closed:
                raise DaemonUnavailableError("the client is closed")
            if self._connection is None or not self._connection.usable:
                self._connection = _Connection(self._open(), self.settings.max_frame_bytes)
            return self._connection

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

    def _call(self, call: _core.Call, timeout_s: float | None = None) -> Any:
        try:
            return self._call_once(call, timeout_s or self.settings.timeout_s)
        except SessiondError as error:
            if not self.retry.should_retry(error, retry_safe=call.retry_safe, elapsed_s=0.0):
                raise
        return self._retry(call, timeout_s)

    def _retry(self, call: _core.Call, timeout_s: float | None) -> Any:
        """Later attempts of a call whose first attempt failed in a retryable way."""
        started = time.monotonic()
        for attempt in itertools.count():
            time.sleep(self.retry.backoff.delay_s(attempt))
            try:
                return self._call_once(call, timeout_s or self.settings.timeout_s)
            except SessiondError as error:
                if not self.retry.should_retry(
                    error, retry_safe=call.retry_safe, elapsed_s=time.monotonic() - started
                ):
                    raise
        raise AssertionError("unreachable")

    def _call_once(self, call: _core.Call, timeout_s: float) -> Any:
        connection = self._connected()
        waiter = connection.send(call.request)
        try:
            reply = connection.wait(waiter, time.monotonic() + timeout_s)
        except RequestTimeoutError:
            raise RequestTimeoutError(f"{call.op} got no reply within {timeout_s} s") from None
        return _core.reply_result(reply, call.convert)

    # -- operations (same names and parameters as AsyncClient) -------------------------

    def hello(self) -> ServerInfo:
        """Protocol version, server name and version, and the daemon's frame limit."""
        result: ServerInfo = self._call(_core.hello_call(self.client_name))
        return result

    def get(self, key: str, *, agent: str | None = None) -> Session | None:
        """The entry stored under ``key``, or ``None``."""
        result: Session | None = self._call(_core.get_call(key, agent))
        return result

    def get_many(self, keys: Sequence[str], *, agent: str | None = None) -> dict[str, Session]:
        """The entries of the keys that exist (missing keys are absent from the map)."""
        result: dict[str, Session] = self._call(_core.get_many_call(keys, agent))
        return result

    def list(
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
        result: SessionPage = self._call(
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

    def patch(
        self,
        key: str,
        patch: Mapping[str, Any],
        *,
        agent: str | None = None,
        if_revision: str | None = None,
        durable: bool = False,
    ) -> Session:
        """Merge ``patch`` into the entry (creating it); a ``None`` value deletes a field."""
        result: Session = self._call(
            _core.patch_call(
                key=key, patch=patch, agent=agent, if_revision=if_revision, durable=durable
            )
        )
        return result

    def update(
        self,
        key: str,
        patch: Mapping[str, Any],
        *,
        agent: str | None = None,
        if_revision: str | None = None,
        durable: bool = False,
    ) -> Session | None:
        """Merge ``patch`` only if the entry exists; ``None`` if it does not."""
        result: Session | None = self._call(
            _core.update_call(
                key=key, patch=patch, agent=agent, if_revision=if_revision, durable=durable
            )
        )
        return result

    def replace(
        self,
        key: str,
        entry: Mapping[str, Any],
        *,
        agent: str | None = None,
        if_revision: str | None = None,
        durable: bool = False,
    ) -> Session:
        """Store ``entry`` exactly as given (``sessionId`` required)."""
        result: Session = self._call(
            _core.replace_call(
                key=key, entry=entry, agent=agent, if_revision=if_revision, durable=durable
            )
        )
        return result

    def update_last_route(
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
        result: Session = self._call(
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

    def delete(
        self,
        key: str,
        *,
        agent: str | None = None,
        if_revision: str | None = None,
        durable: bool = False,
    ) -> bool:
        """Remove the entry; ``True`` if it existed."""
        result: bool = self._call(
            _core.delete_call(key=key, agent=agent, if_revision=if_revision, durable=durable)
        )
        return result

    def resolve(
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
        result: Resolution = self._call(
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

    def flush(self, *, agent: str | None = None) -> bool:
        """Return once everything accepted so far is written to the store file."""
        result: bool = self._call(_core.flush_call(agent), timeout_s=FLUSH_TIMEOUT_S)
        return result

    def stats(self) -> dict[str, Any]:
        """The daemon's counters (per op, connections, stores, flushes, uptime)."""
        result: dict[str, Any] = self._call(_core.stats_call())
        return result

    def update_with(
        self,
        key: str,
        fn: Callable[[Session], Mapping[str, Any] | None],
        *,
        agent: str | None = None,
        durable: bool = False,
        max_attempts: int = 100,
    ) -> Session | None:
        """Read → ``fn(session)`` → ``update(if_revision=...)``, retried on conflict.

        ``fn`` returns a patch, or ``None`` for "no change" (``{}`` still moves
        ``updatedAt``). Returns the updated session, the unchanged one, or ``None`` if the
        key does not exist.
        """
        for attempt in range(max_attempts):
            session = self.get(key, agent=agent)
            if session is None:
                return None
            patch = _core.patch_from_update(fn(session))
            if patch is None:
                return session
            with contextlib.suppress(ConflictError):
                return self.update(
                    key, patch, agent=agent, if_revision=session.revision, durable=durable
                )
            time.sleep(self.retry.backoff.delay_s(min(attempt, 4)))
        raise ConflictError(f"update_with({key!r}) kept conflicting after {max_attempts} attempts")
