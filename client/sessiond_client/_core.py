"""The pure core both clients share: building requests and turning replies into results.
No I/O; the async and sync shells only move frames.

Each public method maps to one request Struct and one result converter. Keeping the
mapping here means the two shells cannot drift apart: they have the same methods with
the same parameters because both are thin wrappers over these functions.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import msgspec

from sessiond_client.errors import ProtocolError, SessiondError, server_error_for
from sessiond_client.protocol import (
    FRAME_HEADER,
    DeleteRequest,
    EntryRef,
    EntryResult,
    ExportRequest,
    FlushRequest,
    GetManyRequest,
    GetRequest,
    HelloRequest,
    HelloResult,
    ImportRequest,
    ImportResult,
    ListRequest,
    ListResult,
    PatchRequest,
    PruneRequest,
    PruneResult,
    ReplaceRequest,
    Reply,
    Request,
    ResolveRequest,
    ResolveResult,
    StatsRequest,
    UnwatchRequest,
    UpdateLastRouteRequest,
    UpdateRequest,
    WatchRequest,
)
from sessiond_client.protocol import WatchEvent as WireWatchEvent
from sessiond_client.results import Resolution, ServerInfo, Session, SessionPage, WatchEvent
from sessiond_client.targets import RedisTarget, parse_target

__all__ = [
    "AsyncUpdateFn",
    "Call",
    "ClientSettings",
    "UpdateFn",
    "decode_reply",
    "reply_result",
    "to_page",
    "to_resolution",
    "to_server_info",
    "to_session",
    "to_session_map",
    "to_stats",
]

T = TypeVar("T")

UpdateFn = Callable[[Session], "Mapping[str, Any] | None"]
"""``update_with``'s callback: the current session → a patch, or None for "no change"."""
AsyncUpdateFn = Callable[
    [Session], "Mapping[str, Any] | Awaitable[Mapping[str, Any] | None] | None"
]
"""The same for :class:`~sessiond_client.AsyncClient`, which also awaits a coroutine's."""

FLUSH_TIMEOUT_S = 60.0
"""``flush`` writes whole stores; it gets a longer default timeout than other calls."""

_reply_decoder = msgspec.msgpack.Decoder(Reply)
_entry_result_decoder = msgspec.msgpack.Decoder(EntryResult | None)
_entry_map_decoder = msgspec.msgpack.Decoder(dict[str, EntryRef])
_list_decoder = msgspec.msgpack.Decoder(ListResult)
_resolve_decoder = msgspec.msgpack.Decoder(ResolveResult)
_hello_decoder = msgspec.msgpack.Decoder(HelloResult)
_bool_decoder = msgspec.msgpack.Decoder(bool)
_watch_event_decoder = msgspec.msgpack.Decoder(WireWatchEvent)
_prune_decoder = msgspec.msgpack.Decoder(PruneResult)
_import_decoder = msgspec.msgpack.Decoder(ImportResult)
_any_decoder = msgspec.msgpack.Decoder()
_encoder = msgspec.msgpack.Encoder()


class ClientSettings(msgspec.Struct, frozen=True, kw_only=True):
    socket_path: str
    """The daemon's socket ("" when the target is a Redis server)."""
    timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    redis: RedisTarget | None = None
    """The Redis or Valkey server, when the target is one."""

    @classmethod
    def for_target(
        cls, target: str | None, *, timeout_s: float, connect_timeout_s: float
    ) -> ClientSettings:
        """``target``: the daemon's socket path (``unix://`` prefix allowed) or a Redis URL
        (see :mod:`sessiond_client.targets`); None: ``$SESSIOND_SOCKET``, else the
        daemon's own default path."""
        parsed = parse_target(target, os.environ, os.path.expanduser("~"))
        if isinstance(parsed, RedisTarget):
            return cls(
                socket_path="",
                timeout_s=timeout_s,
                connect_timeout_s=connect_timeout_s,
                redis=parsed,
            )
        return cls(
            socket_path=parsed.path, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s
        )


def decode_reply(payload: bytes) -> Reply:
    try:
        reply = _reply_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ProtocolError(f"undecodable reply from the daemon: {error}") from error
    if not reply.ok and reply.error is None:
        raise ProtocolError(f"reply {reply.id} has ok=false but no error body")
    return reply


def reply_error(reply: Reply) -> SessiondError | None:
    if reply.ok:
        return None
    assert reply.error is not None
    return server_error_for(
        reply.error.code, reply.error.message, oldest_seq=reply.error.oldest_seq
    )


Convert = Callable[[msgspec.Raw, "int | None"], Any]
"""A result converter: the raw result and the reply's ``seq`` (writes) → a typed result."""


def reply_result(reply: Reply, convert: Convert) -> Any:
    """The converted result of a reply, or the server error it carries raised."""
    error = reply_error(reply)
    if error is not None:
        raise error
    try:
        return convert(reply.result, reply.seq)
    except (msgspec.DecodeError, msgspec.ValidationError) as decode_error:
        raise ProtocolError(f"unexpected result shape: {decode_error}") from decode_error


