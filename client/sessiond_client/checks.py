"""Request validation, as every store applies it before anything is changed. Pure.

What the daemon checks of a request (PROTOCOL.md §3-§6), written once so the client's
Redis backend refuses exactly what the daemon refuses, with the same error class:
keys (non-empty, at most ``max_key_bytes``), agents (a wire ``agent`` must already be
in normal form), entry values (:mod:`sessiond_client.values`; known fields type-checked),
projections, durations, page sizes, request tokens and ``resolve`` contexts; plus how a
request picks its store, how a projection is applied, and how reply sizes are counted
(``list`` pages and ``get_many`` replies stay under ``max_reply_bytes``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol

import msgspec

from sessiond_client.entry import validate_entry_fields
from sessiond_client.errors import InvalidRequestError
from sessiond_client.keys import (
    DEFAULT_AGENT_ID,
    normalize_agent_id,
    resolve_agent_id_from_session_key,
)
from sessiond_client.protocol import PROTOCOL_VERSION, HelloResult
from sessiond_client.values import check_json_value

__all__ = [
    "ALWAYS_PROJECTED",
    "DEFAULT_LIST_LIMIT",
    "MAX_FIELD_NAME_CHARS",
    "MAX_TOKEN_CHARS",
    "REPLY_ITEM_OVERHEAD_BYTES",
    "REPLY_WRAPPER_BYTES",
    "MessageContext",
    "StoreLimits",
    "agent_of",
    "check_ctx",
    "check_fields",
    "check_import_entry",
    "check_key",
    "check_key_count",
    "check_list_limit",
    "check_minutes",
    "check_projection",
    "check_protocol",
    "check_token",
    "cursor_bytes",
    "hello_result",
    "project",
    "utf8_len",
    "wire_agent",
]

MAX_FIELD_NAME_CHARS: Final = 256
MAX_TOKEN_CHARS: Final = 128
DEFAULT_LIST_LIMIT: Final = 100
ALWAYS_PROJECTED: Final = ("sessionId", "updatedAt")
REPLY_ITEM_OVERHEAD_BYTES: Final = 64
"""msgpack framing of one ``{key, entry, revision}`` item beyond the key and the entry."""
REPLY_WRAPPER_BYTES: Final = 128
"""The reply envelope and result map around the items (id, ok, seq, field names)."""


def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def cursor_bytes(key: str) -> int:
    """An upper bound of the cursor that resumes after ``key`` (base64 of a small map)."""
    return (utf8_len(key) + 16) * 4 // 3 + 8


def wire_agent(agent: str) -> str:
    """A wire ``agent`` must be in normal form; the error names the form to use."""
    normal = normalize_agent_id(agent)
    if normal != agent:
        raise InvalidRequestError(
            f"agent {agent!r} is not in normal form; use {normal!r} (1-64 characters of "
            "[A-Za-z0-9_-] starting with a letter or digit, or lowercase [a-z0-9_-] "
            "not starting or ending with '-')"
        )
    return agent


def agent_of(request_agent: str | None, key: str | None) -> str:
    """The agent whose store a request uses: explicit ``agent``, else the key's, else main."""
    if request_agent is not None:
        return wire_agent(request_agent)
    if key is not None:
        return resolve_agent_id_from_session_key(key)
    return DEFAULT_AGENT_ID


def check_key(key: str, *, max_key_bytes: int) -> str:
    if not key:
        raise InvalidRequestError("key must be a non-empty string")
    if len(key) * 4 > max_key_bytes and len(key.encode("utf-8", "surrogatepass")) > max_key_bytes:
        raise InvalidRequestError(f"key is longer than the limit of {max_key_bytes} bytes")
    return key


def _check_field_names(names: Iterable[str]) -> None:
    for name in names:
        if not name or len(name) > MAX_FIELD_NAME_CHARS:
            raise InvalidRequestError(
                f"field names must have 1 to {MAX_FIELD_NAME_CHARS} characters"
            )


def check_fields(
    fields: dict[str, Any], where: str, *, max_depth: int, max_fields: int
) -> dict[str, Any]:
    """An entry or patch: JSON values within the limits, known fields well typed."""
    check_json_value(fields, where=where, max_depth=max_depth, max_fields=max_fields)
    _check_field_names(fields)
    try:
        validate_entry_fields(fields)
    except msgspec.ValidationError as error:
        raise InvalidRequestError(f"invalid entry field: {error}") from error
    return fields


def check_projection(fields: list[str] | None, *, max_fields: int) -> list[str] | None:
    if fields is None:
        return None
    if len(fields) > max_fields:
        raise InvalidRequestError(f"fields names at most {max_fields} fields")
    _check_field_names(fields)
    return fields


def check_minutes(name: str, minutes: float) -> float:
    """A duration in minutes must be a finite, non-negative number (NaN would disable it)."""
    if not math.isfinite(minutes) or minutes < 0:
        raise InvalidRequestError(f"{name} must be a finite number >= 0, got {minutes!r}")
    return minutes


