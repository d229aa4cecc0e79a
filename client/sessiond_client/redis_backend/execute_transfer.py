"""``export`` and ``import`` over Redis, as sans-I/O generators (see :mod:`.commands`). Pure.

- **Export.** The first request (``cursor`` None) copies the agent's entries and index
  with ``COPY`` in one function call, with the store's ``seq`` (an instant of the store,
  whatever is written meanwhile); its cursor (``<export id>.<member>``, opaque) pages
  through the copy in the ``list`` order. A copy unused for five minutes expires
  (``invalid_request`` "unknown or expired": start again); the last page deletes it.
- **Import.** Staged entries wait in a hash of their own (``{sessiond:A}:m:<id>``,
  expiring after five minutes unused), already in their stored form; ``commit`` stores
  them all in one function call (one change each, seen by watches) and, as the daemon's
  commit, returns once they are durable (so it needs a server that can promise that).
  Entries are stored exactly as given (the value model and sizes checked), so an
  export → import round trip keeps every entry and its revision.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any, Final

from sessiond_client.checks import (
    REPLY_ITEM_OVERHEAD_BYTES,
    REPLY_WRAPPER_BYTES,
    check_import_entry,
    check_key_count,
    check_list_limit,
    cursor_bytes,
    utf8_len,
)
from sessiond_client.errors import InvalidRequestError
from sessiond_client.protocol import (
    EntryResult,
    ExportRequest,
    ImportRequest,
    ImportResult,
    ListResult,
)
from sessiond_client.redis_backend.commands import (
    ExecContext,
    Function,
    Outcome,
    Run,
    Steps,
    encode_wire,
)
from sessiond_client.redis_backend.layout import AgentKeys, StoredValue, stored_value

__all__ = ["export_steps", "import_steps"]

IDLE_MS: Final = 300_000
_EXPIRED: Final = "unknown or expired export cursor: start the export again (cursor null)"


def _encode_cursor(export_id: str, member: bytes) -> str:
    return f"{export_id}.{base64.urlsafe_b64encode(member).decode().rstrip('=')}"


def _decode_cursor(cursor: str) -> tuple[str, bytes]:
    export_id, separator, encoded = cursor.partition(".")
    try:
        if not separator or not export_id.isalnum():
            raise ValueError(cursor)
        return export_id, base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        raise InvalidRequestError(_EXPIRED) from None


def export_steps(ctx: ExecContext, keys: AgentKeys, request: ExportRequest) -> Steps:
    limits = ctx.limits
    limit = check_list_limit(
        request.limit, max_list_limit=limits.max_list_limit, default=limits.max_list_limit
    )
    if request.cursor is None:
        export_id, after = secrets.token_hex(8), b""
    else:
        export_id, after = _decode_cursor(request.cursor)
    copy_entries, copy_index, marker = keys.export_keys(export_id)
    if request.cursor is None:
        yield Function(
            "copy",
            [keys.entries, keys.index, keys.seq, copy_entries, copy_index, marker],
            [IDLE_MS],
        )
    reply = yield Function(
        "page", [copy_index, copy_entries, marker], [after, limit + 1, IDLE_MS, 1]
    )
    if reply[0] != b"ok":
        raise InvalidRequestError(_EXPIRED)
    seq = int(reply[1])
    pairs = reply[2:]
    more = len(pairs) > 2 * limit
    items: list[EntryResult] = []
    reply_bytes = REPLY_WRAPPER_BYTES + cursor_bytes(export_id) + 64
    last = after
    for member, raw in zip(pairs[: 2 * limit : 2], pairs[1 : 2 * limit : 2], strict=True):
        value = StoredValue(raw) if raw is not None else None
        if value is not None and value.is_object:
            key = member[8:].decode("utf-8", "surrogatepass")
            wire = encode_wire(value.value())
            reply_bytes += len(wire) + utf8_len(key) + REPLY_ITEM_OVERHEAD_BYTES
            if items and reply_bytes > limits.max_reply_bytes:
                more = True  # a shorter page: the cursor resumes after the last item
                break
            items.append(EntryResult(key, wire, value.revision))
        last = member
    if not more:
        yield Run([("DEL", copy_entries, copy_index, marker)])
        return Outcome(ListResult(items, None, seq))
    return Outcome(ListResult(items, _encode_cursor(export_id, last), seq))


def _staged_values(ctx: ExecContext, request: ImportRequest) -> tuple[list[Any], int]:
    """The request's entries checked as the daemon checks them, in their stored form
    (key, value, ...), and their size in bytes."""
    limits = ctx.limits
    check_key_count(
        len(request.entries),
        max_keys_per_request=limits.max_keys_per_request,
        what="an import request stages",
        noun="entries",
    )
    flat: list[Any] = []
    size = 0
    for key, entry in request.entries.items():
        check_import_entry(key, entry, limits)
        stored, json_bytes, _ = stored_value(entry)
        flat += [key, stored]
        size += utf8_len(key) + len(json_bytes)
    return flat, size


def import_steps(ctx: ExecContext, keys: AgentKeys, request: ImportRequest) -> Steps:
    flat, size = _staged_values(ctx, request)
    if request.commit:
        ctx.profile.require_durability(ctx.target.shown)
    import_id = request.import_id or secrets.token_hex(8)
    if not import_id.isalnum():
        raise InvalidRequestError(f"unknown or expired import {import_id!r}: start again")
    staged_key = keys.staged(import_id)
    new = "1" if request.import_id is None else "0"
    reply = yield Function(
        "stage", [staged_key], [new, IDLE_MS, ctx.limits.max_import_bytes, size, *flat]
    )
    if reply[0] == b"unknown":
        raise InvalidRequestError(f"unknown or expired import {import_id!r}: start again")
    if reply[0] == b"too_large":
        raise InvalidRequestError(
            f"an import may stage at most {ctx.limits.max_import_bytes} bytes; "
            "this import was dropped"
        )
    staged = int(reply[1])
    if not request.commit:
        return Outcome(ImportResult(import_id=import_id, staged=staged))
    reply = yield Function(
        "commit",
        [keys.entries, keys.index, keys.seq, keys.stream, staged_key],
        [ctx.limits.watch_history_changes],
        wait_durable=True,
    )
    if reply[0] != b"ok":
        raise InvalidRequestError(f"unknown or expired import {import_id!r}: start again")
    seq, count = int(reply[1]), int(reply[2])
    return Outcome(ImportResult(import_id=import_id, staged=count, imported=count, seq=seq))
