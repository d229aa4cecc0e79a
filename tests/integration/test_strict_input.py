"""Strict input, over a raw socket with MessagePack built by hand.

Anything JSON cannot hold — a non-finite float (at the top or nested), msgpack bin, ext
and timestamp values, map keys that are not strings (at the top or nested), strings
that are not valid UTF-8 (in the key, a value, a field name or the ``op``), nesting past
the limit, a request nested 100,000 levels deep — gets ``invalid_request`` carrying the
request's id; the connection stays usable (the next request on it is answered) and
nothing is applied.

One answer holds everywhere: what a write's reply shows is byte for byte what a later
``get`` returns, and the same JSON values ``sessions.json`` holds after ``flush``
(floats, ``-0.0`` stored as ``0``, 64-bit integers, unicode, nested objects).

A store file holding integers wider than 64 bits (JSON allows them) loads; they are
served as the doubles ``JSON.parse`` would read, and the connection is kept.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from tests.support.daemon import DaemonProcess
from tests.support.rawmsgpack import RawEntryReply, array_chain, map_of, raw_str, value
from tests.support.rawsocket import RawPeer

KEY = "agent:main:strict"
NAN, INF = float("nan"), float("inf")


def request(op: str, request_id: int, **fields: Any) -> bytes:
    """A request encoded by msgspec, ``op`` and ``id`` first as the clients send them."""
    return msgspec.msgpack.encode({"op": op, "id": request_id, **fields})


def patch_with(patch_bytes: bytes, request_id: int, *, key: bytes | None = None) -> bytes:
    """A ``patch`` request whose patch map (and optionally key) are raw msgpack."""
    return map_of(
        (raw_str(b"op"), value("patch")),
        (raw_str(b"id"), value(request_id)),
        (raw_str(b"key"), key if key is not None else value(KEY)),
        (raw_str(b"patch"), patch_bytes),
    )


def nested_object(depth: int) -> dict[str, Any]:
    inner: dict[str, Any] = {}
    for _ in range(depth - 1):
        inner = {"n": inner}
    return inner


WHEN = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)  # msgpack timestamp ext

BAD_REQUESTS: dict[str, Callable[[int], bytes]] = {
    "NaN updatedAt": lambda i: request("patch", i, key=KEY, patch={"updatedAt": NAN}),
    "Infinity updatedAt": lambda i: request("patch", i, key=KEY, patch={"updatedAt": INF}),
    "-Infinity updatedAt": lambda i: request("patch", i, key=KEY, patch={"updatedAt": -INF}),
    "nested NaN": lambda i: request(
        "patch", i, key=KEY, patch={"label": "x", "meta": {"values": [1.0, NAN]}}
    ),
    "NaN in replace": lambda i: request(
        "replace", i, key=KEY, entry={"sessionId": "s", "score": NAN}
    ),
    "bin value": lambda i: request("patch", i, key=KEY, patch={"blob": b"\x00\x01\x02"}),
    "nested bin value": lambda i: request("patch", i, key=KEY, patch={"meta": [b"\xff"]}),
    "ext value": lambda i: request(
        "patch", i, key=KEY, patch={"thing": msgspec.msgpack.Ext(5, b"abc")}
    ),
    "ext value in update": lambda i: request(
        "update", i, key=KEY, patch={"meta": {"x": msgspec.msgpack.Ext(1, b"")}}
    ),
    "timestamp value": lambda i: request("patch", i, key=KEY, patch={"when": WHEN}),
    "integer key at the top": lambda i: request("patch", i, key=KEY, patch={1: "x"}),
    "integer key nested": lambda i: request("patch", i, key=KEY, patch={"meta": {1: "x"}}),
    "float key nested": lambda i: request("patch", i, key=KEY, patch={"meta": [{2.5: "x"}]}),
    "invalid UTF-8 in the key": lambda i: patch_with(
        map_of((raw_str(b"label"), value("x"))), i, key=raw_str(b"agent:main:str\xffct")
    ),
    "invalid UTF-8 in a value": lambda i: patch_with(
        map_of((raw_str(b"label"), raw_str(b"caf\xc3\x28"))), i
    ),
    "invalid UTF-8 in a nested value": lambda i: patch_with(
        map_of((raw_str(b"meta"), b"\x91" + raw_str(b"\xed\xa0\x80"))),
        i,  # a UTF-16 surrogate
    ),
    "invalid UTF-8 in a field name": lambda i: patch_with(
        map_of((raw_str(b"la\xffbel"), value("x"))), i
    ),
    "invalid UTF-8 in the op": lambda i: map_of(
        (raw_str(b"op"), raw_str(b"pat\xffch")),
        (raw_str(b"id"), value(i)),
        (raw_str(b"key"), value(KEY)),
        (raw_str(b"patch"), value({"label": "x"})),
    ),
    "nesting past the limit": lambda i: request(
        "patch", i, key=KEY, patch={"deep": nested_object(32)}
    ),
    "request nested 100,000 levels": lambda i: patch_with(
        map_of((raw_str(b"deep"), array_chain(100_000))), i
    ),
}


@pytest.fixture
def seeded(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    daemon = make_daemon().start()
    with daemon.client() as client:
        client.patch(KEY, {"label": "before"})
    return daemon


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_non_json_input_is_refused_with_its_id_and_nothing_applied(
    seeded: DaemonProcess, case: str
) -> None:
    with seeded.client() as client:
        before = client.get(KEY)
    assert before is not None
    with RawPeer(seeded.socket_path) as peer:
        peer.send_payload(BAD_REQUESTS[case](41))
        reply = peer.read_reply()
        assert reply["ok"] is False, reply
        assert reply["error"]["code"] == "invalid_request", reply
        assert reply["id"] == 41, reply
        after = peer.call({"op": "get", "id": 42, "key": KEY})  # the same connection
        assert after["id"] == 42 and after["ok"] is True, after
        assert after["result"]["entry"] == before.data
        assert after["result"]["revision"] == before.revision
        listed = peer.call({"op": "list", "id": 43, "limit": 100})
        assert [item["key"] for item in listed["result"]["items"]] == [KEY]


# -- one answer everywhere -----------------------------------------------------------------

VALUES: dict[str, Any] = {
    "label": "values",
    "half": 1.5,
    "huge": 1e300,
    "tiny": 5e-324,
    "negativeZero": -0.0,
    "maxInt": 2**63 - 1,
    "minInt": -(2**63),
    "maxUint": 2**64 - 1,
    "inexact": 0.1 + 0.2,
    "small": 1e-7,
    "integral": 3.0,
    "unicode": 'héllo wörld — 日本語 🎉 \u2028 \u0000 "quoted" \\',
    "nested": {
        "a": [1, 2.5, {"b": "c", "empty": {}, "none": None, "zeros": [-0.0, 0.0]}],
        "e": [],
        "t": True,
    },
}


def json_equal(left: Any, right: Any) -> bool:
    """Equal as JSON values: one number type, but exact (no rounding, no ``-0``)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        if isinstance(left, float) or isinstance(right, float):
            return left == right and math.copysign(1, left) == math.copysign(1, right)
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    return type(left) is type(right) and left == right