def check_list_limit(limit: int | None, *, max_list_limit: int, default: int) -> int:
    """A page size: ``default`` when not given, else 1 to ``max_list_limit``."""
    chosen = default if limit is None else limit
    if not 1 <= chosen <= max_list_limit:
        raise InvalidRequestError(f"limit must be 1 to {max_list_limit}")
    return chosen


def check_token(token: str) -> str:
    if not 0 < len(token) <= MAX_TOKEN_CHARS:
        raise InvalidRequestError(f"request_token must have 1 to {MAX_TOKEN_CHARS} characters")
    return token


def project(value: Any, fields: Sequence[str]) -> Any:
    """Only ``fields`` (and ``sessionId``/``updatedAt``) of an object entry."""
    if not isinstance(value, dict):
        return value
    wanted = set(fields).union(ALWAYS_PROJECTED)
    return {name: item for name, item in value.items() if name in wanted}


class MessageContext(msgspec.Struct, rename=None, forbid_unknown_fields=False):
    """The MsgContext fields ``resolve`` reads, with their types (others pass through)."""

    From: str | None = None
    To: str | None = None
    ChatType: str | None = None
    Provider: str | None = None
    SessionKey: str | None = None
    GroupSubject: str | None = None
    GroupRoom: str | None = None
    GroupSpace: str | None = None
    ThreadLabel: str | None = None
    MessageThreadId: str | int | None = None
    Body: str | None = None
    RawBody: str | None = None
    CommandBody: str | None = None


def check_ctx(ctx: dict[str, Any], *, max_depth: int, max_fields: int) -> dict[str, Any]:
    """A ``resolve`` context: JSON values within the limits, the fields it reads typed."""
    check_json_value(ctx, where="ctx", max_depth=max_depth, max_fields=max_fields)
    try:
        msgspec.convert(ctx, MessageContext)
    except msgspec.ValidationError as error:
        raise InvalidRequestError(f"invalid ctx: {error}") from error
    return ctx


class StoreLimits(Protocol):
    """The limits a store enforces (the daemon's ``[limits]``, or the client's
    :class:`~sessiond_client.limits.RequestLimits` over Redis)."""

    @property
    def max_frame_bytes(self) -> int: ...
    @property
    def max_reply_bytes(self) -> int: ...
    @property
    def max_key_bytes(self) -> int: ...
    @property
    def max_entry_bytes(self) -> int: ...
    @property
    def max_keys_per_request(self) -> int: ...
    @property
    def max_list_limit(self) -> int: ...
    @property
    def max_depth(self) -> int: ...
    @property
    def max_fields(self) -> int: ...
    @property
    def max_inflight_per_connection(self) -> int: ...


def check_protocol(protocol: int, *, speaker: str) -> None:
    """``hello``: refuse a protocol version this ``speaker`` does not speak."""
    if protocol != PROTOCOL_VERSION:
        raise InvalidRequestError(
            f"protocol version {protocol} is not spoken here; this {speaker} "
            f"speaks protocol {PROTOCOL_VERSION}"
        )


def hello_result(limits: StoreLimits, *, server: str, version: str) -> HelloResult:
    """``hello``'s answer: who answers, and every limit a client needs."""
    return HelloResult(
        protocol=PROTOCOL_VERSION,
        server=server,
        version=version,
        max_frame_bytes=limits.max_frame_bytes,
        max_reply_bytes=limits.max_reply_bytes,
        max_key_bytes=limits.max_key_bytes,
        max_entry_bytes=limits.max_entry_bytes,
        max_keys_per_request=limits.max_keys_per_request,
        max_list_limit=limits.max_list_limit,
        max_depth=limits.max_depth,
        max_fields=limits.max_fields,
        max_inflight_per_connection=limits.max_inflight_per_connection,
        protocols=[PROTOCOL_VERSION],
    )


def check_key_count(count: int, *, max_keys_per_request: int, what: str, noun: str) -> None:
    """Refuse a request naming more than ``max_keys_per_request`` keys: "<what> at most
    N <noun>"."""
    if count > max_keys_per_request:
        raise InvalidRequestError(f"{what} at most {max_keys_per_request} {noun}")


def check_import_entry(key: str, entry: Any, limits: StoreLimits) -> int:
    """An entry of an ``import`` request, checked as it will be stored (key, value model,
    size); its JSON size in bytes."""
    try:
        check_key(key, max_key_bytes=limits.max_key_bytes)
    except InvalidRequestError as error:
        raise InvalidRequestError(f"key {key!r}: {error}") from None
    check_json_value(
        entry, where=f"entry {key!r}", max_depth=limits.max_depth, max_fields=limits.max_fields
    )
    entry_bytes = len(msgspec.json.encode(entry))
    if entry_bytes > limits.max_entry_bytes:
        raise InvalidRequestError(
            f"entry {key!r} of {entry_bytes} bytes exceeds the limit of "
            f"{limits.max_entry_bytes} bytes"
        )
    return entry_bytes