def to_session(raw: msgspec.Raw, seq: int | None = None) -> Session | None:
    result = _entry_result_decoder.decode(raw)
    return None if result is None else Session(result.key, result.entry, result.revision, seq)


def to_required_session(raw: msgspec.Raw, seq: int | None = None) -> Session:
    session = to_session(raw, seq)
    if session is None:
        raise ProtocolError("the daemon returned no entry where one is always returned")
    return session


def to_session_map(raw: msgspec.Raw, seq: int | None = None) -> dict[str, Session]:
    return {
        key: Session(key, ref.entry, ref.revision)
        for key, ref in _entry_map_decoder.decode(raw).items()
    }


def to_page(raw: msgspec.Raw, seq: int | None = None) -> SessionPage:
    result = _list_decoder.decode(raw)
    items = [Session(item.key, item.entry, item.revision) for item in result.items]
    return SessionPage(items, result.cursor, result.seq)


def to_resolution(raw: msgspec.Raw, seq: int | None = None) -> Resolution:
    r = _resolve_decoder.decode(raw)
    session = Session(r.session_key, r.entry, r.revision, seq)
    return Resolution(
        r.session_key, r.session_id, r.is_new, r.reset_triggered, r.body_stripped, session
    )


def to_server_info(raw: msgspec.Raw, seq: int | None = None) -> ServerInfo:
    r = _hello_decoder.decode(raw)
    return ServerInfo(
        protocol=r.protocol,
        server=r.server,
        version=r.version,
        max_frame_bytes=r.max_frame_bytes,
        max_reply_bytes=r.max_reply_bytes,
        max_key_bytes=r.max_key_bytes,
        max_entry_bytes=r.max_entry_bytes,
        max_keys_per_request=r.max_keys_per_request,
        max_list_limit=r.max_list_limit,
        max_depth=r.max_depth,
        max_fields=r.max_fields,
        max_inflight_per_connection=r.max_inflight_per_connection,
    )


def to_bool(raw: msgspec.Raw, seq: int | None = None) -> bool:
    return _bool_decoder.decode(raw)


def to_stats(raw: msgspec.Raw, seq: int | None = None) -> dict[str, Any]:
    value = _any_decoder.decode(raw)
    if not isinstance(value, dict):
        raise ProtocolError("stats result is not a map")
    return value


def patch_from_update(result: object) -> dict[str, Any] | None:
    """``update_with`` callbacks return a patch, or ``None`` for "no change".

    As in the original (where only a falsy JS value skipped the write), an empty patch
    is still a write: it moves ``updatedAt``.
    """
    if result is None:
        return None
    if not isinstance(result, Mapping):
        raise TypeError(f"update_with callback must return a mapping or None, got {result!r}")
    return dict(result)


class Call(msgspec.Struct, frozen=True):
    """A prepared call: the request (its ``id`` is set when sent) and its result converter.

    ``retry_safe``: resending cannot apply the call twice — reads are idempotent, and
    every write carries a fresh ``request_token`` the daemon deduplicates.
    """

    op: str
    request: Request
    convert: Convert
    retry_safe: bool = True


