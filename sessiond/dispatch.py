"""Request dispatch: validate a decoded request, pick its store, run the operation, and
shape the result. Pure: no I/O; stores are reached through :class:`StoreAccess`.

The server shell does what needs awaiting around it (loading a store the first time it
is named, waiting for a durable write's flush, ``flush`` itself). Everything here is a
plain function of the request and the in-memory stores, so it is unit-tested without
sockets and costs no task switch on the hot path.

Validation happens before anything is applied: keys (non-empty, at most
``max_key_bytes``), agents (a wire ``agent`` must already be in normal form), entry
values (:mod:`sessiond.values`: JSON values only, bounded depth and size; known fields
type-checked), request tokens (a token names one write: reusing it for another op or key
is refused), and reply sizes (a ``get_many`` or ``list`` reply never exceeds
``max_reply_bytes``: ``list`` returns a shorter page, ``get_many`` asks for fewer keys).
The checks themselves are :mod:`sessiond_client.checks`, shared with the client's Redis
backend, so both refuse the same requests with the same errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import msgspec

from sessiond import __version__
from sessiond.config import Config
from sessiond.dedup import RememberedWrite
from sessiond.entries import StoredEntry
from sessiond.listing import ListFilter, decode_cursor, encode_cursor, select_page
from sessiond.resolve import ResolveOptions, resolve_session, session_key_for
from sessiond.store import SessionStore, encode_for_wire
from sessiond.transfer import ExportViews, Imports
from sessiond_client import checks
from sessiond_client.checks import (
    DEFAULT_LIST_LIMIT,
    REPLY_ITEM_OVERHEAD_BYTES,
    REPLY_WRAPPER_BYTES,
    check_ctx,
    check_fields,
    check_import_entry,
    check_key,
    check_key_count,
    check_list_limit,
    check_minutes,
    check_projection,
    check_protocol,
    check_token,
    cursor_bytes,
    hello_result,
    project,
    utf8_len,
    wire_agent,
)
from sessiond_client.errors import ConflictError, InvalidRequestError
from sessiond_client.keys import DEFAULT_AGENT_ID
from sessiond_client.protocol import (
    OP_OF_REQUEST,
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
    ReplaceRequest,
    Request,
    ResolveRequest,
    ResolveResult,
    StatsRequest,
    UnwatchRequest,
    UpdateLastRouteRequest,
    UpdateRequest,
    WatchRequest,
    WriteRequestBase,
)

__all__ = ["Dispatcher", "Outcome", "StoreAccess", "agent_of", "agents_of"]


class StoreAccess(Protocol):
    """How dispatch reaches stores; the registry (I/O shell) implements it."""

    def store_for(self, agent_id: str, *, for_write: bool) -> SessionStore:
        """The store of ``agent_id`` (an empty one for a read of an agent with no store
        on disk); raises a ServerError if it cannot serve."""
        ...

    def transcripts_dir_for(self, agent_id: str) -> str:
        """Where the agent's transcript files live (the store file's directory)."""
        ...


class Outcome(NamedTuple):
    """What a request produced: its result and, for a write that changed its store, the
    store's sequence number after the change."""

    result: Any
    seq: int | None = None


def agent_of(request_agent: str | None, key: str | None) -> str:
    """:func:`sessiond_client.checks.agent_of` (explicit ``agent``, else the key's, else
    main), memoised: the JS-faithful normalisation costs a few microseconds, and a bot
    asks for the same few keys over and over.
    """
    cache_key = (request_agent, key)
    agent_id = _AGENT_CACHE.get(cache_key)
    if agent_id is None:
        agent_id = checks.agent_of(request_agent, key)
        if len(_AGENT_CACHE) >= AGENT_CACHE_SIZE:
            _AGENT_CACHE.clear()
        _AGENT_CACHE[cache_key] = agent_id
    return agent_id


AGENT_CACHE_SIZE = 65536
_AGENT_CACHE: dict[tuple[str | None, str | None], str] = {}


