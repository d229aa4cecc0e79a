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
    ListRequest,
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


def test_oversize_header_is_rejected_before_any_payload_arrives() -> None:
    decoder = FrameDecoder(max_frame_bytes=8)
    with pytest.raises(FrameTooLargeError) as raised:
        decoder.feed(struct.pack(">I", 9))
    assert raised.value.code == "frame_too_large"
    assert "9" in str(raised.value)


def test_oversize_header_fed_byte_by_byte_fails_on_the_fourth_byte() -> None:
    header = struct.pack(">I", DEFAULT_MAX_FRAME_BYTES + 1)
    decoder = FrameDecoder()
    for byte in header[:3]:
        assert decoder.feed(bytes([byte])) == []
    with pytest.raises(FrameTooLargeError):
        decoder.feed(header[3:])
    # Nothing beyond the header was ever held.
    assert decoder.buffered_bytes <= 4


def test_oversize_frame_after_a_good_one_is_still_rejected() -> None:
    decoder = FrameDecoder(max_frame_bytes=4)
    assert decoder.feed(frame(b"ok")) == [b"ok"]
    with pytest.raises(FrameTooLargeError):
        decoder.feed(struct.pack(">I", 2**32 - 1) + b"junk")


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


def test_exactly_the_write_ops_take_durable_and_a_request_token() -> None:
    for cls in Request.__args__:
        is_write = cls.__struct_config__.tag in WRITE_OPS
        assert issubclass(cls, WriteRequestBase) is is_write, cls
        fields = set(cls.__struct_fields__)
        assert ({"durable", "request_token"} <= fields) is is_write, cls


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
    ok = msgspec.msgpack.decode(msgspec.msgpack.encode(OkReply(3, {"x": 1})))
    assert ok == {"id": 3, "ok": True, "result": {"x": 1}}
    error = msgspec.msgpack.decode(
        msgspec.msgpack.encode(ErrorReply(4, ErrorBody("conflict", "nope")))
    )
    assert error == {"id": 4, "ok": False, "error": {"code": "conflict", "message": "nope"}}


def test_reply_keeps_the_result_raw() -> None:
    raw = msgspec.msgpack.encode(OkReply(1, {"key": "k"}))
    reply = msgspec.msgpack.decode(raw, type=Reply)
    assert reply.ok
    assert msgspec.msgpack.decode(reply.result) == {"key": "k"}