class _TokenSource:
    """Request tokens: a random per-process prefix and a counter (a uuid4 per call would
    cost a getrandom system call on every write)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = os.urandom(12).hex()
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):x}"


_tokens = _TokenSource()
# A forked child must not repeat its parent's tokens: the daemon would answer the child's
# write with the parent's earlier result.
os.register_at_fork(after_in_child=_tokens.reset)


def new_request_token() -> str:
    """A token unique to this call (and to this process, forks included)."""
    return _tokens.next()


def encode_request_frame(request: Request) -> bytearray:
    """One frame: the 4-byte length, then the msgpack request."""
    frame = bytearray(FRAME_HEADER.size)
    _encoder.encode_into(request, frame, FRAME_HEADER.size)
    FRAME_HEADER.pack_into(frame, 0, len(frame) - FRAME_HEADER.size)
    return frame


def hello_call(client_name: str | None) -> Call:
    return Call("hello", HelloRequest(id=0, client=client_name), to_server_info)


def get_call(key: str, agent: str | None, fields: Sequence[str] | None = None) -> Call:
    request = GetRequest(id=0, key=key, agent=agent, fields=_names(fields))
    return Call("get", request, to_session)


def get_many_call(
    keys: Sequence[str], agent: str | None, fields: Sequence[str] | None = None
) -> Call:
    request = GetManyRequest(id=0, keys=list(keys), agent=agent, fields=_names(fields))
    return Call("get_many", request, to_session_map)


def _names(fields: Sequence[str] | None) -> list[str] | None:
    if isinstance(fields, str):
        raise TypeError("fields must be a sequence of field names, not one string")
    return None if fields is None else list(fields)


def list_call(
    *,
    agent: str | None = None,
    prefix: str | None = None,
    active_minutes: float | None = None,
    label: str | None = None,
    spawned_by: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    fields: Sequence[str] | None = None,
) -> Call:
    request = ListRequest(
        id=0,
        agent=agent,
        prefix=prefix,
        active_minutes=active_minutes,
        label=label,
        spawned_by=spawned_by,
        limit=limit,
        cursor=cursor,
        fields=_names(fields),
    )
    return Call("list", request, to_page)


WriteRequest = (
    PatchRequest
    | UpdateRequest
    | ReplaceRequest
    | UpdateLastRouteRequest
    | DeleteRequest
    | ResolveRequest
)


def _write_call(request: WriteRequest, convert: Convert) -> Call:
    """A write: it gets a fresh request token, kept by every resend of this call."""
    request.request_token = new_request_token()
    return Call(str(type(request).__struct_config__.tag), request, convert)


def patch_call(
    *,
    key: str,
    patch: Mapping[str, Any],
    agent: str | None,
    if_revision: str | None,
    durable: bool,
    if_absent: bool = False,
) -> Call:
    request = PatchRequest(
        id=0,
        key=key,
        patch=dict(patch),
        agent=agent,
        if_revision=if_revision,
        if_absent=if_absent,
        durable=durable,
    )
    return _write_call(request, to_required_session)


def update_call(
    *, key: str, patch: Mapping[str, Any], agent: str | None, if_revision: str | None, durable: bool
) -> Call:
    request = UpdateRequest(
        id=0, key=key, patch=dict(patch), agent=agent, if_revision=if_revision, durable=durable
    )
    return _write_call(request, to_session)


def replace_call(
    *,
    key: str,
    entry: Mapping[str, Any],
    agent: str | None,
    if_revision: str | None,
    durable: bool,
    if_absent: bool = False,
) -> Call:
    request = ReplaceRequest(
        id=0,
        key=key,
        entry=dict(entry),
        agent=agent,
        if_revision=if_revision,
        if_absent=if_absent,
        durable=durable,
    )
    return _write_call(request, to_required_session)


def update_last_route_call(
    *,
    key: str,
    provider: str | None,
    to: str | None,
    account_id: str | None,
    touch: bool,
    agent: str | None,
    durable: bool,
    if_revision: str | None = None,
) -> Call:
    request = UpdateLastRouteRequest(
        id=0,
        key=key,
        provider=provider,
        to=to,
        account_id=account_id,
        touch=touch,
        agent=agent,
        if_revision=if_revision,
        durable=durable,
    )
    return _write_call(request, to_required_session)


def delete_call(*, key: str, agent: str | None, if_revision: str | None, durable: bool) -> Call:
    request = DeleteRequest(id=0, key=key, agent=agent, if_revision=if_revision, durable=durable)
    return _write_call(request, to_bool)


def resolve_call(
    *,
    ctx: Mapping[str, Any],
    agent: str | None,
    authorized: bool,
    scope: Literal["per-sender", "global"] | None,
    main_key: str | None,
    idle_minutes: float | None,
    reset_triggers: Sequence[str] | None,
    durable: bool,
    if_revision: str | None = None,
) -> Call:
    request = ResolveRequest(
        id=0,
        ctx=dict(ctx),
        agent=agent,
        authorized=authorized,
        scope=scope,
        main_key=main_key,
        idle_minutes=idle_minutes,
        reset_triggers=None if reset_triggers is None else list(reset_triggers),
        if_revision=if_revision,
        durable=durable,
    )
    return _write_call(request, to_resolution)


def to_watch_event(raw: msgspec.Raw, seq: int | None = None) -> WatchEvent:
    event = _watch_event_decoder.decode(raw)
    return WatchEvent(event.type, event.seq, event.key, event.entry, event.revision)


def watch_call(
    *, prefix: str, agent: str | None, since: int | None, fields: Sequence[str] | None
) -> Call:
    request = WatchRequest(id=0, prefix=prefix, agent=agent, since=since, fields=_names(fields))
    return Call("watch", request, to_watch_event)


def unwatch_call(watch_id: int) -> Call:
    return Call("unwatch", UnwatchRequest(id=0, watch=watch_id), to_bool)


def export_call(*, agent: str | None, cursor: str | None, limit: int | None) -> Call:
    return Call("export", ExportRequest(id=0, agent=agent, cursor=cursor, limit=limit), to_page)


def to_import_result(raw: msgspec.Raw, seq: int | None = None) -> ImportResult:
    return _import_decoder.decode(raw)


def import_call(
    *, agent: str | None, entries: Mapping[str, Any], import_id: str | None, commit: bool
) -> Call:
    request = ImportRequest(
        id=0, agent=agent, entries=dict(entries), import_id=import_id, commit=commit
    )
    # Staging is idempotent (a resend stages the same entries again). A commit is not
    # resent: one applied just before the connection broke would be refused as unknown.
    return Call("import", request, to_import_result, retry_safe=not commit)


def to_prune_result(raw: msgspec.Raw, seq: int | None = None) -> PruneResult:
    return _prune_decoder.decode(raw)


def prune_call(*, agent: str | None, dry_run: bool) -> Call:
    return Call("prune", PruneRequest(id=0, agent=agent, dry_run=dry_run), to_prune_result)


def flush_call(agent: str | None) -> Call:
    return Call("flush", FlushRequest(id=0, agent=agent), to_bool)


def stats_call(agent: str | None = None) -> Call:
    return Call("stats", StatsRequest(id=0, agent=agent), to_stats)