def agents_of(request: Request) -> tuple[str, ...]:
    """Every agent a request touches (their stores must be ready before :meth:`execute`)."""
    match request:
        case GetManyRequest(keys=keys, agent=agent):
            return tuple(dict.fromkeys(agent_of(agent, key) for key in keys))
        case HelloRequest() | FlushRequest() | StatsRequest() | UnwatchRequest():
            return ()  # no store to load: flush and stats see only what is loaded
        case ResolveRequest(agent=agent, ctx=ctx):
            session_key = ctx.get("SessionKey")
            key_agent = agent_of(None, session_key) if isinstance(session_key, str) else None
            if agent is None:
                return (key_agent or DEFAULT_AGENT_ID,)
            return (agent_of(agent, None),)
        case _:
            return (agent_of(request.agent, getattr(request, "key", None)),)


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
    wire = store.wire_value(remembered.key, entry)
    if not isinstance(request, ResolveRequest):
        return EntryResult(remembered.key, wire, entry.revision)
    if remembered.resolution is not None:
        session_id, is_new, reset_triggered, body_stripped = remembered.resolution
    else:  # only the journal's record survived a restart: the session, not the decision
        value = entry.value()
        raw_id = value.get("sessionId") if isinstance(value, dict) else None
        session_id, is_new, reset_triggered, body_stripped = str(raw_id), False, False, None
    return ResolveResult(
        remembered.key, session_id, is_new, reset_triggered, body_stripped, wire, entry.revision
    )


