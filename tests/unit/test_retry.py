"""Unit tests for sessiond_client.retry: which failures are retried, and the backoff delays.

Pure: the policy is asked questions; the random source is injected.
"""

from __future__ import annotations

import pytest

from sessiond_client.errors import (
    BusyError,
    ConflictError,
    ConnectionLostError,
    DaemonUnavailableError,
    ForbiddenError,
    FrameTooLargeError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    ProtocolError,
    RequestTimeoutError,
    ServerError,
    SessiondError,
    ShuttingDownError,
    UnavailableError,
    UnknownOpError,
)
from sessiond_client.protocol import OPS, WRITE_OPS
from sessiond_client.retry import IDEMPOTENT_OPS, Backoff, RetryPolicy

READ_OPS = sorted(OPS - WRITE_OPS)
ALL_OPS = sorted(OPS)
policy = RetryPolicy()


def test_idempotent_ops_are_the_ops_that_change_nothing() -> None:
    # DESIGN.md §8: retries only for idempotent operations; resolve creates sessions.
    assert IDEMPOTENT_OPS == OPS - WRITE_OPS
    assert "resolve" not in IDEMPOTENT_OPS


@pytest.mark.parametrize("op", ALL_OPS)
@pytest.mark.parametrize(
    "error",
    [DaemonUnavailableError("refused"), ShuttingDownError("bye"), BusyError("full")],
    ids=type,
)
def test_nothing_was_applied_so_every_op_is_retried(op: str, error: SessiondError) -> None:
    assert policy.should_retry(error, op, elapsed_s=0.0)


@pytest.mark.parametrize("op", READ_OPS)
def test_lost_connection_retries_idempotent_ops(op: str) -> None:
    assert policy.should_retry(ConnectionLostError("eof"), op, elapsed_s=0.0)


@pytest.mark.parametrize("op", sorted(WRITE_OPS))
def test_lost_connection_does_not_retry_writes(op: str) -> None:
    # The daemon may have applied the write before the connection broke.
    assert not policy.should_retry(ConnectionLostError("eof"), op, elapsed_s=0.0)


@pytest.mark.parametrize("op", ALL_OPS)
@pytest.mark.parametrize(
    "error",
    [
        RequestTimeoutError("slow"),
        ProtocolError("garbage"),
        InvalidRequestError("bad"),
        UnknownOpError("?"),
        FrameTooLargeError("big"),
        NotFoundError("gone"),
        ConflictError("raced"),
        ForbiddenError("no"),
        UnavailableError("disk"),
        InternalError("bug"),
        ServerError("from the future", code="rate_limited"),
    ],
    ids=type,
)
def test_other_errors_are_never_retried(op: str, error: SessiondError) -> None:
    # A timeout may have been applied; the rest are answers a repeat would not change.
    assert not policy.should_retry(error, op, elapsed_s=0.0)


def test_retries_stop_once_the_reconnect_timeout_has_passed() -> None:
    short = RetryPolicy(reconnect_timeout_s=2.0)
    error = DaemonUnavailableError("refused")
    assert short.should_retry(error, "get", elapsed_s=1.999)
    assert not short.should_retry(error, "get", elapsed_s=2.0)
    assert not short.should_retry(error, "get", elapsed_s=60.0)
    assert not short.should_retry(ConnectionLostError("eof"), "get", elapsed_s=2.5)


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base_s=0.1, cap_s=1.0)
    ceilings = [backoff.delay_s(attempt, rand=lambda: 1.0) for attempt in range(6)]
    assert ceilings == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_backoff_uses_full_jitter() -> None:
    backoff = Backoff(base_s=0.1, cap_s=1.0)
    assert backoff.delay_s(2, rand=lambda: 0.0) == 0.0
    assert backoff.delay_s(2, rand=lambda: 0.5) == pytest.approx(0.2)


def test_backoff_of_a_huge_attempt_number_is_the_cap() -> None:
    assert Backoff(base_s=0.02, cap_s=3.0).delay_s(10_000, rand=lambda: 1.0) == 3.0


def test_default_delays_stay_within_the_cap() -> None:
    backoff = Backoff()
    for attempt in range(40):
        delay = backoff.delay_s(attempt)
        assert 0.0 <= delay <= backoff.cap_s
