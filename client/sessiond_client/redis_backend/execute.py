"""Every operation of the Redis backend, as a sans-I/O generator of commands. Pure.

:func:`steps_for` takes a request exactly as the daemon would decode it and returns the
generator that runs it (see :mod:`.commands`); its outcome is the result in the wire
shape the daemon sends, so the client's result converters — and with them the result
types — are the same for both backends. Writes are in :mod:`.execute_writes`, export
and import in :mod:`.execute_transfer`. What applies over Redis:

- ``hello``: protocol 1; ``server`` is ``redis`` or ``valkey`` and ``version`` that
  server's; the limits are the daemon's defaults (the backend enforces them).
- ``get``/``get_many``/``list``: as the daemon; a ``list`` walks the agent's index
  (newest first) from the cursor in batches and filters with the daemon's rules; its
  ``seq`` is the store's when the walk started.
- ``flush``: returns once everything written so far is on disk (``WAITAOF``, or at once
  under ``appendfsync always``); ``unavailable`` where the server cannot promise that.
- ``stats``: the server (``server``, ``version``, ``uptime_s``, ``connections``,
  ``durability``) and per agent ``entries``, ``seq`` and ``watch_history``; ``ops`` and
  ``errors`` count this client's own calls (there is no daemon to count everyone's).
- ``prune``: retention is the daemon's configuration; over Redis it is ``unknown_op``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sessiond_client.checks import (
    DEFAULT_LIST_LIMIT,
    REPLY_ITEM_OVERHEAD_BYTES,
    REPLY_WRAPPER_BYTES,
    agent_of,
    check_key,
    check_key_count,
    check_list_limit,
    check_minutes,
    check_projection,
    check_protocol,
    cursor_bytes,
    project,
    utf8_len,
    wire_agent,
)
from sessiond_client.checks import (
    hello_result as shared_hello_result,
)
from sessiond_client.errors import InvalidRequestError, UnknownOpError
from sessiond_client.keys import DEFAULT_AGENT_ID
from sessiond_client.limits import RequestLimits
from sessiond_client.listing import ListFilter, decode_cursor, encode_cursor
from sessiond_client.protocol import (
    EntryRef,
    EntryResult,
    ExportRequest,
    FlushRequest,
    GetManyRequest,
    GetRequest,
    HelloRequest,
    HelloResult,
    ImportRequest,
    ListRequest,
    ListResult,
    PruneRequest,
    Request,
    ResolveRequest,
    StatsRequest,
    WriteRequestBase,
)
from sessiond_client.redis_backend.commands import (
    ExecContext,
    Function,
    Outcome,
    Run,
    Steps,
    WaitDurable,
    encode_wire,
)
from sessiond_client.redis_backend.execute_transfer import export_steps, import_steps
from sessiond_client.redis_backend.execute_writes import write_steps
from sessiond_client.redis_backend.layout import (
    AgentKeys,
    StoredValue,
    index_member,
    sort_key_of_member,
)
from sessiond_client.redis_backend.profile import ServerProfile

__all__ = ["LIST_BATCH", "agent_of_request", "hello_result", "steps_for"]

LIST_BATCH = 256
"""Index members a ``list`` reads per round trip (more when the page is larger)."""
SCAN_COUNT = 1000


def agent_of_request(request: Request) -> str:
    """The agent whose store a (single-store) request uses, as the daemon picks it."""
    if isinstance(request, ResolveRequest):
        if request.agent is not None:
            return wire_agent(request.agent)
        session_key = request.ctx.get("SessionKey")
        return agent_of(None, session_key) if isinstance(session_key, str) else DEFAULT_AGENT_ID
    return agent_of(request.agent, getattr(request, "key", None))


def steps_for(ctx: ExecContext, request: Request, op_counts: Counter[str]) -> Steps:
    """The generator that runs ``request``."""
    match request:
        case WriteRequestBase():
            return write_steps(ctx, AgentKeys(agent_of_request(request)), request)
        case GetRequest():
            return _get(ctx, request)
        case GetManyRequest():
            return _get_many(ctx, request)
        case ListRequest():
            return _list(ctx, request)
        case HelloRequest():
            return _hello(ctx, request)
        case FlushRequest():
            return _flush(ctx, request)
        case StatsRequest():
            return _stats(ctx, request, op_counts)
        case ExportRequest():
            return export_steps(ctx, AgentKeys(agent_of(request.agent, None)), request)
        case ImportRequest():
            return import_steps(ctx, AgentKeys(agent_of(request.agent, None)), request)
        case PruneRequest():
            raise UnknownOpError(
                "prune applies the daemon's retention configuration; over Redis there is "
                "none (delete old sessions with list and delete, or run the daemon)"
            )
        case _:
            raise AssertionError(f"{type(request).__name__} is not run as steps")


def _wire_entry(value: StoredValue, fields: list[str] | None) -> Any:
    entry = value.value()
    return encode_wire(entry if fields is None else project(entry, fields))


def hello_result(profile: ServerProfile, limits: RequestLimits) -> HelloResult:
    """``hello``'s answer over Redis: the server's name and version, the limits enforced."""
    return shared_hello_result(limits, server=profile.flavor, version=profile.version)


def _hello(ctx: ExecContext, request: HelloRequest) -> Steps:
    check_protocol(request.protocol, speaker="backend")
    yield from ()
    return Outcome(hello_result(ctx.profile, ctx.limits))


def _get(ctx: ExecContext, request: GetRequest) -> Steps:
    key = check_key(request.key, max_key_bytes=ctx.limits.max_key_bytes)
    fields = check_projection(request.fields, max_fields=ctx.limits.max_fields)
    keys = AgentKeys(agent_of(request.agent, key))
    (raw,) = yield Run([("HGET", keys.entries, key)])
    if raw is None or not StoredValue(raw).is_truthy:
        return Outcome(None)
    value = StoredValue(raw)
    return Outcome(EntryResult(key, _wire_entry(value, fields), value.revision))


def _get_many(ctx: ExecContext, request: GetManyRequest) -> Steps:
    limits = ctx.limits
    check_key_count(
        len(request.keys),
        max_keys_per_request=limits.max_keys_per_request,
        what="get_many takes",
        noun="keys",
    )
    fields = check_projection(request.fields, max_fields=limits.max_fields)
    for key in request.keys:
        check_key(key, max_key_bytes=limits.max_key_bytes)
    commands = [
        ("HGET", AgentKeys(agent_of(request.agent, key)).entries, key) for key in request.keys
    ]
    replies = yield Run(commands) if commands else Run([])
    found: dict[str, EntryRef] = {}
    reply_bytes = REPLY_WRAPPER_BYTES
    for key, raw in zip(request.keys, replies, strict=True):
        if raw is None or not StoredValue(raw).is_truthy:
            continue
        value = StoredValue(raw)
        wire = _wire_entry(value, fields)
        reply_bytes += len(wire) + utf8_len(key) + REPLY_ITEM_OVERHEAD_BYTES
        if reply_bytes > limits.max_reply_bytes:
            raise InvalidRequestError(
                f"the reply would exceed max_reply_bytes ({limits.max_reply_bytes} bytes): "
                "ask for fewer keys per get_many, or fewer fields"
            )
        found[key] = EntryRef(wire, value.revision)
    return Outcome(found)


def _list(ctx: ExecContext, request: ListRequest) -> Steps:
    limits = ctx.limits
    limit = check_list_limit(
        request.limit,
        max_list_limit=limits.max_list_limit,
        default=min(DEFAULT_LIST_LIMIT, limits.max_list_limit),
    )
    fields = check_projection(request.fields, max_fields=limits.max_fields)
    active_since_ms = None
    if request.active_minutes is not None:
        minutes = check_minutes("active_minutes", request.active_minutes)
        active_since_ms = ctx.clock_ms() - minutes * 60_000
    selection = ListFilter(
        prefix=request.prefix,
        active_since_ms=active_since_ms,
        label=request.label,
        spawned_by=request.spawned_by,
    )
    after = decode_cursor(request.cursor) if request.cursor else None
    keys = AgentKeys(agent_of(request.agent, None))
    start = index_member(after) if after is not None else b""
    batch = max(LIST_BATCH, limit + 1)
    page: list[tuple[tuple[float, str], str, StoredValue]] = []
    seq: int | None = None
    exhausted = False
    while len(page) <= limit and not exhausted:
        reply = yield Function("page", [keys.index, keys.entries, keys.seq], [start, batch, 0, 0])
        seq = int(reply[1]) if seq is None else seq
        pairs = reply[2:]
        exhausted = len(pairs) < 2 * batch
        for member, raw in zip(pairs[::2], pairs[1::2], strict=True):
            start = member
            if raw is None:
                continue
            value = StoredValue(raw)
            position = sort_key_of_member(member)
            if active_since_ms is not None and value.updated_at_ms < active_since_ms:
                exhausted = True  # newest first: nothing after this is active enough
                break
            if value.is_truthy and selection.matches(position[1], value):
                page.append((position, position[1], value))
                if len(page) > limit:
                    break
    has_more = len(page) > limit
    items: list[EntryResult] = []
    reply_bytes = REPLY_WRAPPER_BYTES
    last_position = None
    for position, key, value in page[:limit]:
        wire = _wire_entry(value, fields)
        reply_bytes += len(wire) + utf8_len(key) + REPLY_ITEM_OVERHEAD_BYTES
        if items and reply_bytes + cursor_bytes(key) > limits.max_reply_bytes:
            has_more = True  # a shorter page: the cursor resumes after the last item
            break
        items.append(EntryResult(key, wire, value.revision))
        last_position = position
    cursor = encode_cursor(last_position) if has_more and last_position is not None else None
    return Outcome(ListResult(items, cursor, seq or 0))


def _flush(ctx: ExecContext, request: FlushRequest) -> Steps:
    if request.agent is not None:
        wire_agent(request.agent)
    ctx.profile.require_durability(ctx.target.shown)
    yield WaitDurable()
    return Outcome(True)


def _all_agents(scanned: list[bytes]) -> list[str]:
    agents = {AgentKeys.agent_of_seq_key(name) for name in scanned}
    return sorted(agent for agent in agents if agent is not None)


def _stats(ctx: ExecContext, request: StatsRequest, op_counts: Counter[str]) -> Steps:
    if request.agent is not None:
        agents = [wire_agent(request.agent)]
    else:
        scanned: list[bytes] = []
        cursor: bytes | int = 0
        while True:
            (reply,) = yield Run([("SCAN", cursor, "MATCH", "{sessiond:*}:s", "COUNT", SCAN_COUNT)])
            cursor, names = reply
            scanned += names
            if int(cursor) == 0:
                break
        agents = _all_agents(scanned)
    commands: list[tuple[Any, ...]] = []
    for agent in agents:
        keys = AgentKeys(agent)
        commands += [("HLEN", keys.entries), ("GET", keys.seq), ("XLEN", keys.stream)]
    replies = (yield Run(commands)) if commands else []
    profile = ctx.profile
    stores = {
        agent: {
            "entries": int(replies[3 * i]),
            "seq": int(replies[3 * i + 1] or 0),
            "watch_history": int(replies[3 * i + 2]),
            "mode": profile.flavor,
        }
        for i, agent in enumerate(agents)
    }
    errors = {op[len("error:") :]: n for op, n in op_counts.items() if op.startswith("error:")}
    stats = {
        "server": profile.flavor,
        "version": profile.version,
        "uptime_s": profile.uptime_s,
        "connections": profile.connected_clients,
        "durability": profile.durability,
        "maxmemory_policy": profile.maxmemory_policy,
        "ops": {op: n for op, n in op_counts.items() if not op.startswith("error:")},
        "errors": errors,
        "stores": stores,
        "unavailable_stores": {},
    }
    if request.agent is None:
        stats["stores_on_disk"] = agents
    return Outcome(stats)
