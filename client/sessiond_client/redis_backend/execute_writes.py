"""The Redis backend's writes: ``patch``, ``update``, ``replace``, ``update_last_route``,
``delete`` and ``resolve``, as sans-I/O generators (see :mod:`.commands`). Pure.

Every write is an optimistic compare-and-set: read the entries the write depends on (one
round trip); decide with the daemon's own rules what
to store (:mod:`sessiond_client.writes`, :mod:`sessiond_client.resolve`); then call the
``apply`` function, which applies the changes only if each entry read is still at the
revision seen, and records the token. If another client won the race the write reads
again and retries, with jittered backoff, up to ``max_attempts`` times (then
``unavailable``). A token already recorded (a resend of a write that was applied before
the connection broke) is answered from its record, as the daemon answers it: the entry
that write stored (still current, or found in the change stream), never applied twice.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, NamedTuple

import msgspec

from sessiond_client.checks import check_ctx, check_fields, check_key, check_minutes, check_token
from sessiond_client.errors import ConflictError, InvalidRequestError, UnavailableError
from sessiond_client.jscompat import UNDEFINED
from sessiond_client.protocol import (
    DeleteRequest,
    EntryResult,
    PatchRequest,
    ReplaceRequest,
    ResolveRequest,
    ResolveResult,
    UpdateLastRouteRequest,
    UpdateRequest,
    WriteRequestBase,
)
from sessiond_client.redis_backend.commands import (
    Command,
    ExecContext,
    Function,
    Outcome,
    Run,
    Sleep,
    Steps,
    encode_wire,
)
from sessiond_client.redis_backend.layout import AgentKeys, StoredValue, stored_value
from sessiond_client.resolve import (
    ResolveOptions,
    legacy_key_to_move,
    plan_resolution,
    resolved_entry,
)
from sessiond_client.writes import check_revision, patched_value, replaced_value, routed_value

__all__ = ["resolve_key_of", "write_steps"]

Current = dict[str, StoredValue | None]
_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(
    tuple[str, str, str | None, tuple[str, bool, bool, str | None] | None]
)


class Decision(NamedTuple):
    """What a write does once it has read: revisions to check (``""``: must be absent),
    changes (a stored value, or None to delete), and its result in wire shape."""

    checks: list[tuple[str, str]]
    changes: list[tuple[str, bytes | None]]
    result: Any
    revision: str | None = None
    resolution: tuple[str, bool, bool, str | None] | None = None


class NoWrite(NamedTuple):
    """The write changes nothing (``update`` or ``delete`` of a missing entry)."""

    result: Any


def _is_session(value: StoredValue | None) -> bool:
    return value is not None and value.is_truthy


def _revision(value: StoredValue | None) -> str:
    return value.revision if value is not None else ""


def _check(key: str, current: StoredValue | None, request: WriteRequestBase) -> None:
    check_revision(
        key,
        current.revision if current is not None else None,
        current_is_session=_is_session(current),
        if_revision=request.if_revision,
        if_absent=getattr(request, "if_absent", False),
    )


def _existing(current: StoredValue | None) -> Any:
    return current.exact_value() if current is not None else UNDEFINED


def _encoded(ctx: ExecContext, value: Any) -> tuple[bytes, StoredValue, msgspec.Raw]:
    """``value`` as stored, as read back, and as a reply shows it; refused when larger
    than ``max_entry_bytes``."""
    stored, json_bytes, exact = stored_value(value)
    if len(json_bytes) > ctx.limits.max_entry_bytes:
        raise InvalidRequestError(
            f"entry of {len(json_bytes)} bytes exceeds the limit of "
            f"{ctx.limits.max_entry_bytes} bytes"
        )
    saved = StoredValue(stored)
    return stored, saved, encode_wire(value if exact else saved.value())


def _store(ctx: ExecContext, key: str, current: StoredValue | None, value: Any) -> Decision:
    """Store ``value`` under ``key`` if it is still at the revision read."""
    stored, saved, wire = _encoded(ctx, value)
    return Decision(
        [(key, _revision(current))],
        [(key, stored)],
        EntryResult(key, wire, saved.revision),
        saved.revision,
    )


def _decide_patch(ctx: ExecContext, request: PatchRequest | UpdateRequest) -> Callable[..., Any]:
    key = request.key

    def decide(current: Current) -> Decision | NoWrite:
        entry = current[key]
        _check(key, entry, request)
        if isinstance(request, UpdateRequest) and not _is_session(entry):
            return NoWrite(None)
        value = patched_value(
            request.patch,
            _existing(entry),
            now_ms=ctx.clock_ms(),
            new_session_id=ctx.new_session_id,
        )
        return _store(ctx, key, entry, value)

    return decide


def _decide_replace(ctx: ExecContext, request: ReplaceRequest) -> Callable[..., Any]:
    def decide(current: Current) -> Decision | NoWrite:
        entry = current[request.key]
        _check(request.key, entry, request)
        value = replaced_value(request.entry, now_ms=ctx.clock_ms())
        return _store(ctx, request.key, entry, value)

    return decide


def _decide_route(ctx: ExecContext, request: UpdateLastRouteRequest) -> Callable[..., Any]:
    def decide(current: Current) -> Decision | NoWrite:
        entry = current[request.key]
        _check(request.key, entry, request)
        value = routed_value(
            entry.exact_value() if entry is not None else UNDEFINED,
            provider=request.provider,
            to=request.to,
            account_id=request.account_id,
            touch=request.touch,
            now_ms=ctx.clock_ms(),
            new_session_id=ctx.new_session_id,
        )
        return _store(ctx, request.key, entry, value)

    return decide


def _decide_delete(request: DeleteRequest) -> Callable[..., Any]:
    def decide(current: Current) -> Decision | NoWrite:
        entry = current[request.key]
        _check(request.key, entry, request)
        if entry is None:
            return NoWrite(False)
        return Decision([(request.key, entry.revision)], [(request.key, None)], True)

    return decide


def _resolve_options(request: ResolveRequest) -> ResolveOptions:
    if request.idle_minutes is not None:
        check_minutes("idle_minutes", request.idle_minutes)
    return ResolveOptions.from_request(request)


def resolve_key_of(ctx: ExecContext, request: ResolveRequest, agent_id: str) -> str:
    """The session key a ``resolve`` names (checked), as the daemon derives it."""
    check_ctx(request.ctx, max_depth=ctx.limits.max_depth, max_fields=ctx.limits.max_fields)
    options = _resolve_options(request)
    plan = plan_resolution(agent_id, request.ctx, options, check_key=_key_checker(ctx))
    return plan.session_key


def _key_checker(ctx: ExecContext) -> Callable[[str], str]:
    return lambda key: check_key(key, max_key_bytes=ctx.limits.max_key_bytes)


def _transcripts_dir(ctx: ExecContext, agent_id: str) -> str:
    return f"{ctx.target.state_dir.rstrip('/')}/agents/{agent_id}/sessions"


def _resolve_steps(ctx: ExecContext, keys: AgentKeys, request: ResolveRequest) -> Steps:
    check_ctx(request.ctx, max_depth=ctx.limits.max_depth, max_fields=ctx.limits.max_fields)
    options = _resolve_options(request)
    plan = plan_resolution(keys.agent_id, request.ctx, options, check_key=_key_checker(ctx))
    legacy_key = plan.group.legacy_key if plan.group is not None else None
    read = [plan.session_key]
    if legacy_key and legacy_key != plan.session_key:
        read.append(legacy_key)

    def decide(current: Current) -> Decision | NoWrite:
        legacy = legacy_key_to_move(plan, lambda key: _is_session(current.get(key)))
        where = legacy or plan.session_key
        if request.if_revision is not None:
            _check(where, current[where], request)
        checks = [(key, _revision(current[key])) for key in read]
        changes: list[tuple[str, bytes | None]] = []
        entry = current[plan.session_key]
        if legacy is not None:
            moved = current[legacy]
            assert moved is not None
            changes += [(plan.session_key, moved.raw), (legacy, None)]
            entry = moved
        resolved = resolved_entry(
            plan,
            entry.exact_value() if _is_session(entry) and entry is not None else None,
            request.ctx,
            options,
            now_ms=ctx.clock_ms(),
            new_session_id=ctx.new_session_id,
            transcripts_dir=_transcripts_dir(ctx, keys.agent_id),
        )
        stored, saved, wire = _encoded(ctx, resolved.entry)
        changes.append((plan.session_key, stored))
        resolution = (
            resolved.session_id,
            resolved.is_new,
            plan.body_stripped is not None,
            plan.body_stripped,
        )
        result = ResolveResult(plan.session_key, *resolution, wire, saved.revision)
        return Decision(checks, changes, result, saved.revision, resolution)

    return (
        yield from _compare_and_set(
            ctx, keys, request, op="resolve", key=plan.session_key, read=read, decide=decide
        )
    )


def write_steps(ctx: ExecContext, keys: AgentKeys, request: WriteRequestBase) -> Steps:
    """The steps of one write (the request already decoded as the daemon decodes it)."""
    if request.request_token is not None:
        check_token(request.request_token)
    if request.durable:
        ctx.profile.require_durability(ctx.target.shown)
    limits = ctx.limits
    match request:
        case ResolveRequest():
            return (yield from _resolve_steps(ctx, keys, request))
        case PatchRequest() | UpdateRequest():
            check_fields(
                request.patch, "patch", max_depth=limits.max_depth, max_fields=limits.max_fields
            )
            decide = _decide_patch(ctx, request)
        case ReplaceRequest():
            check_fields(
                request.entry, "entry", max_depth=limits.max_depth, max_fields=limits.max_fields
            )
            decide = _decide_replace(ctx, request)
        case UpdateLastRouteRequest():
            decide = _decide_route(ctx, request)
        case DeleteRequest():
            decide = _decide_delete(request)
        case _:
            raise AssertionError(f"not a write: {request!r}")
    key: str = request.key
    check_key(key, max_key_bytes=limits.max_key_bytes)
    op = str(type(request).__struct_config__.tag)
    return (
        yield from _compare_and_set(ctx, keys, request, op=op, key=key, read=[key], decide=decide)
    )


def _compare_and_set(
    ctx: ExecContext,
    keys: AgentKeys,
    request: WriteRequestBase,
    *,
    op: str,
    key: str,
    read: list[str],
    decide: Callable[[Current], Decision | NoWrite],
) -> Steps:
    token = request.request_token
    token_key = keys.token(token)
    for attempt in range(ctx.max_attempts):
        replies = yield Run([("HGET", keys.entries, name) for name in read])
        current = {
            name: StoredValue(raw) if raw is not None else None
            for name, raw in zip(read, replies, strict=True)
        }
        try:
            decision = decide(current)
        except ConflictError:
            # A resend of a write that was applied finds the entry changed by itself:
            # answer it from its token, as the daemon (which looks first) does.
            recorded = yield from _recorded(token_key, token)
            if recorded is None:
                raise
            return (yield from _replay(keys, op, key, recorded))
        if isinstance(decision, NoWrite):
            recorded = yield from _recorded(token_key, token)
            if recorded is not None:
                return (yield from _replay(keys, op, key, recorded))
            return Outcome(decision.result)
        record = b""
        if token is not None:
            record = _record_encoder.encode((op, key, decision.revision, decision.resolution))
        args: list[Any] = [
            ctx.limits.watch_history_changes,
            int(ctx.limits.remember_requests_s * 1000),
            record,
            len(decision.checks),
        ]
        for name, revision in decision.checks:
            args += [name, revision]
        args.append(len(decision.changes))
        for name, stored in decision.changes:
            args += [name, stored if stored is not None else b""]
        reply = yield Function(
            "apply",
            [keys.entries, keys.index, keys.seq, keys.stream, token_key],
            args,
            wait_durable=request.durable,
        )
        status = reply[0]
        if status == b"ok":
            seq = int(reply[1])
            return Outcome(decision.result, seq if seq >= 0 else None)
        if status == b"replay":
            return (yield from _replay(keys, op, key, reply[1]))
        yield Sleep(ctx.backoff.delay_s(min(attempt, 4)))
    raise UnavailableError(
        f"{key!r} kept changing under {ctx.max_attempts} attempts to write it; try again"
    )


def _recorded(token_key: str, token: str | None) -> Generator[Command, Any, bytes | None]:
    """The record of ``token`` if a write with it was applied (only a resend can find
    one: the token is new on a call's first send, and the ``apply`` function checks it
    before writing anyway — this read is for the answers given before ``apply``)."""
    if token is None:
        return None
    (record,) = yield Run([("GET", token_key)])
    return record if isinstance(record, bytes) else None


def _replay(keys: AgentKeys, op: str, key: str, record: bytes) -> Steps:
    """The reply to a write whose token was recorded, without applying it again."""
    seq_text, _, payload = record.partition(b"|")
    seq = int(seq_text)
    recorded_op, recorded_key, revision, resolution = _record_decoder.decode(payload)
    if recorded_op != op or recorded_key != key:
        raise InvalidRequestError(
            f"this request_token was used by a {recorded_op} of {recorded_key!r}; a token "
            "names one write (make a new one per call)"
        )
    if op == "delete":
        return Outcome(True, seq)
    replies = yield Run(
        [("HGET", keys.entries, key), ("XRANGE", keys.stream, f"0-{seq}", f"0-{seq}")]
    )
    written = _written_value(replies[0], replies[1], revision)
    if written is None:
        raise ConflictError(f"this request was applied earlier, and {key!r} has been deleted since")
    wire = encode_wire(written.value())
    if resolution is None:
        return Outcome(EntryResult(key, wire, written.revision), seq)
    return Outcome(ResolveResult(key, *resolution, wire, written.revision), seq)


def _written_value(
    current: bytes | None, events: list[Any], revision: str | None
) -> StoredValue | None:
    """The entry a recorded write stored: the current one if unchanged, else the one in
    its stream event (kept for the last ``watch_history_changes`` changes), else the
    current one (as the daemon answers after a restart)."""
    if current is not None and StoredValue(current).revision == revision:
        return StoredValue(current)
    for _, fields in events:
        pairs = dict(zip(fields[::2], fields[1::2], strict=True))
        value = pairs.get(b"v")
        if value is not None and StoredValue(value).revision == revision:
            return StoredValue(value)
    return StoredValue(current) if current is not None else None
