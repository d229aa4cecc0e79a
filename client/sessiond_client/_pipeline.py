"""The calls a client has in flight, across connections: ids, order, resends, deadlines,
and the client's lifecycle. Pure: no I/O, no threads, no event loop — both shells (the
blocking :mod:`~sessiond_client.sync` and the asyncio :mod:`~sessiond_client.aio`) drive
one :class:`Pipeline` and only move bytes.

Order is the promise kept here. Request ids grow by one per frame written, for the whole
life of the client, so id order is wire order. When a connection ends while calls are in
flight (the daemon restarted, or said it is shutting down or busy), those calls go back
to a backlog and are sent again on the next connection — first the ones already sent,
in their original order, then the ones made meanwhile — so the daemon, which applies the
requests of one connection in order, never applies a later write before an earlier one.
Every new connection starts with ``hello`` (pipelined, no extra round trip), which tells
the client the daemon's limits (replies up to ``max_reply_bytes``).

Lifecycle: ``open`` → ``closed`` (:meth:`Pipeline.close`: every call in flight fails at
once with :class:`ClientClosedError`, and so does every later call). A connection lost
starts the reconnect budget of :class:`~sessiond_client.retry.RetryPolicy`; when it runs
out the waiting calls fail with the error that ended the connection (or the last
connect error).
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

from sessiond_client import _core
from sessiond_client.errors import (
    ClientClosedError,
    ConnectionLostError,
    ProtocolError,
    RequestTimeoutError,
    SessiondError,
    ShuttingDownError,
)
from sessiond_client.protocol import DEFAULT_MAX_FRAME_BYTES, Reply, WatchRequest
from sessiond_client.results import ServerInfo
from sessiond_client.retry import RetryPolicy

__all__ = ["PendingCall", "Pipeline"]


class PendingCall:
    """One call: its request, where it is, and how it ended. ``waiter`` belongs to the shell."""

    __slots__ = (
        "call",
        "deadline",
        "ended",
        "error",
        "events",
        "internal",
        "order",
        "reply",
        "request_id",
        "timeout_s",
        "waiter",
    )

    def __init__(self, call: _core.Call, timeout_s: float, order: int) -> None:
        self.call = call
        self.timeout_s = timeout_s
        self.order = order
        self.request_id: int | None = None
        self.deadline: float | None = None
        self.reply: Reply | None = None
        self.error: SessiondError | None = None
        self.waiter: Any = None
        self.internal = False
        self.events: deque[Any] = deque()
        """A streaming call's (``watch``) events not yet taken by its reader."""
        self.ended = False

    @property
    def streaming(self) -> bool:
        return isinstance(self.call.request, WatchRequest)

    @property
    def done(self) -> bool:
        """Nothing more will come: a reply (or for a stream, its end) or an error."""
        if self.streaming:
            return self.ended or self.error is not None
        return self.reply is not None or self.error is not None

    def result(self) -> Any:
        """The call's converted result, or its error raised."""
        if self.error is not None:
            raise self.error
        assert self.reply is not None
        return _core.reply_result(self.reply, self.call.convert)


