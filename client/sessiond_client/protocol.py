"""The sessiond wire protocol: request/reply messages, framing and limits. Pure: no I/O.

A frame is a 4-byte unsigned big-endian payload length followed by a msgpack payload.
Requests are a msgspec tagged union on the ``op`` field; every request carries an
integer ``id`` that its reply echoes, so clients may pipeline and match replies out of
order. Replies are ``{"id", "ok": true, "result"}`` or ``{"id", "ok": false, "error":
{"code", "message"}}``. Every field added after version 1 must have a default so that
older clients keep working (see PROTOCOL.md).
"""

from __future__ import annotations

import struct
from typing import Any, Final, Literal

import msgspec

from sessiond_client.errors import FrameTooLargeError

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "FRAME_HEADER",
    "OPS",
    "OP_OF_REQUEST",
    "PROTOCOL_VERSION",
    "WRITE_OPS",
    "DeleteRequest",
    "EntryRef",
    "EntryResult",
    "ErrorBody",
    "ErrorReply",
    "ExportRequest",
    "FlushRequest",
    "FrameDecoder",
    "GetManyRequest",
    "GetRequest",
    "HelloRequest",
    "HelloResult",
    "ImportRequest",
    "ImportResult",
    "ListRequest",
    "ListResult",
    "OkReply",
    "PatchRequest",
    "PruneRequest",
    "PruneResult",
    "PrunedEntry",
    "ReplaceRequest",
    "Reply",
    "Request",
    "RequestBase",
    "RequestEnvelope",
    "ResolveRequest",
    "ResolveResult",
    "StatsRequest",
    "UnwatchRequest",
    "UpdateLastRouteRequest",
    "UpdateRequest",
    "WatchEvent",
    "WatchRequest",
    "encode_frame",
]

PROTOCOL_VERSION: Final = 1
DEFAULT_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
FRAME_HEADER: Final = struct.Struct(">I")


class RequestBase(msgspec.Struct, kw_only=True, tag_field="op", omit_defaults=True):
    """Fields every request carries. ``agent`` selects the store (else parsed from the key)."""

    id: int
    agent: str | None = None


class WriteRequestBase(RequestBase, kw_only=True):
    """Fields every write carries.

    ``durable``: reply only once the change is on disk. ``request_token``: a random id the
    client keeps across retries of one call; the daemon answers a token it has already
    applied from memory instead of applying the write again. ``if_revision``: apply only
    if the entry is at this revision (compare-and-set; ``conflict`` otherwise).
    """

    durable: bool = False
    request_token: str | None = None
    if_revision: str | None = None


class HelloRequest(RequestBase, tag="hello"):
    protocol: int = PROTOCOL_VERSION
    client: str | None = None


class GetRequest(RequestBase, tag="get"):
    key: str
    fields: list[str] | None = None


class GetManyRequest(RequestBase, tag="get_many"):
    keys: list[str]
    fields: list[str] | None = None


class ListRequest(RequestBase, tag="list"):
    prefix: str | None = None
    active_minutes: float | None = None
    label: str | None = None
    spawned_by: str | None = None
    limit: int | None = None
    cursor: str | None = None
    fields: list[str] | None = None


class PatchRequest(WriteRequestBase, tag="patch"):
    key: str
    patch: dict[str, Any]
    if_absent: bool = False


class UpdateRequest(WriteRequestBase, tag="update"):
    key: str
    patch: dict[str, Any]


class ReplaceRequest(WriteRequestBase, tag="replace"):
    key: str
    entry: dict[str, Any]
    if_absent: bool = False


class UpdateLastRouteRequest(WriteRequestBase, tag="update_last_route"):
    key: str
    provider: str | None = None
    to: str | None = None
    account_id: str | None = None
    touch: bool = False


class DeleteRequest(WriteRequestBase, tag="delete"):
    key: str


