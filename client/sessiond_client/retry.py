"""Retry and backoff policy as small objects (redis-py style). Pure: no I/O.

What is retried, and why that is safe: every call a client makes can be sent again —
reads are idempotent, and every write carries a ``request_token`` the daemon remembers
(see PROTOCOL.md), so a resent write is answered, not applied again (across a daemon
restart too, in ``journal`` mode). So when a connection breaks, or the daemon says it is
shutting down or busy, the calls in flight are resent on the next connection, in the
order they were first sent, ahead of any newer call.

How long: a client that has been connected keeps reconnecting, with exponential backoff
and full jitter, for ``reconnect_timeout_s`` after the connection was lost (long enough to
ride out a daemon restart); a client that has never reached the daemon gives up after
``first_connect_timeout_s`` (a wrong socket path should fail fast). Timeouts are not
retried (the caller's deadline has passed), nor are errors that a resend cannot fix
(``forbidden``, ``frame_too_large``, a protocol error).
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
    first_connect_timeout_s: float = 1.0

    def budget_s(self, *, ever_connected: bool) -> float:
        """How long to keep trying to (re)connect before failing the waiting calls."""
        return self.reconnect_timeout_s if ever_connected else self.first_connect_timeout_s

    @staticmethod
    def resendable(error: SessiondError) -> bool:
        """Whether the calls in flight when ``error`` ended a connection may be resent."""
        return isinstance(
            error, ConnectionLostError | ShuttingDownError | BusyError | DaemonUnavailableError
        )
