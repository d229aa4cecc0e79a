"""Unit tests for sessiond_client.protocol: framing, the request union, the op tables.

Pure: frames are built and split in memory.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import pytest

from sessiond_client.errors import FrameTooLargeError
from sessiond_client.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    OPS,
    PROTOCOL_VERSION,
    WRITE_OPS,
    DeleteRequest,
    ErrorBody,
    ErrorReply,
    FlushRequest,
    FrameDecoder,
    GetManyRequest,
    GetRequest,
    HelloRequest,
    HelloResult,
    ListRequest,
    ListResult,
    OkReply,
    PatchRequest,
    ReplaceRequest,
    Reply,
    Request,
    RequestEnvelope,
    ResolveRequest,
    StatsRequest,
    UpdateLastRouteRequest,
    UpdateRequest,
    WatchRequest,
    WriteRequestBase,
    encode_frame,
)

# The ops of DESIGN.md §4/§5, spelled as the contract spells them.
DESIGN_OPS = {
    "hello",
    "get",
    "get_many",
    "list",
    "patch",
    "update",
    "replace",
    "update_last_route",
    "delete",
    "resolve",
    "flush",
    "stats",
    "watch",
    "unwatch",
    "prune",
    "export",
    "import",
}

request_decoder: msgspec.msgpack.Decoder[Request] = msgspec.msgpack.Decoder(Request)


def frame(payload: bytes) -> bytes:
    """An independent encoding of the frame format: 4-byte big-endian length, payload."""
    return struct.pack(">I", len(payload)) + payload


# --- framing ------------------------------------------------------------------------------


def test_encode_frame_prefixes_the_big_endian_length() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"
    payload = bytes(range(256)) * 2
    assert encode_frame(payload) == b"\x00\x00\x02\x00" + payload


def test_default_frame_limit_is_16_mib() -> None:
    assert DEFAULT_MAX_FRAME_BYTES == 16 * 1024 * 1024


@pytest.mark.parametrize("payload", [b"", b"x", b"hello world", bytes(range(256)) * 40])
def test_encode_then_decode_round_trip(payload: bytes) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(payload)) == [payload]
    assert decoder.buffered_bytes == 0


def test_merged_frames_in_one_feed_come_out_in_order() -> None:
    payloads = [b"one", b"", b"three", b"x" * 1000]
    decoder = FrameDecoder()
    assert decoder.feed(b"".join(frame(p) for p in payloads)) == payloads
    assert decoder.buffered_bytes == 0


def test_byte_at_a_time_feeding_yields_each_frame_once_complete() -> None:
    payloads = [b"alpha", b"", b"gamma" * 50]
    stream = b"".join(frame(p) for p in payloads)
    decoder = FrameDecoder()
    received: list[bytes] = []
    ends = set()
    position = 0
    for p in payloads:
        position += 4 + len(p)
        ends.add(position)
    for index in range(len(stream)):
        out = decoder.feed(stream[index : index + 1])
        if index + 1 in ends:
            assert len(out) == 1, f"a frame ends at byte {index + 1}"
        else:
            assert out == []
        received.extend(out)
    assert received == payloads
    assert decoder.buffered_bytes == 0


@pytest.mark.parametrize("split_at", [1, 2, 3, 4, 5, 9, 10, 11])
def test_a_frame_split_anywhere_is_reassembled(split_at: int) -> None:
    stream = frame(b"payload") + frame(b"second")
    decoder = FrameDecoder()
    first = decoder.feed(stream[:split_at])
    rest = decoder.feed(stream[split_at:])
    assert first + rest == [b"payload", b"second"]


def test_partial_frame_stays_buffered() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(frame(b"complete") + frame(b"partial")[:6]) == [b"complete"]
    assert decoder.buffered_bytes == 6
    assert decoder.feed(frame(b"partial")[6:]) == [b"partial"]
    assert decoder.buffered_bytes == 0


def test_payloads_are_independent_of_the_buffer() -> None:
    decoder = FrameDecoder()
    (first,) = decoder.feed(frame(b"first"))
    decoder.feed(frame(b"other bytes"))
    assert first == b"first"
    assert isinstance(first, bytes)


def test_frame_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_frame_bytes=8)
    assert decoder.feed(frame(b"12345678")) == [b"12345678"]


def test_a_fresh_decoder_has_no_error() -> None:
    decoder = FrameDecoder(max_frame_bytes=8)
    assert decoder.error is None
    assert decoder.max_frame_bytes == 8


def test_oversize_header_is_rejected_before_any_payload_arrives() -> None:
    decoder = FrameDecoder(max_frame_bytes=8)
    assert decoder.feed(struct.pack(">I", 9)) == []
    assert isinstance(decoder.error, FrameTooLargeError)
    assert decoder.error.code == "frame_too_large"
    assert "9" in str(decoder.error)
    assert decoder.buffered_bytes == 0


def test_oversize_header_fed_byte_by_byte_fails_on_the_fourth_byte() -> None:
    header = struct.pack(">I", DEFAULT_MAX_FRAME_BYTES + 1)
    decoder = FrameDecoder()
    for byte in header[:3]:
        assert decoder.feed(bytes([byte])) == []
        assert decoder.error is None
    assert decoder.feed(header[3:]) == []
    assert isinstance(decoder.error, FrameTooLargeError)
    # Nothing beyond the header was ever held.
    assert decoder.buffered_bytes <= 4


def test_oversize_frame_after_a_good_one_is_still_rejected() -> None:
    decoder = FrameDecoder(max_frame_bytes=4)
    assert decoder.feed(frame(b"ok")) == [b"ok"]
    assert decoder.error is None
    assert decoder.feed(struct.pack(">I", 2**32 - 1) + b"junk") == []
    assert isinstance(decoder.error, FrameTooLargeError)


@pytest.mark.parametrize("buffered_first", [False, True])
def test_frames_completed_before_an_oversize_one_are_returned(buffered_first: bool) -> None:
    decoder = FrameDecoder(max_frame_bytes=8)
    stream = frame(b"one") + frame(b"two") + struct.pack(">I", 9) + b"x" * 9 + frame(b"after")
    if buffered_first:  # the same, with a partial frame already held by the decoder
        assert decoder.feed(stream[:2]) == []
        stream = stream[2:]
    assert decoder.feed(stream) == [b"one", b"two"]
    assert isinstance(decoder.error, FrameTooLargeError)
    assert decoder.buffered_bytes == 0


def test_after_an_oversize_frame_nothing_more_is_decoded() -> None:
    decoder = FrameDecoder(max_frame_bytes=8)
    decoder.feed(struct.pack(">I", 100))
    error = decoder.error
    assert error is not None
    assert decoder.feed(frame(b"fine")) == []
    assert decoder.feed(frame(b"also fine") + frame(b"x")) == []
    assert decoder.error is error
    assert decoder.buffered_bytes == 0


def test_the_frame_limit_can_be_changed_for_later_frames() -> None:
    decoder = FrameDecoder(max_frame_bytes=4)
    decoder.max_frame_bytes = 16
    assert decoder.max_frame_bytes == 16
    assert decoder.feed(frame(b"0123456789")) == [b"0123456789"]
    decoder.max_frame_bytes = 2
    assert decoder.feed(frame(b"abc")) == []
    assert isinstance(decoder.error, FrameTooLargeError)


# --- requests -------------------------------------------------------------------------------


def decode_request(message: dict[str, Any]) -> Request:
    return request_decoder.decode(msgspec.msgpack.encode(message))


def test_ops_are_exactly_the_designed_operations() -> None:
    assert OPS == DESIGN_OPS


def test_write_ops_are_the_ops_that_change_a_store() -> None:
    assert {"patch", "update", "replace", "update_last_route", "delete", "resolve"} == WRITE_OPS
    assert WRITE_OPS <= OPS
    assert not WRITE_OPS & {"hello", "get", "get_many", "list", "flush", "stats"}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"op": "hello", "id": 1}, HelloRequest(id=1, protocol=PROTOCOL_VERSION)),
        ({"op": "get", "id": 2, "key": "k"}, GetRequest(id=2, key="k")),
        ({"op": "get_many", "id": 3, "keys": ["a", "b"]}, GetManyRequest(id=3, keys=["a", "b"])),
        ({"op": "list", "id": 4, "limit": 5}, ListRequest(id=4, limit=5)),
        (
            {"op": "patch", "id": 5, "key": "k", "patch": {"label": None}},
            PatchRequest(id=5, key="k", patch={"label": None}),
        ),
        (
            {"op": "update", "id": 6, "key": "k", "patch": {}, "if_revision": "r"},
            UpdateRequest(id=6, key="k", patch={}, if_revision="r"),
        ),
        (
            {"op": "replace", "id": 7, "key": "k", "entry": {"sessionId": "s"}, "durable": True},
            ReplaceRequest(id=7, key="k", entry={"sessionId": "s"}, durable=True),
        ),
        (
            {"op": "update_last_route", "id": 8, "key": "k", "provider": "p", "touch": True},
            UpdateLastRouteRequest(id=8, key="k", provider="p", touch=True),
        ),
        ({"op": "delete", "id": 9, "key": "k"}, DeleteRequest(id=9, key="k")),
        (
            {"op": "resolve", "id": 10, "ctx": {"From": "x"}, "scope": "global"},
            ResolveRequest(id=10, ctx={"From": "x"}, scope="global"),
        ),
        ({"op": "flush", "id": 11, "agent": "ops"}, FlushRequest(id=11, agent="ops")),
        ({"op": "stats", "id": 12}, StatsRequest(id=12)),
    ],
)
def test_requests_decode_to_their_tagged_struct(message: dict[str, Any], expected: Any) -> None:
    assert decode_request(message) == expected


def test_every_op_has_a_request_struct() -> None:
    tags = {cls.__struct_config__.tag for cls in Request.__args__}
    assert tags == DESIGN_OPS


def test_exactly_the_write_ops_take_durable_a_request_token_and_if_revision() -> None:
    for cls in Request.__args__:
        is_write = cls.__struct_config__.tag in WRITE_OPS
        assert issubclass(cls, WriteRequestBase) is is_write, cls
        fields = set(cls.__struct_fields__)
        assert ({"durable", "request_token", "if_revision"} <= fields) is is_write, cls


@pytest.mark.parametrize(
    "message",
    [
        {"op": "patch", "key": "k", "patch": {}},
        {"op": "update", "key": "k", "patch": {}},
        {"op": "replace", "key": "k", "entry": {}},
        {"op": "update_last_route", "key": "k"},
        {"op": "delete", "key": "k"},
        {"op": "resolve", "ctx": {}},
    ],
)
def test_every_write_takes_if_revision(message: dict[str, Any]) -> None:
    request = decode_request({**message, "id": 1, "if_revision": "rev-1"})
    assert isinstance(request, WriteRequestBase)
    assert request.if_revision == "rev-1"
    plain = decode_request({**message, "id": 1})
    assert isinstance(plain, WriteRequestBase)
    assert plain.if_revision is None
    assert "if_revision" not in msgspec.msgpack.decode(msgspec.msgpack.encode(plain))


def test_exactly_patch_and_replace_take_if_absent() -> None:
    takes = {cls for cls in Request.__args__ if "if_absent" in cls.__struct_fields__}
    assert takes == {PatchRequest, ReplaceRequest}
    patch = decode_request({"op": "patch", "id": 1, "key": "k", "patch": {}, "if_absent": True})
    assert isinstance(patch, PatchRequest) and patch.if_absent is True
    replace = decode_request({"op": "replace", "id": 1, "key": "k", "entry": {}})
    assert isinstance(replace, ReplaceRequest) and replace.if_absent is False


def test_exactly_the_reads_take_a_fields_projection() -> None:
    takes = {cls for cls in Request.__args__ if "fields" in cls.__struct_fields__}
    assert takes == {GetRequest, GetManyRequest, ListRequest, WatchRequest}
    for message in (
        {"op": "get", "key": "k"},
        {"op": "get_many", "keys": ["k"]},
        {"op": "list"},
    ):
        request = decode_request({**message, "id": 1, "fields": ["label", "model"]})
        plain = decode_request({**message, "id": 1})
        assert isinstance(request, GetRequest | GetManyRequest | ListRequest)
        assert isinstance(plain, GetRequest | GetManyRequest | ListRequest)
        assert request.fields == ["label", "model"]
        assert plain.fields is None


def test_fields_must_be_a_list_of_strings() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_request({"op": "get", "id": 1, "key": "k", "fields": "label"})
    with pytest.raises(msgspec.ValidationError):
        decode_request({"op": "get", "id": 1, "key": "k", "fields": [1]})


def test_request_token_round_trips_and_defaults_to_none() -> None:
    request = decode_request({"op": "delete", "id": 1, "key": "k", "request_token": "tok"})
    assert isinstance(request, DeleteRequest)
    assert request.request_token == "tok"
    plain = decode_request({"op": "delete", "id": 1, "key": "k"})
    assert isinstance(plain, DeleteRequest)
    assert plain.request_token is None
    assert "request_token" not in msgspec.msgpack.decode(msgspec.msgpack.encode(plain))


def test_optional_fields_take_their_defaults() -> None:
    request = decode_request({"op": "patch", "id": 1, "key": "k", "patch": {}})
    assert isinstance(request, PatchRequest)
    assert (request.agent, request.if_revision, request.durable) == (None, None, False)
    route = decode_request({"op": "update_last_route", "id": 1, "key": "k"})
    assert isinstance(route, UpdateLastRouteRequest)
    assert route.touch is False
    resolve = decode_request({"op": "resolve", "id": 1, "ctx": {}})
    assert isinstance(resolve, ResolveRequest)
    assert resolve.authorized is True


def test_unknown_request_fields_are_ignored_for_forward_compatibility() -> None:
    request = decode_request({"op": "get", "id": 1, "key": "k", "from_the_future": 1})
    assert request == GetRequest(id=1, key="k")


@pytest.mark.parametrize(
    "message",
    [
        {"op": "nope", "id": 1},
        {"id": 1, "key": "k"},
        {"op": "get", "key": "k"},
        {"op": "get", "id": "1", "key": "k"},
        {"op": "get", "id": 1},
        {"op": "get", "id": 1, "key": 5},
        {"op": "get_many", "id": 1, "keys": "abc"},
        {"op": "resolve", "id": 1, "ctx": {}, "scope": "per-channel"},
        {"op": "patch", "id": 1, "key": "k", "patch": [1, 2]},
    ],
)
def test_invalid_requests_fail_validation(message: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_request(message)


def test_a_request_round_trips_through_msgpack_with_its_op_tag() -> None:
    request = PatchRequest(id=7, key="k", patch={"a": 1}, durable=True)
    raw = msgspec.msgpack.encode(request)
    assert msgspec.msgpack.decode(raw)["op"] == "patch"
    assert request_decoder.decode(raw) == request


def test_envelope_reads_id_and_op_of_anything() -> None:
    raw = msgspec.msgpack.encode({"op": "mystery", "id": 42, "whatever": [1]})
    envelope = msgspec.msgpack.decode(raw, type=RequestEnvelope)
    assert (envelope.id, envelope.op) == (42, "mystery")


# --- replies --------------------------------------------------------------------------------


def test_ok_and_error_replies_have_the_documented_shape() -> None:
    ok = msgspec.msgpack.decode(msgspec.msgpack.encode(OkReply(3, True, {"x": 1})))
    assert ok == {"id": 3, "ok": True, "result": {"x": 1}}
    error = msgspec.msgpack.decode(
        msgspec.msgpack.encode(ErrorReply(4, ErrorBody("conflict", "nope")))
    )
    assert error == {"id": 4, "ok": False, "error": {"code": "conflict", "message": "nope"}}


def test_reply_keeps_the_result_raw() -> None:
    raw = msgspec.msgpack.encode(OkReply(1, True, {"key": "k"}))
    reply = msgspec.msgpack.decode(raw, type=Reply)
    assert reply.ok
    assert msgspec.msgpack.decode(reply.result) == {"key": "k"}
    assert reply.seq is None


def test_an_ok_reply_carries_seq_only_when_set() -> None:
    with_seq = msgspec.msgpack.decode(msgspec.msgpack.encode(OkReply(5, True, None, seq=17)))
    assert with_seq == {"id": 5, "ok": True, "result": None, "seq": 17}
    without = msgspec.msgpack.decode(msgspec.msgpack.encode(OkReply(5, True, None)))
    assert without == {"id": 5, "ok": True, "result": None}  # a null result is kept


def test_reply_reads_seq() -> None:
    raw = msgspec.msgpack.encode(OkReply(2, True, {"key": "k"}, seq=9))
    reply = msgspec.msgpack.decode(raw, type=Reply)
    assert reply.seq == 9
    assert msgspec.msgpack.decode(reply.result) == {"key": "k"}


def test_list_result_seq_defaults_to_zero_for_an_older_daemon() -> None:
    old = msgspec.msgpack.encode({"items": [], "cursor": None})
    assert msgspec.msgpack.decode(old, type=ListResult) == ListResult([], None, 0)
    new = msgspec.msgpack.encode({"items": [], "cursor": "c", "seq": 41})
    assert msgspec.msgpack.decode(new, type=ListResult).seq == 41


def test_hello_result_of_an_older_daemon_takes_the_defaults() -> None:
    old = msgspec.msgpack.encode(
        {"protocol": 1, "server": "sessiond", "version": "0.1", "max_frame_bytes": 1024}
    )
    hello = msgspec.msgpack.decode(old, type=HelloResult)
    assert (hello.protocol, hello.server, hello.version) == (1, "sessiond", "0.1")
    assert hello.max_frame_bytes == 1024
    assert hello.protocols == [PROTOCOL_VERSION]
    assert hello.max_keys_per_request > 0 and hello.max_list_limit > 0


def test_hello_result_is_keyword_only_and_round_trips_every_limit() -> None:
    with pytest.raises(TypeError):
        HelloResult(1, "sessiond", "1.0", 1024)  # type: ignore[call-arg]
    hello = HelloResult(
        protocol=1,
        server="sessiond",
        version="1.0",
        max_frame_bytes=1,
        max_reply_bytes=2,
        max_key_bytes=3,
        max_entry_bytes=4,
        max_keys_per_request=5,
        max_list_limit=6,
        max_depth=7,
        max_fields=8,
        max_inflight_per_connection=9,
        protocols=[1, 2],
    )
    wire = msgspec.msgpack.decode(msgspec.msgpack.encode(hello))
    assert wire == {
        "protocol": 1,
        "server": "sessiond",
        "version": "1.0",
        "max_frame_bytes": 1,
        "max_reply_bytes": 2,
        "max_key_bytes": 3,
        "max_entry_bytes": 4,
        "max_keys_per_request": 5,
        "max_list_limit": 6,
        "max_depth": 7,
        "max_fields": 8,
        "max_inflight_per_connection": 9,
        "protocols": [1, 2],
    }
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(hello), type=HelloResult) == hello