class ResolveRequest(WriteRequestBase, tag="resolve"):
    ctx: dict[str, Any]
    authorized: bool = True
    scope: Literal["per-sender", "global"] | None = None
    main_key: str | None = None
    idle_minutes: float | None = None
    reset_triggers: list[str] | None = None


class FlushRequest(RequestBase, tag="flush"):
    pass


class WatchRequest(RequestBase, tag="watch"):
    """Changes of one store under ``prefix``: every change after ``since`` (None: from
    now on), then live ones, as replies carrying this request's id until ``unwatch``."""

    prefix: str = ""
    since: int | None = None
    fields: list[str] | None = None


class UnwatchRequest(RequestBase, tag="unwatch"):
    """End the watch whose request id is ``watch``."""

    watch: int


class ExportRequest(RequestBase, tag="export"):
    """One page of a consistent copy of a store: the first request (``cursor`` None) takes
    the copy; its cursor pages through that copy, whatever changes meanwhile."""

    cursor: str | None = None
    limit: int | None = None


class ImportRequest(RequestBase, tag="import"):
    """Stage whole entries for one store (``import_id`` None starts an import); with
    ``commit`` the staged entries are stored together, durably, as ``replace`` would."""

    entries: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    import_id: str | None = None
    commit: bool = False


class ImportResult(msgspec.Struct, kw_only=True):
    import_id: str
    staged: int
    imported: int = 0
    seq: int | None = None


class PruneRequest(RequestBase, tag="prune"):
    """Apply the store's retention now (or, ``dry_run``, only say what it would do)."""

    dry_run: bool = False


class StatsRequest(RequestBase, tag="stats"):
    pass


Request = (
    HelloRequest
    | GetRequest
    | GetManyRequest
    | ListRequest
    | PatchRequest
    | UpdateRequest
    | ReplaceRequest
    | UpdateLastRouteRequest
    | DeleteRequest
    | ResolveRequest
    | FlushRequest
    | StatsRequest
    | WatchRequest
    | UnwatchRequest
    | PruneRequest
    | ExportRequest
    | ImportRequest
)

OP_OF_REQUEST: Final[dict[type, str]] = {
    cls: str(cls.__struct_config__.tag) for cls in Request.__args__
}
"""Request class → its ``op`` name."""
OPS: Final[frozenset[str]] = frozenset(OP_OF_REQUEST.values())
WRITE_OPS: Final[frozenset[str]] = frozenset(
    {"patch", "update", "replace", "update_last_route", "delete", "resolve"}
)


class RequestEnvelope(msgspec.Struct):
    """The loosest reading of a request: enough to echo its id and name its op in an error."""

    id: Any = None
    op: Any = None


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """``oldest_seq``: only for ``compacted``, the oldest change a ``watch`` can start after."""

    code: str
    message: str
    oldest_seq: int | None = None


class OkReply(msgspec.Struct, omit_defaults=True):
    """A successful reply. ``seq``: for a write that changed its store, the store's
    sequence number of (the last of) its changes; absent otherwise."""

    id: int | None
    ok: bool
    result: Any
    seq: int | None = None


class ErrorReply(msgspec.Struct):
    id: int | None
    error: ErrorBody
    ok: bool = False


class Reply(msgspec.Struct):
    """A reply as a client decodes it: ``result`` stays raw until the op's type is known."""

    id: int | None
    ok: bool
    result: msgspec.Raw = msgspec.Raw(b"\xc0")
    error: ErrorBody | None = None
    seq: int | None = None


