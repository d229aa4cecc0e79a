"""Request dispatch: validate a decoded request, pick its store, run the operation, and
shape the result. Pure: no I/O; stores are reached through :class:`StoreAccess`.

The server shell does what needs awaiting around it (loading a store the first time it
is named, waiting for a durable write's flush, ``flush`` itself). Everything here is a
plain function of the request and the in-memory stores, so it is unit-tested without
sockets and costs no task switch on the hot path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from sessiond import __version__
from sessiond.config import Config
from sessiond.dedup import RememberedWrite
from sessiond.entries import StoredEntry
from sessiond.listing import ListFilter, decode_cursor, select_page
from sessiond.resolve import ResolveOptions, resolve_session
from sessiond.store import SessionStore
from sessiond_client.entry import validate_entry_fields
from sessiond_client.errors import ConflictError, InvalidRequestError
from sessiond_client.keys import (
    DEFAULT_AGENT_ID,
    normalize_agent_id,
    resolve_agent_id_from_session_key,
)
from sessiond_client.protocol import (
    PROTOCOL_VERSION,
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
    Request,
    ResolveRequest,
    ResolveResult,
    StatsRequest,
    UpdateLastRouteRequest,
    UpdateRequest,
    WriteRequestBase,
)

__all__ = ["Dispatcher", "StoreAccess", "agents_of"]

MAX_FIELD_NAME_CHARS = 256
MAX_TOKEN_CHARS = 128
DEFAULT_LIST_LIMIT = 100


class StoreAccess(Protocol):
    """How dispatch reaches stores; the registry (I/O shell) implements it."""

    def store_for(self, agent_id: str, *, for_write: bool) -> SessionStore:
        """The loaded store of ``agent_id``; raises a ServerError if it cannot serve."""
        ...

    def transcripts_dir_for(self, agent_id: str) -> str:
        """Where the agent's transcript files live (the store file's directory)."""
        ...


def agent_of(request_agent: str | None, key: str | None) -> str:
    """The agent whose store a request uses: explicit ``agent``, else the key's, else main.

    Memoised: the JS-faithful normalisation costs a few microseconds, and a bot asks for
    the same few keys over and over.
    """
    cache_key = (request_agent, key)
    agent_id = _AGENT_CACHE.get(cache_key)
    if agent_id is None:
        if request_agent is not None:
            agent_id = normalize_agent_id(request_agent)
        elif key is not None:
            agent_id = resolve_agent_id_from_session_key(key)
        else:
            agent_id = DEFAULT_AGENT_ID
        if len(_AGENT_CACHE) >= AGENT_CACHE_SIZE:
            _AGENT_CACHE.clear()
        _AGENT_CACHE[cache_key] = agent_id
    return agent_id


AGENT_CACHE_SIZE = 65536
_AGENT_CACHE: dict[tuple[str | None, str | None], str] = {}


def agents_of(request: Request) -> tuple[str, ...]:
    """Every agent a request touches (their stores must be loaded before :meth:`handle`)."""
    match request:
        case GetManyRequest(keys=keys, agent=agent):
            return tuple(dict.fromkeys(agent_of(agent, key) for key in keys))
        case HelloRequest() | StatsRequest():
            return ()
        case FlushRequest(agent=None):
            return ()
        case ResolveRequest(agent=agent, ctx=ctx):
            session_key = ctx.get("SessionKey")
            return (agent_of(agent, session_key if isinstance(session_key, str) else None),)
        case _:
            return (agent_of(request.agent, getattr(request, "key", None)),)


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


def check_minutes(name: str, minutes: float) -> float:
    """A duration in minutes must be a finite, non-negative number (NaN would disable it)."""
    if not math.isfinite(minutes) or minutes < 0:
        raise InvalidRequestError(f"{name} must be a finite number >= 0, got {minutes!r}")
    return minutes


def _entry_result(key: str, entry: StoredEntry) -> EntryResult:
    return EntryResult(key, entry.value(), entry.revision)


def _written_result(store: SessionStore, key: str, entry: StoredEntry) -> EntryResult:
    return EntryResult(key, store.value_of(entry), entry.revision)


def replayed_result(
    request: WriteRequestBase, store: SessionStore, remembered: RememberedWrite
) -> Any:
    """The reply to a write whose token was already applied, without applying it again.

    Rebuilt from what was remembered: the entry the write stored (or, for a token that
    only survived as a key, the entry as it is now) and, for ``resolve``, its decision.
    """
    if isinstance(request, DeleteRequest):
        return True
    entry = remembered.entry or store.get(remembered.key)
    if entry is None:
        raise ConflictError(
            f"request {request.request_token} was applied earlier, and "
            f"{remembered.key!r} has been deleted since"
        )
    if not isinstance(request, ResolveRequest):
        return _entry_result(remembered.key, entry)
    value = entry.value()
    if remembered.resolution is not None:
        session_id, is_new, reset_triggered, body_stripped = remembered.resolution
    else:  # only the journal's record survived a restart: the session, not the decision
        raw_id = value.get("sessionId") if isinstance(value, dict) else None
        session_id, is_new, reset_triggered, body_stripped = str(raw_id), False, False, None
    return ResolveResult(
        remembered.key, session_id, is_new, reset_triggered, body_stripped, value, entry.revision
    )


class Dispatcher:
    """Runs validated operations against the stores. One per daemon."""

    def __init__(
        self,
        config: Config,
        stores: StoreAccess,
        *,
        stats: Callable[[], dict[str, Any]],
        clock_ms: Callable[[], int],
    ) -> None:
        self.config = config
        self.limits = config.limits
        self.stores = stores
        self.stats = stats
        self.clock_ms = clock_ms
        self.replayed_writes = 0

    def check_key(self, key: str) -> str:
        if not key:
            raise InvalidRequestError("key must be a non-empty string")
        if len(key) * 4 > self.limits.max_key_bytes and (
            len(key.encode("utf-8", "surrogatepass")) > self.limits.max_key_bytes
        ):
            raise InvalidRequestError(
                f"key is longer than the limit of {self.limits.max_key_bytes} bytes"
            )
        return key

    def check_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        for name in fields:
            if not name or len(name) > MAX_FIELD_NAME_CHARS:
                raise InvalidRequestError(
                    f"field names must have 1 to {MAX_FIELD_NAME_CHARS} characters"
                )
        try:
            validate_entry_fields(fields)
        except msgspec.ValidationError as error:
            raise InvalidRequestError(f"invalid entry field: {error}") from error
        return fields

    def store(self, request_agent: str | None, key: str | None, *, write: bool) -> SessionStore:
        return self.stores.store_for(agent_of(request_agent, key), for_write=write)

    def handle(self, request: Request, agents: tuple[str, ...] | None = None) -> Any:
        """Run ``request`` and return its result (a Struct, bool, dict or None).

        A write carrying a ``request_token`` the store remembers is not applied again:
        its earlier result is returned (see :mod:`sessiond.dedup`).
        """
        if isinstance(request, WriteRequestBase) and request.request_token is not None:
            return self.handle_write_once(request, agents or agents_of(request))
        return self.run(request)

    def handle_write_once(self, request: WriteRequestBase, agents: tuple[str, ...]) -> Any:
        token = request.request_token
        assert token is not None
        if not 0 < len(token) <= MAX_TOKEN_CHARS:
            raise InvalidRequestError(f"request_token must have 1 to {MAX_TOKEN_CHARS} characters")
        (agent_id,) = agents
        store = self.stores.store_for(agent_id, for_write=True)
        remembered = store.requests.lookup(token)
        if remembered is not None:
            self.replayed_writes += 1
            return replayed_result(request, store, remembered)
        result = self.run(request)  # type: ignore[arg-type]
        if isinstance(result, ResolveResult):
            store.requests.note_resolution(
                token,
                (result.session_id, result.is_new, result.reset_triggered, result.body_stripped),
            )
        return result

    def run(self, request: Request) -> Any:
        match request:
            case GetRequest():
                return self.get(request)
            case PatchRequest():
                return self.patch(request)
            case UpdateRequest():
                return self.update(request)
            case GetManyRequest():
                return self.get_many(request)
            case ListRequest():
                return self.list(request)
            case ReplaceRequest():
                return self.replace(request)
            case UpdateLastRouteRequest():
                return self.update_last_route(request)
            case DeleteRequest():
                return self.delete(request)
            case ResolveRequest():
                return self.resolve(request)
            case HelloRequest():
                return self.hello(request)
            case StatsRequest():
                return self.stats()
            case FlushRequest():
                raise AssertionError("flush is handled by the server shell")

    def hello(self, request: HelloRequest) -> HelloResult:
        if request.protocol < 1:
            raise InvalidRequestError(f"unsupported protocol version {request.protocol}")
        return HelloResult(PROTOCOL_VERSION, "sessiond", __version__, self.limits.max_frame_bytes)

    def get(self, request: GetRequest) -> EntryResult | None:
        key = self.check_key(request.key)
        store = self.store(request.agent, key, write=False)
        entry = store.get(key)
        return (
            None
            if entry is None
            else EntryResult(key, store.wire_value(key, entry), entry.revision)
        )

    def get_many(self, request: GetManyRequest) -> dict[str, EntryRef]:
        if len(request.keys) > self.limits.max_keys_per_request:
            raise InvalidRequestError(
                f"get_many takes at most {self.limits.max_keys_per_request} keys"
            )
        found: dict[str, EntryRef] = {}
        for key in request.keys:
            entry = self.store(request.agent, self.check_key(key), write=False).get(key)
            if entry is not None:
                found[key] = EntryRef(entry.value(), entry.revision)
        return found

    def list(self, request: ListRequest) -> ListResult:
        # Without a limit, a page is the default size, never more than the configured maximum.
        default_limit = min(DEFAULT_LIST_LIMIT, self.limits.max_list_limit)
        limit = default_limit if request.limit is None else request.limit
        if not 1 <= limit <= self.limits.max_list_limit:
            raise InvalidRequestError(f"limit must be 1 to {self.limits.max_list_limit}")
        active_since_ms = None
        if request.active_minutes is not None:
            minutes = check_minutes("active_minutes", request.active_minutes)
            active_since_ms = self.clock_ms() - minutes * 60_000
        selection = ListFilter(
            prefix=request.prefix,
            active_since_ms=active_since_ms,
            label=request.label,
            spawned_by=request.spawned_by,
        )
        after = decode_cursor(request.cursor) if request.cursor else None
        store = self.store(request.agent, None, write=False)
        page, cursor = select_page(store.items(), selection, limit=limit, after=after)
        return ListResult([_entry_result(key, entry) for key, entry in page], cursor)

    def patch(self, request: PatchRequest) -> EntryResult:
        key = self.check_key(request.key)
        fields = self.check_fields(request.patch)
        store = self.store(request.agent, key, write=True)
        entry = store.patch(
            key, fields, if_revision=request.if_revision, token=request.request_token
        )
        return _written_result(store, key, entry)

    def update(self, request: UpdateRequest) -> EntryResult | None:
        key = self.check_key(request.key)
        fields = self.check_fields(request.patch)
        store = self.store(request.agent, key, write=True)
        entry = store.update(
            key, fields, if_revision=request.if_revision, token=request.request_token
        )
        return None if entry is None else _written_result(store, key, entry)

    def replace(self, request: ReplaceRequest) -> EntryResult:
        key = self.check_key(request.key)
        fields = self.check_fields(request.entry)
        store = self.store(request.agent, key, write=True)
        entry = store.replace(
            key, fields, if_revision=request.if_revision, token=request.request_token
        )
        return _written_result(store, key, entry)

    def update_last_route(self, request: UpdateLastRouteRequest) -> EntryResult:
        key = self.check_key(request.key)
        store = self.store(request.agent, key, write=True)
        entry = store.update_last_route(
            key,
            provider=request.provider,
            to=request.to,
            account_id=request.account_id,
            touch=request.touch,
            token=request.request_token,
        )
        return _written_result(store, key, entry)

    def delete(self, request: DeleteRequest) -> bool:
        key = self.check_key(request.key)
        store = self.store(request.agent, key, write=True)
        return store.delete(key, if_revision=request.if_revision, token=request.request_token)

    def resolve(self, request: ResolveRequest) -> Any:
        if request.idle_minutes is not None:
            check_minutes("idle_minutes", request.idle_minutes)
        try:
            msgspec.convert(request.ctx, MessageContext)
        except msgspec.ValidationError as error:
            raise InvalidRequestError(f"invalid ctx: {error}") from error
        (agent_id,) = agents_of(request)
        store = self.stores.store_for(agent_id, for_write=True)
        options = ResolveOptions.from_request(request, self.config.session_config_for(agent_id))
        return resolve_session(
            store,
            request.ctx,
            options,
            check_key=self.check_key,
            transcripts_dir=self.stores.transcripts_dir_for(agent_id),
            token=request.request_token,
        )
