"""Unit tests for sessiond_client._core: building requests and converting replies to results.

Pure: replies are msgpack bytes built in the test, as the daemon would send them.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sessiond_client import _core
from sessiond_client.errors import (
    ConflictError,
    NotFoundError,
    ProtocolError,
    ServerError,
)
from sessiond_client.protocol import (
    OPS,
    WRITE_OPS,
    DeleteRequest,
    FrameDecoder,
    GetRequest,
    ListRequest,
    PatchRequest,
    Request,
    ResolveRequest,
    UpdateLastRouteRequest,
    WriteRequestBase,
    encode_frame,
)
from sessiond_client.results import Resolution, ServerInfo, Session, SessionPage

ENTRY = {"sessionId": "s-1", "updatedAt": 10, "label": "x", "futureField": [1]}
request_decoder: msgspec.msgpack.Decoder[Request] = msgspec.msgpack.Decoder(Request)


def ok_reply(result: Any, request_id: int = 1) -> bytes:
    return msgspec.msgpack.encode({"id": request_id, "ok": True, "result": result})


def error_reply(code: str, message: str, request_id: int = 1) -> bytes:
    error = {"code": code, "message": message}
    return msgspec.msgpack.encode({"id": request_id, "ok": False, "error": error})


def result_of(call: _core.Call, result: Any) -> Any:
    return _core.reply_result(_core.decode_reply(ok_reply(result)), call.convert)


# --- decode_reply / reply_result ---------------------------------------------------------


def test_decode_reply_keeps_the_id_and_result() -> None:
    reply = _core.decode_reply(ok_reply({"a": 1}, request_id=77))
    assert (reply.id, reply.ok) == (77, True)
    assert msgspec.msgpack.decode(reply.result) == {"a": 1}


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",  # never used in msgpack
        b"",
        msgspec.msgpack.encode([1, 2, 3]),
        msgspec.msgpack.encode({"id": "one", "ok": True}),
        msgspec.msgpack.encode({"id": 1}),
        msgspec.msgpack.encode({"id": 1, "ok": False, "error": {"code": "x"}}),
        msgspec.msgpack.encode({"id": 1, "ok": False}),
    ],
)
def test_malformed_replies_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        _core.decode_reply(payload)


@pytest.mark.parametrize(
    ("code", "cls"), [("conflict", ConflictError), ("not_found", NotFoundError)]
)
def test_error_replies_raise_the_class_of_their_code(code: str, cls: type[ServerError]) -> None:
    reply = _core.decode_reply(error_reply(code, "why"))
    with pytest.raises(cls) as raised:
        _core.reply_result(reply, _core.to_session)
    assert raised.value.message == "why"


def test_unknown_error_code_raises_a_plain_server_error() -> None:
    reply = _core.decode_reply(error_reply("rate_limited", "later"))
    with pytest.raises(ServerError) as raised:
        _core.reply_result(reply, _core.to_bool)
    assert type(raised.value) is ServerError
    assert raised.value.code == "rate_limited"


def test_a_result_of_the_wrong_shape_is_a_protocol_error() -> None:
    for convert, bad in [
        (_core.to_session, {"key": "k"}),
        (_core.to_session, "string"),
        (_core.to_page, {"items": "no"}),
        (_core.to_resolution, {"session_key": "k"}),
        (_core.to_server_info, {"protocol": "1"}),
        (_core.to_bool, "yes"),
        (_core.to_session_map, {"k": {"entry": {}}}),
    ]:
        with pytest.raises(ProtocolError):
            _core.reply_result(_core.decode_reply(ok_reply(bad)), convert)


def test_a_reply_without_a_result_is_none() -> None:
    reply = _core.decode_reply(msgspec.msgpack.encode({"id": 1, "ok": True}))
    assert _core.reply_result(reply, _core.to_session) is None


# --- result conversion ----------------------------------------------------------------------


def test_get_result_becomes_a_session() -> None:
    call = _core.get_call("k", agent=None)
    session = result_of(call, {"key": "k", "entry": ENTRY, "revision": "r1"})
    assert session == Session("k", ENTRY, "r1")
    assert session.entry.session_id == "s-1"
    assert session.entry.extra == {"futureField": [1]}
    assert session.session_id == "s-1"


def test_get_of_a_missing_key_is_none() -> None:
    assert result_of(_core.get_call("k", agent=None), None) is None


def test_update_of_a_missing_key_is_none() -> None:
    call = _core.update_call(key="k", patch={}, agent=None, if_revision=None, durable=False)
    assert result_of(call, None) is None


@pytest.mark.parametrize(
    "call",
    [
        _core.patch_call(key="k", patch={}, agent=None, if_revision=None, durable=False),
        _core.replace_call(key="k", entry=ENTRY, agent=None, if_revision=None, durable=False),
        _core.update_last_route_call(
            key="k", provider=None, to=None, account_id=None, touch=False, agent=None, durable=False
        ),
    ],
    ids=lambda call: call.op,
)
def test_ops_that_always_return_an_entry_reject_a_null_result(call: _core.Call) -> None:
    assert result_of(call, {"key": "k", "entry": ENTRY, "revision": "r"}) == Session(
        "k", ENTRY, "r"
    )
    with pytest.raises(ProtocolError):
        result_of(call, None)


def test_get_many_result_becomes_a_map_of_sessions() -> None:
    call = _core.get_many_call(["a", "b", "missing"], agent=None)
    result = result_of(
        call, {"a": {"entry": ENTRY, "revision": "ra"}, "b": {"entry": {}, "revision": "rb"}}
    )
    assert result == {"a": Session("a", ENTRY, "ra"), "b": Session("b", {}, "rb")}


def test_list_result_becomes_a_page() -> None:
    call = _core.list_call()
    items = [
        {"key": "a", "entry": ENTRY, "revision": "1"},
        {"key": "b", "entry": {}, "revision": "2"},
    ]
    page = result_of(call, {"items": items, "cursor": "next"})
    assert page == SessionPage([Session("a", ENTRY, "1"), Session("b", {}, "2")], "next")
    last = result_of(call, {"items": []})
    assert last == SessionPage([], None)


def test_resolve_result_becomes_a_resolution() -> None:
    call = _core.resolve_call(
        ctx={"From": "+1"},
        agent=None,
        authorized=True,
        scope=None,
        main_key=None,
        idle_minutes=None,
        reset_triggers=None,
        durable=False,
    )
    resolution = result_of(
        call,
        {
            "session_key": "main",
            "session_id": "s-1",
            "is_new": True,
            "reset_triggered": False,
            "body_stripped": None,
            "entry": ENTRY,
            "revision": "r",
        },
    )
    assert resolution == Resolution("main", "s-1", True, False, None, Session("main", ENTRY, "r"))
    assert resolution.entry.label == "x"


def test_hello_result_becomes_server_info() -> None:
    limits = {
        "max_frame_bytes": 1024,
        "max_reply_bytes": 2048,
        "max_key_bytes": 64,
        "max_entry_bytes": 512,
        "max_keys_per_request": 5,
        "max_list_limit": 7,
        "max_depth": 8,
        "max_fields": 99,
        "max_inflight_per_connection": 3,
    }
    info = result_of(
        _core.hello_call("bot"),
        {"protocol": 1, "server": "sessiond", "version": "9.9", "protocols": [1], **limits},
    )
    assert info == ServerInfo(protocol=1, server="sessiond", version="9.9", **limits)


def test_hello_from_an_older_daemon_gets_the_default_limits() -> None:
    info = result_of(
        _core.hello_call("bot"),
        {"protocol": 1, "server": "sessiond", "version": "0.1", "max_frame_bytes": 1024},
    )
    assert (info.max_frame_bytes, info.max_reply_bytes, info.max_depth) == (1024, 16 << 20, 32)


def test_write_results_carry_the_seq_of_their_reply() -> None:
    reply = msgspec.msgpack.encode(
        {"id": 1, "ok": True, "seq": 41, "result": {"key": "k", "entry": ENTRY, "revision": "r"}}
    )
    call = _core.patch_call(key="k", patch={}, agent=None, if_revision=None, durable=False)
    session = _core.reply_result(_core.decode_reply(reply), call.convert)
    assert (session.key, session.seq) == ("k", 41)
    read = _core.reply_result(_core.decode_reply(ok_reply(None)), _core.get_call("k", None).convert)
    assert read is None


def test_delete_and_flush_results_are_booleans() -> None:
    delete = _core.delete_call(key="k", agent=None, if_revision=None, durable=False)
    assert result_of(delete, True) is True
    assert result_of(delete, False) is False
    assert result_of(_core.flush_call(None), True) is True


def test_stats_must_be_a_map() -> None:
    assert result_of(_core.stats_call(), {"ops": {"get": 3}}) == {"ops": {"get": 3}}
    with pytest.raises(ProtocolError):
        result_of(_core.stats_call(), [1, 2])


# --- request building -----------------------------------------------------------------------


def wire(call: _core.Call) -> dict[str, Any]:
    """What actually goes on the wire for a call."""
    decoded: dict[str, Any] = msgspec.msgpack.decode(msgspec.msgpack.encode(call.request))
    return decoded


def without_token(request: Request) -> Request:
    """The request with its random ``request_token`` cleared, for comparisons."""
    if isinstance(request, WriteRequestBase):
        assert request.request_token
        return msgspec.structs.replace(request, request_token=None)
    return request


def every_call() -> list[_core.Call]:
    return [
        _core.hello_call(None),
        _core.get_call("k", None),
        _core.get_many_call(["k"], None),
        _core.list_call(),
        _core.patch_call(key="k", patch={}, agent=None, if_revision=None, durable=False),
        _core.update_call(key="k", patch={}, agent=None, if_revision=None, durable=False),
        _core.replace_call(key="k", entry={}, agent=None, if_revision=None, durable=False),
        _core.update_last_route_call(
            key="k", provider=None, to=None, account_id=None, touch=False, agent=None, durable=False
        ),
        _core.delete_call(key="k", agent=None, if_revision=None, durable=False),
        _core.resolve_call(
            ctx={},
            agent=None,
            authorized=True,
            scope=None,
            main_key=None,
            idle_minutes=None,
            reset_triggers=None,
            durable=False,
        ),
        _core.flush_call(None),
        _core.stats_call(),
        _core.watch_call(prefix="", agent=None, since=None, fields=None),
        _core.unwatch_call(1),
        _core.prune_call(agent=None, dry_run=True),
        _core.export_call(agent=None, cursor=None, limit=None),
        _core.import_call(agent=None, entries={}, import_id=None, commit=False),
    ]


def test_only_an_import_commit_is_never_resent() -> None:
    staging = _core.import_call(agent=None, entries={}, import_id=None, commit=False)
    commit = _core.import_call(agent=None, entries={}, import_id="i", commit=True)
    assert staging.retry_safe and not commit.retry_safe


def test_there_is_a_call_for_every_op() -> None:
    assert {call.op for call in every_call()} == OPS


def test_every_write_call_carries_a_fresh_request_token() -> None:
    calls = every_call()
    writes = [call for call in calls if call.op in WRITE_OPS]
    assert {call.op for call in writes} == WRITE_OPS
    tokens = []
    for call in writes:
        assert isinstance(call.request, WriteRequestBase)
        token = call.request.request_token
        assert token
        assert wire(call)["request_token"] == token
        tokens.append(token)
    for request in (call.request for call in every_call() if call.op in WRITE_OPS):
        assert isinstance(request, WriteRequestBase)
        assert request.request_token
        tokens.append(request.request_token)
    assert len(set(tokens)) == len(tokens), "tokens are unique per call"


def test_every_call_is_retry_safe() -> None:
    # Reads are idempotent; writes are deduplicated by their token; staging an import
    # again stages the same entries (only a commit is not resent, see below).
    assert all(call.retry_safe for call in every_call())


def test_encode_request_frame_is_one_length_prefixed_request() -> None:
    request = GetRequest(id=9, key="k")
    frame = bytes(_core.encode_request_frame(request))
    assert frame == encode_frame(msgspec.msgpack.encode(request))
    assert FrameDecoder().feed(frame) == [frame[4:]]


def test_calls_name_their_op_and_tag_their_request() -> None:
    calls = [
        _core.hello_call(None),
        _core.get_call("k", None),
        _core.get_many_call(["k"], None),
        _core.delete_call(key="k", agent=None, if_revision=None, durable=False),
        _core.flush_call(None),
        _core.stats_call(),
        _core.watch_call(prefix="", agent=None, since=None, fields=None),
        _core.unwatch_call(1),
        _core.prune_call(agent=None, dry_run=True),
        _core.export_call(agent=None, cursor=None, limit=None),
        _core.import_call(agent=None, entries={}, import_id=None, commit=False),
    ]
    for call in calls:
        assert wire(call)["op"] == call.op
        assert request_decoder.decode(msgspec.msgpack.encode(call.request)) == call.request


def test_patch_request_carries_every_parameter() -> None:
    call = _core.patch_call(
        key="k", patch={"label": None, "x": 1}, agent="ops", if_revision="r", durable=True
    )
    assert without_token(call.request) == PatchRequest(
        id=0, key="k", patch={"label": None, "x": 1}, agent="ops", if_revision="r", durable=True
    )
    # A null in a patch is sent (it deletes the field); defaults are omitted.
    assert wire(call)["patch"] == {"label": None, "x": 1}
    minimal = wire(_core.get_call("k", None))
    assert minimal == {"op": "get", "id": 0, "key": "k"}


def test_calls_copy_caller_mappings() -> None:
    patch = {"a": 1}
    call = _core.patch_call(key="k", patch=patch, agent=None, if_revision=None, durable=False)
    patch["a"] = 2
    assert isinstance(call.request, PatchRequest)
    assert call.request.patch == {"a": 1}


def test_other_requests_carry_their_parameters() -> None:
    assert _core.get_call("k", "ops").request == GetRequest(id=0, key="k", agent="ops")
    delete = _core.delete_call(key="k", agent=None, if_revision="r", durable=True)
    assert without_token(delete.request) == DeleteRequest(
        id=0, key="k", if_revision="r", durable=True
    )
    route = _core.update_last_route_call(
        key="k", provider="p", to="t", account_id="a", touch=True, agent=None, durable=False
    )
    assert without_token(route.request) == UpdateLastRouteRequest(
        id=0, key="k", provider="p", to="t", account_id="a", touch=True
    )
    listing = _core.list_call(
        agent="a",
        prefix="p",
        active_minutes=5.0,
        label="l",
        spawned_by="s",
        limit=3,
        cursor="c",
    )
    assert listing.request == ListRequest(
        id=0,
        agent="a",
        prefix="p",
        active_minutes=5.0,
        label="l",
        spawned_by="s",
        limit=3,
        cursor="c",
    )
    resolve = _core.resolve_call(
        ctx={"Body": "hi"},
        agent=None,
        authorized=False,
        scope="global",
        main_key="m",
        idle_minutes=5.0,
        reset_triggers=("/x",),
        durable=True,
    )
    assert without_token(resolve.request) == ResolveRequest(
        id=0,
        ctx={"Body": "hi"},
        authorized=False,
        scope="global",
        main_key="m",
        idle_minutes=5.0,
        reset_triggers=["/x"],
        durable=True,
    )


# --- update_with helper ---------------------------------------------------------------------


def test_patch_from_update() -> None:
    assert _core.patch_from_update(None) is None
    assert _core.patch_from_update({}) == {}  # an empty patch still writes (moves updatedAt)
    patch = {"a": 1}
    copied = _core.patch_from_update(patch)
    assert copied == {"a": 1}
    assert copied is not patch
    with pytest.raises(TypeError):
        _core.patch_from_update(["a"])


def test_request_tokens_are_unique_and_differ_after_fork() -> None:
    import os

    tokens = {_core.new_request_token() for _ in range(1000)}
    assert len(tokens) == 1000
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports its first token and exits at once
        os.write(write_end, _core.new_request_token().encode())
        os._exit(0)
    os.close(write_end)
    child_token = os.read(read_end, 200).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child_token and child_token not in tokens
    assert child_token[:24] != next(iter(tokens))[:24]
