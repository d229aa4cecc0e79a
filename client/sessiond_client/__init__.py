"""sessiond_client: talk to the sessiond session store from bot processes.

Everything a bot process needs, depending on msgspec alone: the blocking
:class:`Client` and the asyncio :class:`AsyncClient` (same methods, same parameters; a
target is the daemon's socket, or a Redis/Valkey URL with the ``redis`` extra installed:
:mod:`sessiond_client.targets`),
the typed results, the error tree rooted at :class:`SessiondError`, and — in submodules
— the wire protocol (:mod:`sessiond_client.protocol`), the entry shape
(:mod:`sessiond_client.entry`) and the original gateway's pure key and path functions
(:mod:`sessiond_client.keys`, :mod:`sessiond_client.paths`). Importing it does no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessiond_client.entry import SessionEntry
from sessiond_client.errors import (
    BusyError,
    ClientClosedError,
    CompactedError,
    ConflictError,
    ConnectionLostError,
    DaemonUnavailableError,
    ForbiddenError,
    FrameTooLargeError,
    InternalError,
    InvalidRequestError,
    LaggedError,
    NotFoundError,
    ProtocolError,
    RequestTimeoutError,
    ServerError,
    SessiondError,
    ShuttingDownError,
    TransportError,
    UnavailableError,
    UnknownOpError,
)
from sessiond_client.protocol import PROTOCOL_VERSION
from sessiond_client.results import Resolution, ServerInfo, Session, SessionPage, WatchEvent
from sessiond_client.retry import Backoff, RetryPolicy
from sessiond_client.sync import Client

__all__ = [
    "PROTOCOL_VERSION",
    "AsyncClient",
    "Backoff",
    "BusyError",
    "Client",
    "ClientClosedError",
    "CompactedError",
    "ConflictError",
    "ConnectionLostError",
    "DaemonUnavailableError",
    "ForbiddenError",
    "FrameTooLargeError",
    "InternalError",
    "InvalidRequestError",
    "LaggedError",
    "NotFoundError",
    "ProtocolError",
    "RequestTimeoutError",
    "Resolution",
    "RetryPolicy",
    "ServerError",
    "ServerInfo",
    "Session",
    "SessionEntry",
    "SessionPage",
    "SessiondError",
    "ShuttingDownError",
    "TransportError",
    "UnavailableError",
    "UnknownOpError",
    "WatchEvent",
]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from sessiond_client.aio import AsyncClient


def __getattr__(name: str) -> Any:
    # AsyncClient pulls in asyncio (~80 ms); a bot that only uses Client or the pure
    # keys/paths modules should not pay for it at import.
    if name == "AsyncClient":
        from sessiond_client.aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'sessiond_client' has no attribute {name!r}")