class Pipeline:
    """Every call of one client not yet answered, and the state of its connection."""

    def __init__(self, retry: RetryPolicy, client_name: str | None = None) -> None:
        self.retry = retry
        self.client_name = client_name
        self.ids = itertools.count(1)
        self.orders = itertools.count(1)
        self.in_flight: dict[int, PendingCall] = {}
        self.backlog: list[PendingCall] = []
        self.connected = False
        self.draining = False
        self.ever_connected = False
        self.lost_at: float | None = None
        self.last_error: SessiondError | None = None
        self.attempts = 0
        self.closed = False
        self.server_info: ServerInfo | None = None
        self.max_reply_bytes = DEFAULT_MAX_FRAME_BYTES

    # -- calls ---------------------------------------------------------------------------

    def submit(self, call: _core.Call, timeout_s: float) -> PendingCall:
        """A new call. When :attr:`can_send` is true the shell sends it at once with
        :meth:`frame_for`; otherwise it waits in the backlog for the next connection."""
        if self.closed:
            raise ClientClosedError("the client is closed")
        pending = PendingCall(call, timeout_s, next(self.orders))
        if not self.can_send:
            self.backlog.append(pending)
        return pending

    @property
    def can_send(self) -> bool:
        return self.connected and not self.draining and not self.backlog

    def frame_for(self, pending: PendingCall, now: float) -> bytearray:
        """The frame that sends ``pending`` now, with the next id (call in wire order)."""
        request_id = next(self.ids)
        pending.request_id = request_id
        pending.call.request.id = request_id
        pending.deadline = now + pending.timeout_s
        self.in_flight[request_id] = pending
        return _core.encode_request_frame(pending.call.request)

    def on_reply(self, reply: Reply) -> PendingCall | None:
        """Route a reply to its call; None if nobody waits for it any more. A call the
        daemon refused because it is stopping goes back to the backlog."""
        if reply.id is None:
            raise _core.reply_error(reply) or ProtocolError("reply without an id")
        pending = self.in_flight.get(reply.id)
        if pending is None:
            return None
        error = _core.reply_error(reply)
        if isinstance(error, ShuttingDownError):
            self.draining = True  # nothing more is sent on this connection
            del self.in_flight[reply.id]
            self.backlog.append(pending)
            return None
        if pending.streaming and error is None:
            return self._stream_event(pending, reply)
        del self.in_flight[reply.id]
        pending.reply = reply
        if pending.streaming:
            pending.error = error  # a watch ends with its error (compacted, lagged...)
        if pending.internal:
            self._hello_answered(pending)
            return None
        return pending

    def _stream_event(self, pending: PendingCall, reply: Reply) -> PendingCall:
        """One more reply of a watch: keep it, and resume after it if the watch is resent."""
        event = _core.reply_result(reply, pending.call.convert)
        pending.deadline = None  # started: events come when changes do
        request = pending.call.request
        assert isinstance(request, WatchRequest)
        request.since = event.seq
        pending.events.append(event)
        if event.type == "end":
            pending.ended = True
            self.in_flight.pop(reply.id or 0, None)
        return pending

    def _hello_answered(self, pending: PendingCall) -> None:
        try:
            info = pending.result()
        except SessiondError as error:
            raise ProtocolError(f"the daemon refused this client's hello: {error}") from error
        self.server_info = info
        self.max_reply_bytes = info.max_reply_bytes
        # The daemon answered: this connection works, and the reconnect budget resets.
        self.ever_connected = True
        self.lost_at, self.attempts, self.last_error = None, 0, None

    def abandon(self, pending: PendingCall) -> None:
        """The caller stopped waiting (cancelled): forget the call."""
        if pending.request_id is not None:
            self.in_flight.pop(pending.request_id, None)
        if pending in self.backlog:
            self.backlog.remove(pending)

    def expired(self, now: float) -> list[PendingCall]:
        """Calls in flight past their deadline, failed with :class:`RequestTimeoutError`.
        The shell then drops the connection: a late reply is never taken for another."""
        late = [p for p in self.in_flight.values() if p.deadline is not None and p.deadline <= now]
        for pending in late:
            del self.in_flight[pending.request_id]  # type: ignore[arg-type]
            pending.error = RequestTimeoutError(
                f"{pending.call.op} got no reply within {pending.timeout_s} s"
            )
        return late

    @property
    def next_deadline(self) -> float | None:
        deadlines = [p.deadline for p in self.in_flight.values() if p.deadline is not None]
        return min(deadlines, default=None)

    @property
    def waiting(self) -> bool:
        """Whether any user call is unanswered (in flight or waiting for a connection)."""
        return any(not p.internal for p in self.in_flight.values()) or bool(self.backlog)

    # -- connections ---------------------------------------------------------------------

    def connection_made(self, now: float) -> list[bytearray]:
        """A new connection: the frames to write first (hello, then the backlog in order)."""
        self.connected, self.draining = True, False
        hello = PendingCall(_core.hello_call(self.client_name), 30.0, 0)
        hello.internal = True
        backlog, self.backlog = self._in_wire_order(self.backlog), []
        return [self.frame_for(hello, now), *(self.frame_for(p, now) for p in backlog)]

    def connection_lost(self, error: SessiondError, now: float) -> list[PendingCall]:
        """The connection ended. Calls in flight join the backlog (to be resent in their
        order) when ``error`` allows it; otherwise every waiting call fails. Returns the
        calls that failed."""
        self.connected = self.draining = False
        in_flight = [p for p in self.in_flight.values() if not p.internal]
        self.in_flight = {}
        if self.lost_at is None:
            self.lost_at = now
        else:
            self.attempts += 1  # lost again before the daemon answered: back off
        self.last_error = error
        budget_s = self.retry.budget_s(ever_connected=self.ever_connected)
        if not self.retry.resendable(error) or now - self.lost_at >= budget_s:
            return self._fail_all(in_flight + self.backlog, error)
        failed = [p for p in in_flight if not p.call.retry_safe]
        self.backlog = self._in_wire_order(
            [p for p in in_flight if p.call.retry_safe] + self.backlog
        )
        for pending in failed:
            pending.error = error
        return failed

    def connect_failed(self, error: SessiondError, now: float) -> list[PendingCall]:
        """A connect attempt failed. Within the budget, nothing fails (try again after
        :meth:`retry_delay_s`); past it, the waiting calls fail with ``error``."""
        self.attempts += 1
        if self.lost_at is None:
            self.lost_at = now
        if not self.retry.resendable(error):
            return self._fail_all(self.backlog, error)
        self.last_error = error
        budget_s = self.retry.budget_s(ever_connected=self.ever_connected)
        if now - self.lost_at < budget_s:
            return []
        return self._fail_all(self.backlog, error)

    def retry_delay_s(self) -> float:
        return self.retry.backoff.delay_s(self.attempts)

    def _fail_all(self, calls: list[PendingCall], error: SessiondError) -> list[PendingCall]:
        for pending in calls:
            pending.error = error
        self.backlog = [p for p in self.backlog if not p.done]
        self.lost_at = None  # the next call starts a new budget
        self.attempts = 0
        return calls

    @staticmethod
    def _in_wire_order(calls: list[PendingCall]) -> list[PendingCall]:
        """Calls sent before first, by their last id; then the rest as they were made."""
        return sorted(calls, key=lambda p: (p.request_id is None, p.request_id or 0, p.order))

    def close(self) -> list[PendingCall]:
        """Close the client: every unanswered call fails with :class:`ClientClosedError`."""
        self.closed = True
        calls = [p for p in self.in_flight.values() if not p.internal] + self.backlog
        self.in_flight, self.backlog = {}, []
        error = ClientClosedError("the client was closed while the call was in flight")
        for pending in calls:
            pending.error = error
        return calls

    @staticmethod
    def lost(message: str) -> ConnectionLostError:
        return ConnectionLostError(message)