class Dispatcher:
    """Runs validated operations against the stores. One per daemon."""

    def __init__(
        self,
        config: Config,
        stores: StoreAccess,
        *,
        stats: Callable[[str | None], dict[str, Any]],
        clock_ms: Callable[[], int],
    ) -> None:
        self.config = config
        self.limits = config.limits
        self.stores = stores
        self.stats = stats
        self.clock_ms = clock_ms
        self.replayed_writes = 0
        self.exports = ExportViews(clock_s=time.monotonic)
        self.imports = Imports(clock_s=time.monotonic, max_bytes=config.limits.max_import_bytes)

    # -- validation ---------------------------------------------------------------------

    def check_key(self, key: str) -> str:
        return check_key(key, max_key_bytes=self.limits.max_key_bytes)

    def check_fields(self, fields: dict[str, Any], where: str) -> dict[str, Any]:
        """An entry or patch: JSON values within the limits, known fields well typed."""
        limits = self.limits
        return check_fields(fields, where, max_depth=limits.max_depth, max_fields=limits.max_fields)

    def check_projection(self, fields: list[str] | None) -> list[str] | None:
        return check_projection(fields, max_fields=self.limits.max_fields)

    def store(self, request_agent: str | None, key: str | None, *, write: bool) -> SessionStore:
        return self.stores.store_for(agent_of(request_agent, key), for_write=write)

    def _entry_wire(
        self, store: SessionStore, key: str, entry: StoredEntry, fields: list[str] | None
    ) -> msgspec.Raw:
        if fields is None:
            return store.wire_value(key, entry)
        return encode_for_wire(project(entry.value(), fields))

    # -- entry points -------------------------------------------------------------------

    def handle(self, request: Request, agents: tuple[str, ...] | None = None) -> Any:
        """Run ``request`` and return its result (a Struct, bool, dict or None)."""
        return self.execute(request, agents).result

    def execute(self, request: Request, agents: tuple[str, ...] | None = None) -> Outcome:
        """Run ``request``: its result, and the store's ``seq`` after a write that changed it.

        A write carrying a ``request_token`` the store remembers is not applied again:
        its earlier result is returned (see :mod:`sessiond.dedup`).
        """
        if not isinstance(request, WriteRequestBase):
            return Outcome(self.run(request))
        (agent_id,) = agents or agents_of(request)
        store = self.stores.store_for(agent_id, for_write=True)
        token = request.request_token
        if token is not None:
            remembered = self.remembered(request, store, token)
            if remembered is not None:
                self.replayed_writes += 1
                return Outcome(replayed_result(request, store, remembered), remembered.seq)
        seq_before = store.seq
        result = self.run(request)
        if isinstance(result, ResolveResult) and token is not None:
            store.requests.note_resolution(
                token,
                (result.session_id, result.is_new, result.reset_triggered, result.body_stripped),
            )
        return Outcome(result, store.seq if store.seq != seq_before else None)

    def remembered(
        self, request: WriteRequestBase, store: SessionStore, token: str
    ) -> RememberedWrite | None:
        """What the store remembers of ``token``; refuses a token reused for another write."""
        check_token(token)
        remembered = store.requests.lookup(token)
        if remembered is None:
            return None
        op = OP_OF_REQUEST[type(request)]
        key: str | None = (
            self.resolve_key(request, store.agent_id)
            if isinstance(request, ResolveRequest)
            else getattr(request, "key", None)
        )
        if (remembered.op is not None and remembered.op != op) or remembered.key != key:
            raise InvalidRequestError(
                f"request_token {token!r} was used by a {remembered.op or 'write'} of "
                f"{remembered.key!r}; a token names one write (make a new one per call)"
            )
        return remembered

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
                return self.stats(None if request.agent is None else wire_agent(request.agent))
            case ExportRequest():
                return self.export(request)
            case ImportRequest():
                return self.import_entries(request)
            case FlushRequest() | WatchRequest() | UnwatchRequest() | PruneRequest():
                raise AssertionError(f"{type(request).__name__} is handled by the server shell")

    # -- operations ---------------------------------------------------------------------

    def hello(self, request: HelloRequest) -> HelloResult:
        check_protocol(request.protocol, speaker="daemon")
        return hello_result(self.limits, server="sessiond", version=__version__)

    def get(self, request: GetRequest) -> EntryResult | None:
        key = self.check_key(request.key)
        fields = self.check_projection(request.fields)
        store = self.store(request.agent, key, write=False)
        entry = store.get(key)
        if entry is None:
            return None
        return EntryResult(key, self._entry_wire(store, key, entry, fields), entry.revision)

    def get_many(self, request: GetManyRequest) -> dict[str, EntryRef]:
        limits = self.limits
        check_key_count(
            len(request.keys),
            max_keys_per_request=limits.max_keys_per_request,
            what="get_many takes",
            noun="keys",
        )
        fields = self.check_projection(request.fields)
        found: dict[str, EntryRef] = {}
        reply_bytes = REPLY_WRAPPER_BYTES
        max_key_bytes = limits.max_key_bytes
        for key in request.keys:
            check_key(key, max_key_bytes=max_key_bytes)
            store = self.store(request.agent, key, write=False)
            entry = store.get(key)
            if entry is None:
                continue
            wire = self._entry_wire(store, key, entry, fields)
            reply_bytes += len(wire) + utf8_len(key) + REPLY_ITEM_OVERHEAD_BYTES
            if reply_bytes > limits.max_reply_bytes:
                raise InvalidRequestError(
                    f"the reply would exceed max_reply_bytes ({limits.max_reply_bytes} bytes): "
                    "ask for fewer keys per get_many, or fewer fields"
                )
            found[key] = EntryRef(wire, entry.revision)
        return found

    def list(self, request: ListRequest) -> ListResult:
        limits = self.limits
        # Without a limit, a page is the default size, never more than the configured maximum.
        limit = check_list_limit(
            request.limit,
            max_list_limit=limits.max_list_limit,
            default=min(DEFAULT_LIST_LIMIT, limits.max_list_limit),
        )
        fields = self.check_projection(request.fields)
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
        page, has_more = select_page(store.items(), selection, limit=limit, after=after)
        items: list[EntryResult] = []
        reply_bytes = REPLY_WRAPPER_BYTES
        for position, key, entry in page:
            wire = self._entry_wire(store, key, entry, fields)
            reply_bytes += len(wire) + utf8_len(key) + REPLY_ITEM_OVERHEAD_BYTES
            if items and reply_bytes + cursor_bytes(key) > limits.max_reply_bytes:
                has_more = True  # a shorter page: the cursor resumes after the last item
                break
            items.append(EntryResult(key, wire, entry.revision))
            last_position = position
        cursor = encode_cursor(last_position) if has_more and items else None
        return ListResult(items, cursor, store.seq)

    def export(self, request: ExportRequest) -> ListResult:
        """A page of a consistent copy of one store (see :mod:`sessiond.transfer`)."""
        limits = self.limits
        limit = check_list_limit(
            request.limit, max_list_limit=limits.max_list_limit, default=limits.max_list_limit
        )
        agent_id = agent_of(request.agent, None)
        store = self.stores.store_for(agent_id, for_write=False)
        cursor = request.cursor or self.exports.start(agent_id, store.entries, store.seq)
        page, seq = self.exports.page(cursor, agent_id, limit)
        items: list[EntryResult] = []
        reply_bytes = REPLY_WRAPPER_BYTES + cursor_bytes(cursor)
        for key, entry in page:
            wire = encode_for_wire(entry.value())
            reply_bytes += len(wire) + utf8_len(key) + REPLY_ITEM_OVERHEAD_BYTES
            if items and reply_bytes > limits.max_reply_bytes:
                break
            items.append(EntryResult(key, wire, entry.revision))
        return ListResult(items, self.exports.advance(cursor, len(items)), seq)

    def import_entries(self, request: ImportRequest) -> ImportResult:
        """Stage whole entries; on ``commit`` store every staged entry in one step.

        Everything that could refuse an entry is checked while staging, so a commit
        cannot stop half-way. Entries are stored exactly as given (no ``updatedAt``
        default, ``null`` fields kept, known fields not type-checked): an import restores
        what an export copied, odd legacy data included.
        """
        agent_id = agent_of(request.agent, None)
        limits = self.limits
        check_key_count(
            len(request.entries),
            max_keys_per_request=limits.max_keys_per_request,
            what="an import request stages",
            noun="entries",
        )
        size = sum(
            utf8_len(key) + check_import_entry(key, entry, limits)
            for key, entry in request.entries.items()
        )
        import_id, staged = self.imports.stage(request.import_id, agent_id, request.entries, size)
        if not request.commit:
            return ImportResult(import_id=import_id, staged=len(staged.entries))
        self.imports.take(import_id)
        store = self.stores.store_for(agent_id, for_write=True)
        for key, entry in staged.entries.items():
            store.store_value(key, entry, op="import")
        count = len(staged.entries)
        return ImportResult(import_id=import_id, staged=count, imported=count, seq=store.seq)

    def patch(self, request: PatchRequest) -> EntryResult:
        key = self.check_key(request.key)
        fields = self.check_fields(request.patch, "patch")
        store = self.store(request.agent, key, write=True)
        entry = store.patch(
            key,
            fields,
            if_revision=request.if_revision,
            if_absent=request.if_absent,
            token=request.request_token,
        )
        return EntryResult(key, store.wire_value(key, entry), entry.revision)

    def update(self, request: UpdateRequest) -> EntryResult | None:
        key = self.check_key(request.key)
        fields = self.check_fields(request.patch, "patch")
        store = self.store(request.agent, key, write=True)
        entry = store.update(
            key, fields, if_revision=request.if_revision, token=request.request_token
        )
        return (
            None
            if entry is None
            else EntryResult(key, store.wire_value(key, entry), entry.revision)
        )

    def replace(self, request: ReplaceRequest) -> EntryResult:
        key = self.check_key(request.key)
        fields = self.check_fields(request.entry, "entry")
        store = self.store(request.agent, key, write=True)
        entry = store.replace(
            key,
            fields,
            if_revision=request.if_revision,
            if_absent=request.if_absent,
            token=request.request_token,
        )
        return EntryResult(key, store.wire_value(key, entry), entry.revision)

    def update_last_route(self, request: UpdateLastRouteRequest) -> EntryResult:
        key = self.check_key(request.key)
        store = self.store(request.agent, key, write=True)
        entry = store.update_last_route(
            key,
            provider=request.provider,
            to=request.to,
            account_id=request.account_id,
            touch=request.touch,
            if_revision=request.if_revision,
            token=request.request_token,
        )
        return EntryResult(key, store.wire_value(key, entry), entry.revision)

    def delete(self, request: DeleteRequest) -> bool:
        key = self.check_key(request.key)
        store = self.store(request.agent, key, write=True)
        return store.delete(key, if_revision=request.if_revision, token=request.request_token)

    def resolve_key(self, request: ResolveRequest, agent_id: str) -> str:
        options = ResolveOptions.from_request(request, self.config.session_config_for(agent_id))
        return self.check_key(session_key_for(agent_id, options, self.checked_ctx(request)))

    def checked_ctx(self, request: ResolveRequest) -> dict[str, Any]:
        limits = self.limits
        return check_ctx(request.ctx, max_depth=limits.max_depth, max_fields=limits.max_fields)

    def resolve(self, request: ResolveRequest) -> ResolveResult:
        if request.idle_minutes is not None:
            check_minutes("idle_minutes", request.idle_minutes)
        ctx = self.checked_ctx(request)
        (agent_id,) = agents_of(request)
        store = self.stores.store_for(agent_id, for_write=True)
        options = ResolveOptions.from_request(request, self.config.session_config_for(agent_id))
        return resolve_session(
            store,
            ctx,
            options,
            check_key=self.check_key,
            transcripts_dir=self.stores.transcripts_dir_for(agent_id),
            token=request.request_token,
            if_revision=request.if_revision,
        )