def encode_frame(payload: bytes) -> bytes:
    """Prefix a payload with its 4-byte big-endian length."""
    return FRAME_HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental frame splitter: feed bytes, iterate complete payloads.

    The announced length is checked against ``max_frame_bytes`` as soon as the 4-byte
    header is complete, before any of the payload is buffered, so an oversized frame
    costs the reader nothing. The frames completed before an oversized one are still
    returned; :attr:`error` then holds the :class:`FrameTooLargeError` and nothing more
    is decoded (the connection is closed by the caller).
    """

    __slots__ = ("_buffer", "_max_frame_bytes", "error")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max_frame_bytes = max_frame_bytes
        self.error: FrameTooLargeError | None = None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    @property
    def max_frame_bytes(self) -> int:
        return self._max_frame_bytes

    @max_frame_bytes.setter
    def max_frame_bytes(self, value: int) -> None:
        self._max_frame_bytes = value

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data`` and return every payload now complete, in order.

        When nothing is buffered (the usual case: whole frames arrive in one read) the
        payloads are sliced straight out of ``data``.
        """
        if self.error is not None:
            return []
        buffer = self._buffer
        if buffer:
            buffer += data
            payloads, offset, error = self._split(buffer)
            if offset:
                del buffer[:offset]
        else:
            payloads, offset, error = self._split(data)
            if offset < len(data):
                buffer += data[offset:] if offset else data
        if error is not None:
            self.error = error
            buffer.clear()
        return payloads

    def _split(
        self, source: bytes | bytearray
    ) -> tuple[list[bytes], int, FrameTooLargeError | None]:
        """The complete payloads at the start of ``source``, how many bytes they took, and
        the error for an oversized frame that follows them."""
        header_size = FRAME_HEADER.size
        payloads: list[bytes] = []
        offset = 0
        available = len(source)
        while available - offset >= header_size:
            (length,) = FRAME_HEADER.unpack_from(source, offset)
            if length > self._max_frame_bytes:
                return (
                    payloads,
                    offset,
                    FrameTooLargeError(
                        f"frame of {length} bytes exceeds the limit of "
                        f"{self._max_frame_bytes} bytes"
                    ),
                )
            end = offset + header_size + length
            if available < end:
                break
            payloads.append(bytes(source[offset + header_size : end]))
            offset = end
        return payloads, offset, None


class EntryResult(msgspec.Struct):
    """``get``/``patch``/... result: the entry as stored (JSON object) and its revision."""

    key: str
    entry: Any
    revision: str


class EntryRef(msgspec.Struct):
    """One value of the ``get_many`` result map."""

    entry: Any
    revision: str


class ListResult(msgspec.Struct):
    items: list[EntryResult]
    cursor: str | None = None
    seq: int = 0
    """The store's sequence number this page reflects."""


class ResolveResult(msgspec.Struct):
    session_key: str
    session_id: str
    is_new: bool
    reset_triggered: bool
    body_stripped: str | None
    entry: Any
    revision: str


class WatchEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One reply of a watch: ``type`` is ``put`` (``entry``, ``revision`` set), ``delete``,
    ``progress`` (no change; the store is at ``seq``: a position to save), or ``end`` (the
    watch is over; no more replies carry its id)."""

    type: Literal["put", "delete", "progress", "end"]
    seq: int
    key: str | None = None
    entry: Any = None
    revision: str | None = None


class PrunedEntry(msgspec.Struct):
    key: str
    reason: str
    updated_at: float | None = None


class PruneResult(msgspec.Struct, kw_only=True):
    """What retention did (or, for a dry run, would do): ``pruned`` with the reason
    (``age`` or ``cap``), ``kept`` entries that a rule would have taken and why they stay,
    ``entries`` left, and ``over_cap`` when protected entries alone exceed the cap."""

    mode: str
    dry_run: bool
    pruned: list[PrunedEntry]
    kept: list[PrunedEntry]
    entries: int
    over_cap: bool = False
    archive: str | None = None


class HelloResult(msgspec.Struct, kw_only=True):
    """What the daemon speaks and every limit a client needs (see PROTOCOL.md)."""

    protocol: int
    server: str
    version: str
    max_frame_bytes: int
    max_reply_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_key_bytes: int = 1024
    max_entry_bytes: int = 1024 * 1024
    max_keys_per_request: int = 1000
    max_list_limit: int = 1000
    max_depth: int = 32
    max_fields: int = 10_000
    max_inflight_per_connection: int = 256
    protocols: list[int] = msgspec.field(default_factory=lambda: [PROTOCOL_VERSION])
