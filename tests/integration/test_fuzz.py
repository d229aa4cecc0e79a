"""Fuzzing a live daemon with hypothesis: random bytes, random msgpack, and requests built
from the real schema with wrong, odd and extreme values — over 10,000 cases in all, while
4 good clients keep working. The daemon must never die, answer every well-framed payload
with its own id (or null) and never with ``internal``, never answer another client's
request, and never write a store file that does not load. (A fuzzed ``watch`` that starts
is ended by reconnecting: its events would otherwise answer for later payloads.)"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessiond.loader import load_store
from sessiond_client.errors import ERROR_CODES
from sessiond_client.protocol import OPS
from tests.support.daemon import DaemonProcess, short_temp_dir
from tests.support.good_clients import GoodClients
from tests.support.rawsocket import RawPeer

CASES_PER_STRATEGY = 3400
FUZZ_SETTINGS = settings(
    max_examples=CASES_PER_STRATEGY,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


class Target:
    """The fuzzed daemon and one raw connection to it, reopened whenever it is closed."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        self.peer = RawPeer(daemon.socket_path, timeout_s=10.0)
        self.next_id = 1

    def reconnect(self) -> None:
        self.peer.close()
        self.peer = RawPeer(self.daemon.socket_path, timeout_s=10.0)

    def exchange(self, payload: bytes, expected_id: int | None) -> None:
        """Send one framed payload and check the reply belongs to it."""
        try:
            self.peer.send_payload(payload)
            reply = self.peer.read_reply()
        except (ConnectionError, BrokenPipeError):
            assert self.daemon.process is not None and self.daemon.process.poll() is None
            self.reconnect()
            return
        assert reply["id"] in (expected_id, None), reply
        result = reply.get("result")
        if isinstance(result, dict) and result.get("type") == "progress":
            self.reconnect()  # a watch started: its events would answer later requests
            return
        if reply["ok"] is False:
            assert reply["error"]["code"] in ERROR_CODES, reply
            assert reply["error"]["code"] != "internal", reply  # a bug the fuzzer found
            if reply["error"]["code"] == "frame_too_large":
                self.reconnect()


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    root = short_temp_dir()
    daemon = DaemonProcess(root, {"limits": {"max_entry_bytes": 65536}})
    daemon.start()
    with daemon.client() as client:
        client.patch("agent:main:seed", {"label": "seed"})
    fuzzed = Target(daemon)
    with GoodClients(daemon.socket_path) as good:
        yield fuzzed
    fuzzed.peer.close()
    good.check()
    with daemon.client() as client:
        assert client.flush() is True
        seed = client.get("agent:main:seed")
    assert daemon.stop() == 0
    loaded = load_store(daemon.store_path, store_id=None, repair=False)
    assert loaded.report.corrupt_error is None
    assert seed is not None and loaded.entries["agent:main:seed"].value() == seed.data


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
keys = st.one_of(
    st.text(max_size=40),
    st.just(""),
    st.sampled_from(["agent:main:x", "agent:ops:y", "agent:../../etc:z"]),
)
field_names = st.sampled_from(
    [
        "sessionId",
        "updatedAt",
        "label",
        "chatType",
        "inputTokens",
        "skillsSnapshot",
        "systemSent",
        "x",
    ]
) | st.text(max_size=10)


@st.composite
def schema_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Requests shaped like the real ones, with each field sometimes of the wrong type."""
    request: dict[str, Any] = {"op": draw(st.sampled_from(sorted(OPS)) | st.text(max_size=8))}
    candidates = {
        "key": keys,
        "keys": st.lists(keys, max_size=5),
        "patch": st.dictionaries(field_names, json_values, max_size=5),
        "entry": st.dictionaries(field_names, json_values, max_size=5),
        "agent": st.none() | st.text(max_size=12),
        "if_revision": st.none() | st.text(max_size=16),
        "durable": st.booleans(),
        "request_token": st.none() | st.text(max_size=140),
        "limit": st.integers(-5, 5000),
        "cursor": st.none() | st.text(max_size=30),
        "active_minutes": st.floats(),
        "ctx": st.dictionaries(
            st.sampled_from(["From", "ChatType", "Body", "SessionKey", "Provider", "GroupSubject"]),
            json_values,
        ),
        "provider": st.none() | st.text(max_size=10),
        "to": st.none() | st.text(max_size=10),
        "protocol": st.integers(-3, 3),
    }
    for name, strategy in candidates.items():
        if draw(st.booleans()):
            request[name] = draw(strategy | json_values)
    return request


@FUZZ_SETTINGS
@given(payload=st.binary(max_size=300))
def test_random_bytes(target: Target, payload: bytes) -> None:
    target.exchange(payload, None)


@FUZZ_SETTINGS
@given(value=json_values)
def test_random_msgpack(target: Target, value: Any) -> None:
    # A random map may happen to carry an integer "id": the daemon then echoes it.
    has_id = isinstance(value, dict) and type(value.get("id")) is int
    target.exchange(msgspec.msgpack.encode(value), value["id"] if has_id else None)


@FUZZ_SETTINGS
@given(request=schema_requests())
def test_schema_fuzzed_requests(target: Target, request: dict[str, Any]) -> None:
    target.next_id += 1
    request["id"] = target.next_id
    target.exchange(msgspec.msgpack.encode(request), target.next_id)


def test_raw_oversized_and_partial_frames(target: Target) -> None:
    target.peer.send_bytes(struct.pack(">I", 2**31))
    assert target.peer.read_reply()["error"]["code"] == "frame_too_large"
    target.reconnect()
    target.exchange(b"", None)
