"""Unit tests for sessiond_client._pipeline: ids, order across reconnects, budgets, close.

Pure: frames are decoded back into requests, replies are built as the daemon sends them,
and time is a number the test passes in.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sessiond_client import _core
from sessiond_client._pipeline import PendingCall, Pipeline
from sessiond_client.errors import (
    BusyError,
    ClientClosedError,
    ConnectionLostError,
    DaemonUnavailableError,
    ForbiddenError,
    ProtocolError,
    RequestTimeoutError,
)
from sessiond_client.protocol import HelloRequest, PatchRequest, Reply, Request
from sessiond_client.retry import Backoff, RetryPolicy

request_decoder: msgspec.msgpack.Decoder[Request] = msgspec.msgpack.Decoder(Request)
HELLO = {
    "protocol": 1,
    "server": "sessiond",
    "version": "t",
    "max_frame_bytes": 1 << 20,
    "max_reply_bytes": 64 << 20,
}
POLICY = RetryPolicy(Backoff(base_s=0.01, cap_s=0.1), reconnect_timeout_s=10.0)


def requests_of(frames: list[bytearray]) -> list[Request]:
    return [request_decoder.decode(bytes(frame[4:])) for frame in frames]


def reply(request_id: int | None, result: Any = None, **error: str) -> Reply:
    body: dict[str, Any] = {"id": request_id, "ok": not error}
    body.update({"error": error} if error else {"result": result})
    return msgspec.msgpack.decode(msgspec.msgpack.encode(body), type=Reply)


def patch(n: int) -> _core.Call:
    return _core.patch_call(
        key="agent:main:k", patch={"n": n}, agent=None, if_revision=None, durable=False
    )


def connect(pipeline: Pipeline, now: float = 0.0) -> list[Request]:
    """A new connection, with the daemon's hello answered."""
    requests = requests_of(pipeline.connection_made(now))
    hello = requests[0]
    assert isinstance(hello, HelloRequest)
    assert pipeline.on_reply(reply(hello.id, HELLO)) is None  # internal: nobody waits
    return requests[1:]


def send(pipeline: Pipeline, call: _core.Call, now: float = 0.0) -> tuple[PendingCall, int]:
    pending = pipeline.submit(call, timeout_s=5.0)
    assert pipeline.can_send
    (request,) = requests_of([pipeline.frame_for(pending, now)])
    return pending, request.id


def ns(requests: list[Request]) -> list[int]:
    return [r.patch["n"] for r in requests if isinstance(r, PatchRequest)]


def test_ids_grow_across_connections_so_a_late_reply_is_never_misrouted() -> None:
    pipeline = Pipeline(POLICY)
    connect(pipeline)
    first, first_id = send(pipeline, patch(1))
    pipeline.connection_lost(ConnectionLostError("eof"), now=1.0)
    (resent,) = connect(pipeline, now=1.0)
    assert resent.id > first_id
    assert pipeline.on_reply(reply(first_id, {})) is None  # the old id answers nothing
    assert not first.done


def test_calls_in_flight_are_resent_in_their_original_order_before_newer_ones() -> None:
    pipeline = Pipeline(POLICY)
    connect(pipeline)
    for n in range(1, 6):
        send(pipeline, patch(n))
    pipeline.connection_lost(ConnectionLostError("daemon restarted"), now=1.0)
    later = [pipeline.submit(patch(n), timeout_s=5.0) for n in (6, 7)]
    assert all(p in pipeline.backlog for p in later)  # nothing is sent while disconnected
    resent = connect(pipeline, now=2.0)
    assert ns(resent) == [1, 2, 3, 4, 5, 6, 7]
    assert [r.id for r in resent] == sorted(r.id for r in resent)
    tokens = {r.patch["n"]: r.request_token for r in resent if isinstance(r, PatchRequest)}
    assert len(set(tokens.values())) == 7  # each call keeps its own token across resends


def test_a_call_answered_before_the_loss_is_not_resent() -> None:
    pipeline = Pipeline(POLICY)
    connect(pipeline)
    answered, answered_id = send(pipeline, patch(1))
    send(pipeline, patch(2))
    done = pipeline.on_reply(reply(answered_id, {"key": "k", "entry": {}, "revision": "r"}))
    assert done is answered and answered.done
    pipeline.connection_lost(ConnectionLostError("eof"), now=1.0)
    assert ns(connect(pipeline, now=1.0)) == [2]


def test_shutting_down_holds_new_calls_until_the_next_connection() -> None:
    pipeline = Pipeline(POLICY)
    connect(pipeline)
    refused, refused_id = send(pipeline, patch(1))
    assert pipeline.on_reply(reply(refused_id, code="shutting_down", message="bye")) is None
    assert not refused.done and pipeline.draining and not pipeline.can_send
    pipeline.submit(patch(2), timeout_s=5.0)
    pipeline.connection_lost(ConnectionLostError("eof"), now=1.0)
    assert ns(connect(pipeline, now=1.5)) == [1, 2]


