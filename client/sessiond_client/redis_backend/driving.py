"""What the blocking and asyncio Redis transports share, without I/O: how a request is
decoded, how a function is called, how durability is waited for, how the server's
profile is read, and how redis-py's errors become sessiond's. Pure.

Requests go through msgpack and back with the daemon's own decoder before they run, so
the Redis backend sees exactly what the daemon would (a tuple is a list, a wrong type is
``invalid_request``, a value msgpack cannot carry fails the same way on both backends).
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import msgspec

from sessiond_client.errors import (
    ForbiddenError,
    InternalError,
    InvalidRequestError,
    SessiondError,
    UnavailableError,
)
from sessiond_client.protocol import Request
from sessiond_client.redis_backend.lua import FUNCTION_NAMES, eval_script, library_source
from sessiond_client.redis_backend.profile import ServerProfile, parse_info

__all__ = [
    "FLUSH_MARKER_KEY",
    "INFO_COMMAND",
    "decode_as_daemon",
    "durable_commands",
    "eval_command",
    "function_command",
    "profile_from",
    "server_error_of",
]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Request)
INFO_COMMAND: Final = ("INFO", "server", "clients", "memory", "persistence")
FLUSH_MARKER_KEY: Final = "sessiond:flush"
"""Written by ``flush`` so that ``WAITAOF`` on its connection covers every write before."""
LIBRARY: Final = library_source()
SCRIPTS: Final = {name: eval_script(name) for name in FUNCTION_NAMES}
SCRIPT_SHAS: Final = {
    name: hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
    for name, text in SCRIPTS.items()
}


def decode_as_daemon(request: Request) -> Request:
    """``request`` as the daemon would decode it off the wire."""
    payload = _encoder.encode(request)
    try:
        decoded: Request = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise InvalidRequestError(f"invalid request: {error}") from None
    except UnicodeDecodeError as error:
        raise InvalidRequestError(f"a string is not valid UTF-8: {error.reason}") from None
    except RecursionError:
        raise InvalidRequestError("the request is nested too deeply") from None
    return decoded


def function_command(name: str, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
    return ("FCALL", FUNCTION_NAMES[name], len(keys), *keys, *args)


def eval_command(name: str, keys: list[str], args: list[Any], *, by_sha: bool) -> tuple[Any, ...]:
    script = SCRIPT_SHAS[name] if by_sha else SCRIPTS[name]
    return ("EVALSHA" if by_sha else "EVAL", script, len(keys), *keys, *args)


def durable_commands(profile: ServerProfile, timeout_s: float) -> list[tuple[Any, ...]]:
    """What to send after a write, on its connection, to know it is on disk."""
    if profile.durable_via == "waitaof":
        return [("WAITAOF", 1, 0, max(1, int(timeout_s * 1000)))]
    return []  # appendfsync always: the write was fsynced before its reply


def check_durable_reply(replies: list[Any], shown_url: str) -> None:
    """:class:`UnavailableError` unless ``WAITAOF`` saw the local fsync."""
    if replies and int(replies[-1][0]) < 1:
        raise UnavailableError(
            f"the write is applied but {shown_url} did not fsync its AOF in time; "
            "it may be lost if the server crashes now"
        )


def profile_from(info: bytes, appendfsync_reply: Any, waitaof_reply: Any) -> ServerProfile:
    """A :class:`ServerProfile` from the replies to ``INFO``, ``CONFIG GET appendfsync``
    (an exception when not allowed) and ``COMMAND INFO WAITAOF``."""
    appendfsync = None
    if isinstance(appendfsync_reply, list) and len(appendfsync_reply) == 2:
        appendfsync = appendfsync_reply[1].decode()
    has_waitaof = isinstance(waitaof_reply, list) and bool(waitaof_reply) and bool(waitaof_reply[0])
    return ServerProfile.from_info(
        parse_info(info.decode()), appendfsync=appendfsync, has_waitaof=has_waitaof
    )


def is_missing_code(error: Exception) -> bool:
    """The server no longer has our function or script (flushed, restarted empty)."""
    text = str(error)
    return text.startswith("NOSCRIPT") or "Function not found" in text


def server_error_of(error: Exception, shown_url: str) -> SessiondError:
    """A Redis error reply (not a connection problem) as a sessiond error."""
    text = str(error)
    if text.startswith("NOPERM") or "NOAUTH" in text or "WRONGPASS" in text:
        return ForbiddenError(f"{shown_url} refused: {text}")
    if text.startswith(("READONLY", "OOM", "MISCONF", "LOADING", "BUSY", "MASTERDOWN")):
        return UnavailableError(f"{shown_url} cannot serve now: {text}")
    return InternalError(f"{shown_url} answered an error: {text}")


def library_load_command() -> tuple[Any, ...]:
    return ("FUNCTION", "LOAD", LIBRARY)
