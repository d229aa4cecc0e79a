"""The sessiond exception tree and the wire error-code table. Pure: no I/O.

Every failure a client can see is a :class:`SessiondError`:

- :class:`TransportError` — the connection could not be made or broke
  (:class:`DaemonUnavailableError`, :class:`ConnectionLostError`,
  :class:`RequestTimeoutError`).
- :class:`ProtocolError` — the peer sent something that is not this protocol.
- :class:`ServerError` — the daemon answered ``ok: false``; one subclass per wire
  code (``invalid_request`` → :class:`InvalidRequestError`, ...). An unknown code
  maps to :class:`ServerError` itself so a newer daemon never breaks an older client.

Builtin names (``ConnectionError``, ``TimeoutError``) are deliberately not shadowed.
The daemon raises the same server-error classes from its pure core; the server
turns them into ``{"code", "message"}`` replies with :func:`error_code_of`.
"""

from __future__ import annotations

from typing import ClassVar, Final

__all__ = [
    "BusyError",
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
    "ServerError",
    "SessiondError",
    "ShuttingDownError",
    "TransportError",
    "UnavailableError",
    "UnknownOpError",
    "error_code_of",
    "server_error_for",
]


class SessiondError(Exception):
    """Root of every error raised by the sessiond client and daemon core."""


class ClientClosedError(SessiondError):
    """The client was closed: calls in flight fail with this at once, new calls too."""


class TransportError(SessiondError):
    """The request could not be delivered or its reply could not be received."""


class DaemonUnavailableError(TransportError):
    """Connecting to the daemon's socket failed (not running, refused, wrong path)."""


class ConnectionLostError(TransportError):
    """The connection closed while requests were in flight."""


class RequestTimeoutError(TransportError):
    """No reply arrived within the call's timeout; the connection is discarded."""


class ProtocolError(SessiondError):
    """The peer sent bytes that do not follow the sessiond wire protocol."""


class ServerError(SessiondError):
    """The daemon answered with ``ok: false``. ``code`` is the wire error code."""

    code: ClassVar[str] = "server_error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            # An unknown code from a newer daemon keeps its wire spelling.
            self.code = code  # type: ignore[misc]

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_server_error, (type(self), self.message, self.code))


def _rebuild_server_error(cls: type[ServerError], message: str, code: str) -> ServerError:
    return cls(message, code=code)


def _rebuild_compacted(message: str, oldest_seq: int | None) -> ServerError:
    return CompactedError(message, oldest_seq=oldest_seq)


class InvalidRequestError(ServerError):
    """The request was not valid msgpack, or failed validation (types, sizes, names)."""

    code = "invalid_request"


class UnknownOpError(ServerError):
    """The request named an operation this daemon does not know."""

    code = "unknown_op"


class FrameTooLargeError(ServerError):
    """The frame's announced length exceeded the daemon's limit; it closed the connection."""

    code = "frame_too_large"


class NotFoundError(ServerError):
    """The named thing (agent store, file) does not exist."""

    code = "not_found"


class ConflictError(ServerError):
    """``if_revision`` did not match the entry's current revision."""

    code = "conflict"


class ForbiddenError(ServerError):
    """The peer's credentials are not allowed, or a name would escape the state dir."""

    code = "forbidden"


class UnavailableError(ServerError):
    """Persistence is failing (disk full, I/O error) or a store is quarantined."""

    code = "unavailable"


class BusyError(ServerError):
    """A limit was reached (connections, in-flight requests); retry later."""

    code = "busy"


class ShuttingDownError(ServerError):
    """The daemon is stopping and no longer accepts this request."""

    code = "shutting_down"


class InternalError(ServerError):
    """A bug in the daemon; it logged a traceback and goes on serving."""

    code = "internal"


class CompactedError(ServerError):
    """``watch`` asked for changes older than the history the daemon keeps.

    ``oldest_seq`` is the oldest sequence number still available: list the store (its
    result carries the ``seq`` it reflects) and watch again from there."""

    code = "compacted"

    def __init__(
        self, message: str = "", *, code: str | None = None, oldest_seq: int | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.oldest_seq = oldest_seq

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_compacted, (self.message, self.oldest_seq))


class LaggedError(ServerError):
    """A watcher fell too far behind the changes and was dropped; watch again from the
    last ``seq`` it processed."""

    code = "lagged"


_SERVER_ERRORS_BY_CODE: Final[dict[str, type[ServerError]]] = {
    cls.code: cls
    for cls in (
        InvalidRequestError,
        UnknownOpError,
        FrameTooLargeError,
        NotFoundError,
        ConflictError,
        ForbiddenError,
        UnavailableError,
        BusyError,
        ShuttingDownError,
        InternalError,
        CompactedError,
        LaggedError,
    )
}

ERROR_CODES: Final[tuple[str, ...]] = tuple(_SERVER_ERRORS_BY_CODE)


def server_error_for(code: str, message: str, *, oldest_seq: int | None = None) -> ServerError:
    """Build the exception for a wire error; unknown codes give a plain :class:`ServerError`."""
    if code == CompactedError.code:
        return CompactedError(message, oldest_seq=oldest_seq)
    cls = _SERVER_ERRORS_BY_CODE.get(code)
    if cls is None:
        return ServerError(message, code=code)
    return cls(message)


def error_code_of(error: ServerError) -> str:
    """The wire code of a server error instance."""
    return error.code