def test_a_busy_daemon_is_retried_with_backoff_until_the_budget() -> None:
    pipeline = Pipeline(RetryPolicy(reconnect_timeout_s=1.0))
    connect(pipeline)
    pending, _ = send(pipeline, patch(1))
    pipeline.connection_lost(ConnectionLostError("restart"), now=10.0)
    pipeline.connection_made(10.1)  # accepted, then refused before hello was answered
    assert pipeline.connection_lost(BusyError("full"), now=10.2) == []
    assert pipeline.attempts == 1  # the next connect waits retry_delay_s()
    pipeline.connection_made(10.5)
    failed = pipeline.connection_lost(BusyError("full"), now=11.1)
    assert failed == [pending]
    with pytest.raises(BusyError):
        pending.result()


def test_a_client_that_never_reached_the_daemon_gives_up_after_the_first_budget() -> None:
    pipeline = Pipeline(RetryPolicy(reconnect_timeout_s=10.0, first_connect_timeout_s=1.0))
    pending = pipeline.submit(patch(1), timeout_s=5.0)
    error = DaemonUnavailableError("no such file")
    assert pipeline.connect_failed(error, now=0.0) == []
    assert pipeline.connect_failed(error, now=0.9) == []
    assert pipeline.connect_failed(error, now=1.0) == [pending]
    with pytest.raises(DaemonUnavailableError):
        pending.result()


def test_once_connected_the_longer_reconnect_budget_applies() -> None:
    pipeline = Pipeline(RetryPolicy(reconnect_timeout_s=10.0, first_connect_timeout_s=1.0))
    connect(pipeline)
    pending, _ = send(pipeline, patch(1))
    pipeline.connection_lost(ConnectionLostError("daemon gone"), now=100.0)
    error = DaemonUnavailableError("refused")
    assert pipeline.connect_failed(error, now=105.0) == []
    assert pipeline.connect_failed(error, now=110.0) == [pending]
    with pytest.raises(DaemonUnavailableError, match="refused"):
        pending.result()


@pytest.mark.parametrize("error", [ForbiddenError("uid"), ProtocolError("garbage")], ids=type)
def test_an_error_a_resend_cannot_fix_fails_every_call(error: Exception) -> None:
    pipeline = Pipeline(POLICY)
    connect(pipeline)
    in_flight, _ = send(pipeline, patch(1))
    assert pipeline.connection_lost(error, now=1.0) == [in_flight]  # type: ignore[arg-type]
    with pytest.raises(type(error)):
        in_flight.result()


def test_a_daemon_that_refuses_hello_is_a_protocol_error() -> None:
    pipeline = Pipeline(POLICY)
    (hello,) = requests_of(pipeline.connection_made(0.0))
    with pytest.raises(ProtocolError, match="speaks protocol 1"):
        pipeline.on_reply(
            reply(hello.id, code="invalid_request", message="this daemon speaks protocol 1")
        )


def test_hello_raises_the_reply_limit_the_client_accepts() -> None:
    pipeline = Pipeline(POLICY)
    assert pipeline.max_reply_bytes == 16 << 20
    connect(pipeline)
    assert pipeline.max_reply_bytes == 64 << 20
    assert pipeline.server_info is not None and pipeline.server_info.version == "t"


def test_expired_calls_fail_with_a_timeout_and_leave_the_others() -> None:
    pipeline = Pipeline(POLICY)
    connect(pipeline)
    early = pipeline.submit(patch(1), timeout_s=1.0)
    pipeline.frame_for(early, 0.0)
    late = pipeline.submit(patch(2), timeout_s=5.0)
    pipeline.frame_for(late, 0.0)
    assert pipeline.next_deadline == 1.0
    assert pipeline.expired(0.5) == []
    assert pipeline.expired(1.0) == [early]
    with pytest.raises(RequestTimeoutError):
        early.result()
    assert not late.done and pipeline.next_deadline == 5.0


def test_close_fails_every_waiting_call_at_once_and_every_later_one() -> None:
    pipeline = Pipeline(POLICY)
    connect(pipeline)
    in_flight, _ = send(pipeline, patch(1))
    pipeline.connection_lost(ConnectionLostError("eof"), now=1.0)
    queued = pipeline.submit(patch(2), timeout_s=5.0)
    assert set(pipeline.close()) == {in_flight, queued}
    for pending in (in_flight, queued):
        with pytest.raises(ClientClosedError):
            pending.result()
    with pytest.raises(ClientClosedError):
        pipeline.submit(patch(3), timeout_s=5.0)


def test_an_abandoned_call_is_neither_answered_nor_resent() -> None:
    pipeline = Pipeline(POLICY)
    connect(pipeline)
    cancelled, cancelled_id = send(pipeline, patch(1))
    send(pipeline, patch(2))
    pipeline.abandon(cancelled)
    assert pipeline.on_reply(reply(cancelled_id, {})) is None
    pipeline.connection_lost(ConnectionLostError("eof"), now=1.0)
    assert ns(connect(pipeline, now=1.0)) == [2]
