"""Retry and backoff policy as small objects (redis-py style). Pure: no I/O.

A call is retried only when that cannot apply it twice:

- the daemon could not be reached (:class:`DaemonUnavailableError`): nothing was sent;
- the daemon answered ``shutting_down`` or ``busy``: it refused the request (or the
  connection) without applying anything;
- the connection broke with the request in flight (:class:`ConnectionLostError`) and the
  call is *retry-safe*: reads are idempotent, and every write the clients send carries a
  ``request_token`` that the daemon remembers (see PROTOCOL.md), so a resent write is
  answered, not applied again — across a daemon restart too in ``journal`` mode.

Timeouts are not retried: the caller's deadline has passed. Retries continue, with
exponential backoff and full jitter, until ``reconnect_timeout_s`` has passed since the
first attempt failed: long enough to ride out a daemon restart.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import msgspec

from sessiond_client.errors import (
    BusyError,
    ConnectionLostError,
    DaemonUnavailableError,
    SessiondError,
    ShuttingDownError,
)

__all__ = ["Backoff", "RetryPolicy"]


class Backoff(msgspec.Struct, frozen=True):
    """Exponential backoff with full jitter: attempt n waits up to ``min(cap, base * 2**n)``."""

    base_s: float = 0.02
    cap_s: float = 1.0

    def delay_s(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        ceiling_s: float = min(self.cap_s, self.base_s * 2.0 ** min(attempt, 30))
        return rand() * ceiling_s


class RetryPolicy(msgspec.Struct, frozen=True):
    backoff: Backoff = Backoff()
    reconnect_timeout_s: float = 10.0

    def should_retry(self, error: SessiondError, *, retry_safe: bool, elapsed_s: float) -> bool:
        if elapsed_s >= self.reconnect_timeout_s:
            return False
        if isinstance(error, DaemonUnavailableError | ShuttingDownError | BusyError):
            return True
        return isinstance(error, ConnectionLostError) and retry_safe
