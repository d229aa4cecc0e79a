"""The pure core both clients share: building requests and turning replies into results.
No I/O; the async and sync shells only move frames.

Each public method maps to one request Struct and one result converter. Keeping the
mapping here means the two shells cannot drift apart: they have the same methods with
the same parameters because both are thin wrappers over these functions.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import msgspec

from sessiond_client.errors import ProtocolError, SessiondError, server_error_for
from sessiond_client.locations import default_socket_path
from sessiond_client.protocol import (
    FRAME_HEADER,
    DeleteRequest,
    EntryRef,
    EntryResult,
    FlushRequest,
    GetManyRequest,
    GetRequest,
    HelloRequest,
    HelloResult,
    ListRequest,
    ListResult,
    PatchRequest,
    ReplaceRequest,
    Reply,
    Request,
    ResolveRequest,
    ResolveResult,
    StatsRequest,
    UpdateLastRouteRequest,
    UpdateRequest,
)
from sessiond_client.results import Resolution, ServerInfo, Session, SessionPage
from sessiond_client.retry import RetryPolicy

__all__ = [
    "Call",
    "ClientBase",
    "ClientSettings",
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

FLUSH_TIMEOUT_S = 60.0
"""``flush`` writes whole stores; it gets a longer default timeout than other calls."""

_reply_decoder = msgspec.msgpack.Decoder(Reply)
_entry_result_decoder = msgspec.msgpack.Decoder(EntryResult | None)
_entry_map_decoder = msgspec.msgpack.Decoder(dict[str, EntryRef])
_list_decoder = msgspec.msgpack.Decoder(ListResult)
_resolve_decoder = msgspec.msgpack.Decoder(ResolveResult)
_hello_decoder = msgspec.msgpack.Decoder(HelloResult)
_bool_decoder = msgspec.msgpack.Decoder(bool)
_any_decoder = msgspec.msgpack.Decoder()
_encoder = msgspec.msgpack.Encoder()


class ClientSettings(msgspec.Struct, frozen=True, kw_only=True):
    socket_path: str
    timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    max_frame_bytes: int = 16 * 1024 * 1024


class ClientBase:
    """What both clients are configured with; the shells add their connection handling."""

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
        retry: RetryPolicy | None = None,
        client_name: str | None = None,
    ) -> None:
        path = socket_path or default_socket_path(os.environ, home=os.path.expanduser("~"))
        self.settings = ClientSettings(
            socket_path=path, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s
        )
        self.retry = retry or RetryPolicy()
        self.client_name = client_name
        self._closed = False
        self._init_connection_state()

    def _init_connection_state(self) -> None:
        """The shell's connection slot and the lock that guards (re)connecting."""
        raise NotImplementedError


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
    return server_error_for(reply.error.code, reply.error.message)


def reply_result(reply: Reply, convert: Callable[[msgspec.Raw], T]) -> T:
    """The converted result of a reply, or the server error it carries raised."""
    error = reply_error(reply)
    if error is not None:
        raise error
    try:
        return convert(reply.result)
    except (msgspec.DecodeError, msgspec.ValidationError) as decode_error:
        raise ProtocolError(f"unexpected result shape: {decode_error}") from decode_error


def to_session(raw: msgspec.Raw) -> Session | None:
    result = _entry_result_decoder.decode(raw)
    return None if result is None else Session(result.key, result.entry, result.revision)


def to_required_session(raw: msgspec.Raw) -> Session:
    session = to_session(raw)
    if session is None:
        raise ProtocolError("the daemon returned no entry where one is always returned")
    return session


def to_session_map(raw: msgspec.Raw) -> dict[str, Session]:
    return {
        key: Session(key, ref.entry, ref.revision)
        for key, ref in _entry_map_decoder.decode(raw).items()
    }


def to_page(raw: msgspec.Raw) -> SessionPage:
    result = _list_decoder.decode(raw)
    items = [Session(item.key, item.entry, item.revision) for item in result.items]
    return SessionPage(items, result.cursor)


def to_resolution(raw: msgspec.Raw) -> Resolution:
    r = _resolve_decoder.decode(raw)
    session = Session(r.session_key, r.entry, r.revision)
    return Resolution(
        r.session_key, r.session_id, r.is_new, r.reset_triggered, r.body_stripped, session
    )


