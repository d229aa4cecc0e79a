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


@pytest.mark.parametrize(
    "error",
    [
        DaemonUnavailableError("refused"),
        ShuttingDownError("bye"),
        BusyError("full"),
        ConnectionLostError("eof"),
    ],
    ids=type,
)
def test_calls_in_flight_are_resent_after_these(error: SessiondError) -> None:
    # Nothing was applied (refused, shutting down, not reached), or the connection broke
    # and every call carries what makes a resend safe (reads; writes' request tokens).
    assert RetryPolicy.resendable(error)


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
def test_other_errors_are_never_resent(error: SessiondError) -> None:
    # A timeout means the caller's deadline has passed; the rest are answers a repeat
    # would not change.
    assert not RetryPolicy.resendable(error)


def test_the_budget_is_short_until_the_daemon_has_been_reached() -> None:
    policy = RetryPolicy(reconnect_timeout_s=10.0, first_connect_timeout_s=1.0)
    assert policy.budget_s(ever_connected=False) == 1.0
    assert policy.budget_s(ever_connected=True) == 10.0


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
