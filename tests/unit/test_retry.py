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
from sessiond_client.retry import Backoff, RetryPolicy

policy = RetryPolicy()


@pytest.mark.parametrize("retry_safe", [True, False])
@pytest.mark.parametrize(
    "error",
    [DaemonUnavailableError("refused"), ShuttingDownError("bye"), BusyError("full")],
    ids=type,
)
def test_nothing_was_applied_so_every_call_is_retried(
    retry_safe: bool, error: SessiondError
) -> None:
    assert policy.should_retry(error, retry_safe=retry_safe, elapsed_s=0.0)


def test_lost_connection_retries_only_retry_safe_calls() -> None:
    # The daemon may have applied the request before the connection broke: only a call
    # that cannot be applied twice (a read, or a write with a request token) is resent.
    assert policy.should_retry(ConnectionLostError("eof"), retry_safe=True, elapsed_s=0.0)
    assert not policy.should_retry(ConnectionLostError("eof"), retry_safe=False, elapsed_s=0.0)


@pytest.mark.parametrize("retry_safe", [True, False])
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
def test_other_errors_are_never_retried(retry_safe: bool, error: SessiondError) -> None:
    # A timeout means the caller's deadline has passed; the rest are answers a repeat
    # would not change.
    assert not policy.should_retry(error, retry_safe=retry_safe, elapsed_s=0.0)


def test_retries_stop_once_the_reconnect_timeout_has_passed() -> None:
    short = RetryPolicy(reconnect_timeout_s=2.0)
    error = DaemonUnavailableError("refused")
    assert short.should_retry(error, retry_safe=True, elapsed_s=1.999)
    assert not short.should_retry(error, retry_safe=True, elapsed_s=2.0)
    assert not short.should_retry(error, retry_safe=True, elapsed_s=60.0)
    assert not short.should_retry(ConnectionLostError("eof"), retry_safe=True, elapsed_s=2.5)


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