def to_server_info(raw: msgspec.Raw) -> ServerInfo:
    r = _hello_decoder.decode(raw)
    return ServerInfo(r.protocol, r.server, r.version, r.max_frame_bytes)


def to_bool(raw: msgspec.Raw) -> bool:
    return _bool_decoder.decode(raw)


def to_stats(raw: msgspec.Raw) -> dict[str, Any]:
    value = _any_decoder.decode(raw)
    if not isinstance(value, dict):
        raise ProtocolError("stats result is not a map")
    return value


def patch_from_update(result: Mapping[str, Any] | None) -> dict[str, Any] | None:
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
    convert: Callable[[msgspec.Raw], Any]
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


def get_call(key: str, agent: str | None) -> Call:
    return Call("get", GetRequest(id=0, key=key, agent=agent), to_session)


def get_many_call(keys: Sequence[str], agent: str | None) -> Call:
    return Call("get_many", GetManyRequest(id=0, keys=list(keys), agent=agent), to_session_map)


def list_call(
    *,
    agent: str | None = None,
    prefix: str | None = None,
    active_minutes: float | None = None,
    label: str | None = None,
    spawned_by: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
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
    )
    return Call("list", request, to_page)


def patch_call(
    *, key: str, patch: Mapping[str, Any], agent: str | None, if_revision: str | None, durable: bool
) -> Call:
    return _merge_call(PatchRequest, key, patch, agent, if_revision, durable)


def update_call(
    *, key: str, patch: Mapping[str, Any], agent: str | None, if_revision: str | None, durable: bool
) -> Call:
    return _merge_call(UpdateRequest, key, patch, agent, if_revision, durable)


def _merge_call(  # noqa: PLR0917 - private; the two public builders name every argument
    request_type: type[PatchRequest] | type[UpdateRequest],
    key: str,
    patch: Mapping[str, Any],
    agent: str | None,
    if_revision: str | None,
    durable: bool,
) -> Call:
    request = request_type(
        id=0,
        request_token=new_request_token(),
        key=key,
        patch=dict(patch),
        agent=agent,
        if_revision=if_revision,
        durable=durable,
    )
    convert = to_required_session if request_type is PatchRequest else to_session
    return Call(str(request_type.__struct_config__.tag), request, convert)


def replace_call(
    *, key: str, entry: Mapping[str, Any], agent: str | None, if_revision: str | None, durable: bool
) -> Call:
    request = ReplaceRequest(
        id=0,
        request_token=new_request_token(),
        key=key,
        entry=dict(entry),
        agent=agent,
        if_revision=if_revision,
        durable=durable,
    )
    return Call("replace", request, to_required_session)


def update_last_route_call(
    *,
    key: str,
    provider: str | None,
    to: str | None,
    account_id: str | None,
    touch: bool,
    agent: str | None,
    durable: bool,
) -> Call:
    request = UpdateLastRouteRequest(
        id=0,
        request_token=new_request_token(),
        key=key,
        provider=provider,
        to=to,
        account_id=account_id,
        touch=touch,
        agent=agent,
        durable=durable,
    )
    return Call("update_last_route", request, to_required_session)


def delete_call(*, key: str, agent: str | None, if_revision: str | None, durable: bool) -> Call:
    request = DeleteRequest(
        id=0,
        request_token=new_request_token(),
        key=key,
        agent=agent,
        if_revision=if_revision,
        durable=durable,
    )
    return Call("delete", request, to_bool)


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
) -> Call:
    request = ResolveRequest(
        id=0,
        request_token=new_request_token(),
        ctx=dict(ctx),
        agent=agent,
        authorized=authorized,
        scope=scope,
        main_key=main_key,
        idle_minutes=idle_minutes,
        reset_triggers=None if reset_triggers is None else list(reset_triggers),
        durable=durable,
    )
    return Call("resolve", request, to_resolution)


def flush_call(agent: str | None) -> Call:
    return Call("flush", FlushRequest(id=0, agent=agent), to_bool)


def stats_call() -> Call:
    return Call("stats", StatsRequest(id=0), to_stats)