def test_write_reply_equals_get_equals_store_file(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon().start()
    key = "agent:main:values"
    with RawPeer(daemon.socket_path) as peer:
        peer.send({"op": "patch", "id": 1, "key": key, "patch": VALUES})
        written = msgspec.msgpack.decode(peer.read_payload(), type=RawEntryReply)
        assert written.ok and written.result is not None, written
        peer.send({"op": "get", "id": 2, "key": key})
        read = msgspec.msgpack.decode(peer.read_payload(), type=RawEntryReply)
        assert read.ok and read.result is not None, read
        assert bytes(read.result.entry) == bytes(written.result.entry)
        assert read.result.revision == written.result.revision
        assert peer.call({"op": "flush", "id": 3})["result"] is True
    shown = msgspec.msgpack.decode(written.result.entry)
    on_disk = json.loads(daemon.store_path.read_text())[key]
    assert json_equal(shown, on_disk), (shown, on_disk)
    # And the values are the ones written (-0.0 as 0, as JSON.stringify writes it).
    nested = VALUES["nested"]
    expected = {
        **VALUES,
        "negativeZero": 0,
        "nested": {**nested, "a": [1, 2.5, {**nested["a"][2], "zeros": [0, 0]}]},
    }
    for name, written_value in expected.items():
        assert json_equal(shown[name], written_value), (name, shown[name])
    assert shown["maxInt"] == 2**63 - 1 and shown["minInt"] == -(2**63)
    # After a restart (the store read back from that file) the reply is the same bytes.
    assert daemon.stop() == 0
    daemon.start()
    with RawPeer(daemon.socket_path) as peer:
        peer.send({"op": "get", "id": 4, "key": key})
        reread = msgspec.msgpack.decode(peer.read_payload(), type=RawEntryReply)
    assert reread.result is not None
    assert bytes(reread.result.entry) == bytes(written.result.entry)


# -- integers wider than 64 bits in a store file --------------------------------------------

WIDE_FILE = (
    b'{\n  "agent:main:wide": {\n    "sessionId": "s-wide",\n'
    b'    "updatedAt": 1700000000000,\n    "label": "wide",\n'
    b'    "huge": 1180591620717411303424,\n    "huger": 12345678901234567890123,\n'
    b'    "inList": [1, 36893488147419103232]\n  },\n'
    b'  "agent:main:plain": {"sessionId": "s-plain", "updatedAt": 1700000000001}\n}'
)


def test_store_file_with_integers_wider_than_64_bits_is_served_as_doubles(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon()
    daemon.store_path.parent.mkdir(parents=True)
    daemon.store_path.write_bytes(WIDE_FILE)
    daemon.start()
    with RawPeer(daemon.socket_path) as peer:
        reply = peer.call({"op": "get", "id": 1, "key": "agent:main:wide"})
        assert reply["ok"] is True, reply
        entry = reply["result"]["entry"]
        assert entry["huge"] == float(2**70) and isinstance(entry["huge"], float)
        assert entry["huger"] == float(12345678901234567890123)
        assert isinstance(entry["huger"], float)
        assert entry["inList"] == [1, float(2**65)]
        assert entry["label"] == "wide"
        listed = peer.call({"op": "list", "id": 2, "limit": 10})
        assert listed["ok"] is True, listed
        keys = [item["key"] for item in listed["result"]["items"]]
        assert sorted(keys) == ["agent:main:plain", "agent:main:wide"]
        many = peer.call({"op": "get_many", "id": 3, "keys": ["agent:main:wide"]})
        assert many["ok"] is True and many["result"]["agent:main:wide"]["entry"]["huge"] == 2.0**70
        # the connection was kept throughout
        assert peer.call({"op": "hello", "id": 4, "protocol": 1})["id"] == 4
    assert daemon.stop() == 0
