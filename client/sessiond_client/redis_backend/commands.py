"""The vocabulary between the Redis backend's operations and its transports. Pure.

Each operation (:mod:`.execute`) is a generator: it yields a command, the transport runs
it on Redis (blocking or asyncio) and sends the reply back in, and the generator finally
returns an :class:`Outcome` — the result in its wire shape (what the daemon would have
sent) and the store's ``seq`` for a write that changed it. The operations are written
once, without I/O, and run unchanged under both :class:`~sessiond_client.Client` and
:class:`~sessiond_client.AsyncClient`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, NamedTuple

import msgspec

from sessiond_client.limits import RequestLimits
from sessiond_client.redis_backend.profile import ServerProfile
from sessiond_client.retry import Backoff
from sessiond_client.targets import RedisTarget
from sessiond_client.values import wire_safe

__all__ = [
    "Command",
    "ExecContext",
    "Function",
    "Outcome",
    "Run",
    "Sleep",
    "Steps",
    "WaitDurable",
    "encode_wire",
]

_wire_encoder = msgspec.msgpack.Encoder()


class Run(msgspec.Struct, frozen=True):
    """Plain commands sent together (one round trip); the reply is the list of replies."""

    commands: list[tuple[Any, ...]]


class Function(msgspec.Struct, frozen=True):
    """A call of one of :mod:`.lua`'s functions; the reply is the function's.

    ``wait_durable``: also wait, on the same connection, until the write is on disk
    (``WAITAOF``, or nothing under ``appendfsync always``); :class:`UnavailableError` if
    it did not get there."""

    name: str
    keys: list[str]
    args: list[Any]
    wait_durable: bool = False


class WaitDurable(msgspec.Struct, frozen=True):
    """Wait until everything written so far is on disk (``flush``)."""


class Sleep(msgspec.Struct, frozen=True):
    """Back off before retrying a compare-and-set that lost a race."""

    seconds: float


Command = Run | Function | WaitDurable | Sleep


class Outcome(NamedTuple):
    """An operation's result in its wire shape, and the store's ``seq`` after a write
    that changed it (as a reply's ``seq``)."""

    result: Any
    seq: int | None = None


Steps = Generator[Command, Any, Outcome]


class ExecContext(msgspec.Struct, kw_only=True):
    """What an operation needs besides Redis: the limits, the server's profile, where
    transcripts live, the clock and session ids (injectable), and the retry backoff."""

    target: RedisTarget
    profile: ServerProfile
    limits: RequestLimits
    clock_ms: Callable[[], int]
    new_session_id: Callable[[], str]
    backoff: Backoff
    max_attempts: int = 1000
    """Compare-and-set attempts before a write gives up with ``unavailable``."""


def encode_wire(value: Any) -> msgspec.Raw:
    """``value`` as msgpack; integers wider than 64 bits become doubles (as the daemon's
    replies show them)."""
    try:
        return msgspec.Raw(_wire_encoder.encode(value))
    except OverflowError:
        return msgspec.Raw(_wire_encoder.encode(wire_safe(value)))
