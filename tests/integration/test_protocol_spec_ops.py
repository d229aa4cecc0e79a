"""PROTOCOL.md §6 (operations: the common write fields, projections, hello, get/get_many,
list, patch/update/replace, update_last_route, delete, flush, stats) and the reply-size
limit of §2, statement by statement, against a real daemon over a raw Unix socket.
Expectations come from PROTOCOL.md and README.md only. resolve, watch and prune are in
their own ``test_protocol_spec_*.py`` files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess
from tests.support.spec_peer import (
    UUID4,
    SpecPeer,
    fresh_agent,
    fresh_key,
    now_ms,
    running_daemon,
    store_file,
)

MAX_KEYS = 5
MINUTE_MS = 60_000
# An agent whose store file holds falsy "entries" and entries without a numeric updatedAt.
SEEDED = {
    "seeded": json.dumps(
        {
            "falsy-null": None,
            "falsy-false": False,
            "falsy-zero": 0,
            "falsy-empty": "",
            "x3": {"sessionId": "s", "updatedAt": 10},
            "x1": {"sessionId": "s", "updatedAt": 5},
            "x2": {"sessionId": "s", "updatedAt": "soon"},
            "x0": {"sessionId": "s"},
        }
    ),
    "falsy": json.dumps({"null": None, "false": False, "zero": 0, "empty": "", "x": {"n": 1}}),
}
HELLO_KEYS = {
    "protocol",
    "protocols",
    "server",
    "version",
    "max_frame_bytes",
    "max_reply_bytes",
    "max_key_bytes",
    "max_entry_bytes",
    "max_keys_per_request",
    "max_list_limit",
    "max_depth",
    "max_fields",
    "max_inflight_per_connection",
}


@pytest.fixture(scope="module")
def ops() -> Iterator[DaemonProcess]:
    with running_daemon({"limits": {"max_keys_per_request": MAX_KEYS}}, SEEDED) as daemon:
        yield daemon


@pytest.fixture
def peer(ops: DaemonProcess) -> Iterator[SpecPeer]:
    with SpecPeer(ops.socket_path) as connection:
        yield connection


def code_of(peer: SpecPeer, op: str, **fields: Any) -> str:
    code: str = peer.error(op, **fields)["code"]
    return code


# -- §6 Fields every write takes ---------------------------------------------------------

WRITES: dict[str, dict[str, Any]] = {
    "patch": {"patch": {"n": 2}},
    "update": {"patch": {"n": 2}},
    "replace": {"entry": {"sessionId": "s2", "n": 2}},
    "update_last_route": {"to": "+1555"},
    "delete": {},
    "resolve": {"ctx": {"From": "+15550002", "Body": "hi"}},
}


@pytest.mark.parametrize("op", sorted(WRITES))
def test_if_revision_applies_only_at_that_revision_else_conflict(peer: SpecPeer, op: str) -> None:
    # §6: "apply only if the entry exists and is at this revision; otherwise conflict,
    # nothing changed"
    agent = fresh_agent()
    key = f"agent:{agent}:main"  # the key resolve derives for a direct message (§6.7)
    fields = {"agent": agent, **WRITES[op]} | ({} if op == "resolve" else {"key": key})
    missing = peer.error(op, **fields, if_revision="0123456789abcdef")
    assert missing["code"] == "conflict", op
    assert peer.result("list", agent=agent) == {"items": [], "cursor": None, "seq": 0}
    current = peer.result("patch", agent=agent, key=key, patch={"n": 1})
    stale = "0" * 16 if current["revision"] != "0" * 16 else "1" * 16
    assert peer.error(op, **fields, if_revision=stale)["code"] == "conflict"
    assert peer.result("get", agent=agent, key=key) == current
    reply = peer.call_op(op, **fields, if_revision=current["revision"])
    assert reply["ok"] is True and reply["seq"] == 2, reply


@pytest.mark.parametrize("op", ["patch", "replace"])
def test_if_absent_applies_only_when_the_entry_does_not_exist(peer: SpecPeer, op: str) -> None:
    # §6: if_absent: "apply only if the entry does not exist ... otherwise conflict"
    key = fresh_key()
    fields = {"key": key, **WRITES[op]}
    assert peer.result(op, **fields, if_absent=True)["key"] == key
    assert peer.error(op, **fields, if_absent=True)["code"] == "conflict"
    assert peer.result(op, **fields, if_absent=False)["key"] == key


@pytest.mark.parametrize("falsy", ["falsy-null", "falsy-false", "falsy-zero", "falsy-empty"])
def test_a_stored_value_js_finds_falsy_counts_as_absent(ops: DaemonProcess, falsy: str) -> None:
    # §6: "a stored value JS finds falsy — null, false, 0, "" — counts as absent"; §6.2:
    # get answers null for it
    with SpecPeer(ops.socket_path) as peer:
        assert peer.result("get", agent="seeded", key=falsy) is None
        assert falsy not in peer.result("get_many", agent="seeded", keys=[falsy])
        created = peer.result("patch", agent="seeded", key=falsy, patch={"n": 1}, if_absent=True)
        assert created["entry"]["n"] == 1 and UUID4.match(created["entry"]["sessionId"])


@pytest.mark.parametrize("exists", [False, True], ids=["missing", "existing"])
def test_with_if_absent_and_if_revision_both_must_hold(peer: SpecPeer, exists: bool) -> None:
    # §6: "With both if_absent and if_revision, both must hold" — never both at once
    key = fresh_key()
    revision = "0" * 16
    if exists:
        revision = peer.result("patch", key=key, patch={})["revision"]
    for op in ("patch", "replace"):
        fields = {"key": key, **WRITES[op], "if_absent": True, "if_revision": revision}
        assert code_of(peer, op, **fields) == "conflict"


@pytest.mark.parametrize("token", ["", "t" * 129, "é" * 129])
def test_a_request_token_outside_1_to_128_characters_is_refused(peer: SpecPeer, token: str) -> None:
    # §6: request_token "1 to 128 characters"
    assert (
        code_of(peer, "patch", key=fresh_key(), patch={}, request_token=token) == "invalid_request"
    )


@pytest.mark.parametrize("token", ["t", "t" * 128, "é" * 128])
def test_a_request_token_of_1_to_128_characters_is_accepted(peer: SpecPeer, token: str) -> None:
    # §6: request_token "1 to 128 characters"
    assert peer.result("patch", key=fresh_key(), patch={}, request_token=token)


# -- §6 Projections ---------------------------------------------------------------------


def test_fields_keeps_only_those_plus_session_id_and_updated_at(peer: SpecPeer) -> None:
    # §6: "each returned entry holds only those top-level fields plus sessionId and
    # updatedAt (those present); revision is still the whole entry's"
    agent = fresh_agent()
    full = peer.result("patch", agent=agent, key="k", patch={"label": "L", "a": 1, "b": {"c": 2}})
    want = {"label": "L", "sessionId": full["entry"]["sessionId"]}
    want["updatedAt"] = full["entry"]["updatedAt"]
    got = peer.result("get", agent=agent, key="k", fields=["label", "missing"])
    assert got == {"key": "k", "entry": want, "revision": full["revision"]}
    many = peer.result("get_many", agent=agent, keys=["k"], fields=["label"])
    assert many == {"k": {"entry": want, "revision": full["revision"]}}
    listed = peer.result("list", agent=agent, fields=["label"])["items"]
    assert listed == [{"key": "k", "entry": want, "revision": full["revision"]}]
    bare = peer.result("get", agent=agent, key="k", fields=[])["entry"]
    assert bare == {"sessionId": want["sessionId"], "updatedAt": want["updatedAt"]}


@pytest.mark.parametrize(
    "fields", [[""], ["f" * 257], [str(i) for i in range(10_001)], "label", [5]]
)
def test_fields_names_are_1_to_256_characters_at_most_max_fields(
    peer: SpecPeer, fields: Any
) -> None:
    # §6: "At most max_fields names, each 1 to 256 characters"
    calls: list[tuple[str, dict[str, Any]]] = [
        ("get", {"key": "k"}),
        ("get_many", {"keys": ["k"]}),
        ("list", {}),
    ]
    for op, extra in calls:
        assert code_of(peer, op, fields=fields, **extra) == "invalid_request", op
    assert peer.result("get", key="k", fields=["f" * 256]) is None


# -- §6.1 hello -------------------------------------------------------------------------


def test_hello_reports_protocol_1_and_the_default_limits(daemon: DaemonProcess) -> None:
    # §6.1: the result; defaults from §2, §4, §6 and §9
    with SpecPeer(daemon.socket_path) as peer:
        hello = peer.result("hello", protocol=1, client="spec-tests")
    assert set(hello) >= HELLO_KEYS, set(hello)
    assert hello["protocol"] == 1 and hello["protocols"] == [1]
    assert hello["server"] == "sessiond" and isinstance(hello["version"], str)
    assert hello["max_frame_bytes"] == 16 * 2**20
    assert hello["max_reply_bytes"] == 4 * 2**20
    assert hello["max_key_bytes"] == 1024
    assert hello["max_entry_bytes"] == 2**20
    assert hello["max_keys_per_request"] == 1000
    assert hello["max_list_limit"] == 1000
    assert hello["max_depth"] == 32
    assert hello["max_fields"] == 10_000
    assert hello["max_inflight_per_connection"] == 256
    assert all(type(hello[k]) is int for k in HELLO_KEYS if k.startswith("max_"))


def test_hello_reports_the_configured_limits(peer: SpecPeer) -> None:
    # §6.1: "hello reports it" — the configured value, not the default
    assert peer.result("hello")["max_keys_per_request"] == MAX_KEYS


@pytest.mark.parametrize("protocol", [2, 0, -1])
def test_a_protocol_not_spoken_is_invalid_request(peer: SpecPeer, protocol: int) -> None:
    # §6.1: "protocol version N is not spoken here; this daemon speaks protocol 1"
    error = peer.error("hello", protocol=protocol)
    assert error["code"] == "invalid_request"
    assert f"protocol version {protocol} is not spoken here" in error["message"], error
    assert "this daemon speaks protocol 1" in error["message"], error


@pytest.mark.parametrize("fields", [{"protocol": "1"}, {"protocol": True}, {"client": 5}])
def test_hello_fields_of_the_wrong_type_are_invalid_request(
    peer: SpecPeer, fields: dict[str, Any]
) -> None:
    # §6.1 / §3.1
    assert code_of(peer, "hello", **fields) == "invalid_request"


# -- §6.2 get / get_many ----------------------------------------------------------------


def test_get_answers_an_entry_or_null(peer: SpecPeer) -> None:
    # §6.2: "Result: Entry, or null when there is no entry"
    key = fresh_key()
    assert peer.result("get", key=key) is None
    written = peer.result("patch", key=key, patch={"n": 1})
    got = peer.result("get", key=key)
    assert set(got) == {"key", "entry", "revision"} and got == written


def test_get_many_answers_refs_of_the_keys_that_exist(peer: SpecPeer) -> None:
    # §6.2: "a map {key: Ref} of the keys that exist; missing keys are absent"
    agent = fresh_agent()
    one = peer.result("patch", agent=agent, key="one", patch={"n": 1})
    many = peer.result("get_many", agent=agent, keys=["one", "two"])
    assert many == {"one": {"entry": one["entry"], "revision": one["revision"]}}
    assert peer.result("get_many", agent=agent, keys=[]) == {}


def test_get_many_takes_at_most_max_keys_per_request(peer: SpecPeer) -> None:
    # §6.2: keys "at most max_keys_per_request"
    assert peer.result("get_many", keys=[f"k{i}" for i in range(MAX_KEYS)]) == {}
    keys = [f"k{i}" for i in range(MAX_KEYS + 1)]
    assert code_of(peer, "get_many", keys=keys) == "invalid_request"


def test_replies_over_max_reply_bytes(make_daemon: Callable[..., DaemonProcess]) -> None:
    # §2: a reply over max_reply_bytes is an invalid_request for that request; §6.2:
    # get_many "ask for fewer keys", nothing partial; §6.3: list returns a shorter page
    limits = {"max_entry_bytes": 1024, "max_key_bytes": 64, "max_reply_bytes": 4096}
    daemon = make_daemon({"limits": limits}).start()
    keys = [f"k{i:02}" for i in range(12)]
    with SpecPeer(daemon.socket_path) as peer:
        assert peer.result("hello")["max_reply_bytes"] == 4096
        for key in keys:
            peer.result("patch", key=key, patch={"pad": "p" * 900})
        assert len(peer.result("get_many", keys=keys[:2])) == 2
        error = peer.error("get_many", keys=keys)
        assert error["code"] == "invalid_request" and "fewer" in error["message"], error
        assert peer.result("get", key=keys[0])["key"] == keys[0]  # connection kept
        seen: list[str] = []
        first = page = peer.result("list", limit=12)
        while True:
            seen += [item["key"] for item in page["items"]]
            if page["cursor"] is None:
                break
            page = peer.result("list", limit=12, cursor=page["cursor"])
        assert 0 < len(first["items"]) < 12 and isinstance(first["cursor"], str)
        assert sorted(seen) == keys and len(seen) == len(keys)


# -- §6.3 list --------------------------------------------------------------------------


def put(peer: SpecPeer, agent: str, key: str, updated_at: Any, **extra: Any) -> dict[str, Any]:
    entry = {"sessionId": f"s-{key}", "updatedAt": updated_at, **extra}
    result: dict[str, Any] = peer.result("replace", agent=agent, key=key, entry=entry)
    return result


def keys_of(page: dict[str, Any]) -> list[str]:
    return [item["key"] for item in page["items"]]


def test_list_orders_by_updated_at_descending_then_key(peer: SpecPeer) -> None:
    # §6.3: "updatedAt descending, then key ascending"
    agent = fresh_agent()
    for key, at in [("b", 1000), ("e", 1000), ("a", 3000), ("d", 2000), ("c", 3000)]:
        put(peer, agent, key, at)
    page = peer.result("list", agent=agent)
    assert keys_of(page) == ["a", "c", "d", "b", "e"]
    assert page["cursor"] is None and page["seq"] == 5
    assert set(page["items"][0]) == {"key", "entry", "revision"}


def test_list_sorts_entries_without_a_numeric_updated_at_last(peer: SpecPeer) -> None:
    # §6.3: "entries without a numeric updatedAt sort as 0, last"
    assert keys_of(peer.result("list", agent="seeded", prefix="x")) == ["x3", "x1", "x0", "x2"]


def test_list_items_are_entries_whose_entry_is_a_map(peer: SpecPeer) -> None:
    # §6.3: "Result: {"items": [Entry], ...}" with Entry = {"key", "entry": map,
    # "revision"}; a stored value JS finds falsy is no entry (§6.2: get answers null)
    items = peer.result("list", agent="falsy")["items"]
    assert all(isinstance(item["entry"], dict) for item in items), items
    assert [item["key"] for item in items] == ["x"]


def test_list_pages_by_100_by_default(peer: SpecPeer) -> None:
    # §6.3: limit (100)
    agent = fresh_agent()
    for i in range(105):
        put(peer, agent, f"k{i:03}", 1000 + i)
    first = peer.result("list", agent=agent)
    assert len(first["items"]) == 100 and isinstance(first["cursor"], str)
    second = peer.result("list", agent=agent, cursor=first["cursor"])
    assert keys_of(second) == ["k004", "k003", "k002", "k001", "k000"]
    assert second["cursor"] is None


@pytest.mark.parametrize("limit", [0, -1, 1001, 2**40])
def test_list_limit_outside_1_to_max_list_limit_is_refused(peer: SpecPeer, limit: int) -> None:
    # §6.3: "page size, 1 to max_list_limit (default 1000)"
    assert code_of(peer, "list", limit=limit) == "invalid_request"


def test_list_limit_1_and_max_list_limit_are_accepted(peer: SpecPeer) -> None:
    assert peer.result("list", agent=fresh_agent(), limit=1)["items"] == []
    assert peer.result("list", agent=fresh_agent(), limit=1000)["items"] == []


def test_list_prefix_is_exact_and_case_sensitive(peer: SpecPeer) -> None:
    # §6.3: "only keys that start with it (exact, case-sensitive)"
    agent = fresh_agent()
    for key in ("Ab1", "ab2", "ab3", "xab"):
        put(peer, agent, key, 5)
    assert keys_of(peer.result("list", agent=agent, prefix="ab")) == ["ab2", "ab3"]
    assert keys_of(peer.result("list", agent=agent, prefix="A")) == ["Ab1"]


def test_list_active_minutes_keeps_entries_updated_since_now_minus_minutes(peer: SpecPeer) -> None:
    # §6.3: "only entries with updatedAt >= now - minutes"
    agent = fresh_agent()
    now = now_ms()
    put(peer, agent, "old", now - 10 * MINUTE_MS)
    put(peer, agent, "recent", now - 1 * MINUTE_MS)
    put(peer, agent, "future", now + 10 * MINUTE_MS)
    assert keys_of(peer.result("list", agent=agent, active_minutes=5)) == ["future", "recent"]
    assert keys_of(peer.result("list", agent=agent, active_minutes=2.5)) == ["future", "recent"]
    assert keys_of(peer.result("list", agent=agent, active_minutes=0)) == ["future"]
    assert len(peer.result("list", agent=agent, active_minutes=60)["items"]) == 3


@pytest.mark.parametrize("minutes", [-1, float("nan"), float("inf"), "5"])
def test_list_active_minutes_must_be_finite_and_not_negative(peer: SpecPeer, minutes: Any) -> None:
    # §6.3: "(finite, >= 0)"
    assert code_of(peer, "list", active_minutes=minutes) == "invalid_request"


def test_list_label_and_spawned_by_filter_on_equality(peer: SpecPeer) -> None:
    # §6.3: "only entries whose label / spawnedBy equals it"
    agent = fresh_agent()
    put(peer, agent, "a", 3, label="L", spawnedBy="p")
    put(peer, agent, "b", 2, label="l", spawnedBy="P")
    put(peer, agent, "c", 1)
    assert keys_of(peer.result("list", agent=agent, label="L")) == ["a"]
    assert keys_of(peer.result("list", agent=agent, spawned_by="P")) == ["b"]
    assert peer.result("list", agent=agent, label="L", spawned_by="P")["items"] == []


def test_a_list_walk_never_repeats_and_skips_entries_changed_meanwhile(peer: SpecPeer) -> None:
    # §6.3: "a later page never repeats an entry of an earlier one; an entry changed
    # between pages moves to the front ... and is not seen again by this walk"
    agent = fresh_agent()
    for i in range(9):
        put(peer, agent, f"k{i}", 1000 + i)  # order: k8 ... k0
    first = peer.result("list", agent=agent, limit=3)
    assert keys_of(first) == ["k8", "k7", "k6"] and first["seq"] == 9
    peer.result("patch", agent=agent, key="k2", patch={"touched": True})  # moves to front
    peer.result("patch", agent=agent, key="k7", patch={"touched": True})  # already seen
    seen = keys_of(first)
    cursor = first["cursor"]
    while cursor is not None:
        assert isinstance(cursor, str)
        page = peer.result("list", agent=agent, limit=3, cursor=cursor)
        seen += keys_of(page)
        cursor = page["cursor"]
    assert seen == ["k8", "k7", "k6", "k5", "k4", "k3", "k1", "k0"]


def test_the_list_seq_is_the_store_s_sequence_number(peer: SpecPeer) -> None:
    # §6.3: "seq is the store's sequence number the page reflects"
    agent = fresh_agent()
    assert peer.result("list", agent=agent)["seq"] == 0
    last = peer.call_op("patch", agent=agent, key="a", patch={})
    peer.call_op("patch", agent=agent, key="b", patch={})
    last = peer.call_op("delete", agent=agent, key="a")
    assert peer.result("list", agent=agent)["seq"] == last["seq"] == 3
    assert peer.result("stats", agent=agent)["stores"][agent]["seq"] == 3


# -- §6.4 patch / update / replace ------------------------------------------------------


def test_patch_session_id_is_patch_then_existing_then_a_new_uuid4(peer: SpecPeer) -> None:
    # §6.4: sessionId = patch.sessionId ?? existing.sessionId ?? new UUID v4
    key = fresh_key()
    created = peer.result("patch", key=key, patch={})["entry"]["sessionId"]
    assert UUID4.match(created), created
    assert peer.result("patch", key=key, patch={"n": 1})["entry"]["sessionId"] == created
    assert peer.result("patch", key=key, patch={"sessionId": None})["entry"]["sessionId"] == created
    assert (
        peer.result("patch", key=key, patch={"sessionId": "mine"})["entry"]["sessionId"] == "mine"
    )
    other = peer.result("patch", key=fresh_key(), patch={})["entry"]["sessionId"]
    assert other != created


def test_patch_updated_at_is_the_max_of_existing_patch_and_now(peer: SpecPeer) -> None:
    # §6.4: updatedAt = max(existing.updatedAt, patch.updatedAt, now); §4: "never moves
    # backwards on patch/update"
    key = fresh_key()
    before = now_ms()
    past = peer.result("patch", key=key, patch={"updatedAt": 1000})["entry"]["updatedAt"]
    assert before <= past <= now_ms()
    future = now_ms() + 3_600_000
    assert (
        peer.result("patch", key=key, patch={"updatedAt": future})["entry"]["updatedAt"] == future
    )
    assert peer.result("patch", key=key, patch={"updatedAt": 5})["entry"]["updatedAt"] == future
    assert peer.result("patch", key=key, patch={"n": 1})["entry"]["updatedAt"] == future
    assert peer.result("update", key=key, patch={"updatedAt": 7})["entry"]["updatedAt"] == future
    assert peer.result("patch", key=key, patch={"updatedAt": None})["entry"]["updatedAt"] == future


def test_patch_replaces_every_other_field_whole(peer: SpecPeer) -> None:
    # §6.4: "every other field of the patch replaces the stored one" (no deep merge)
    key = fresh_key()
    peer.result("patch", key=key, patch={"skillsSnapshot": {"a": 1}, "list": [1, 2], "keep": 1})
    entry = peer.result("patch", key=key, patch={"skillsSnapshot": {"b": 2}, "list": [3]})["entry"]
    assert entry["skillsSnapshot"] == {"b": 2} and entry["list"] == [3] and entry["keep"] == 1
    assert peer.result("get", key=key)["entry"] == entry


def test_update_of_a_missing_entry_answers_null_and_writes_nothing(peer: SpecPeer) -> None:
    # §6.4: "otherwise the result is null, nothing is written and no seq is returned"
    agent = fresh_agent()
    peer.result("patch", agent=agent, key="other", patch={})
    reply = peer.call_op("update", agent=agent, key="missing", patch={"n": 1})
    assert reply["ok"] is True and reply["result"] is None and "seq" not in reply
    assert peer.result("get", agent=agent, key="missing") is None
    assert peer.result("list", agent=agent)["seq"] == 1
    error = peer.error("update", agent=agent, key="missing", patch={}, if_revision="0" * 16)
    assert error["code"] == "conflict"


def test_update_of_an_existing_entry_merges_like_patch(peer: SpecPeer) -> None:
    # §6.4: "As patch, but only if the entry exists"
    key = fresh_key()
    created = peer.result("patch", key=key, patch={"a": 1, "b": 2})["entry"]
    updated = peer.result("update", key=key, patch={"b": None, "c": 3})["entry"]
    assert updated["sessionId"] == created["sessionId"]
    assert updated["a"] == 1 and "b" not in updated and updated["c"] == 3


def test_replace_stores_the_entry_as_given_without_merging(peer: SpecPeer) -> None:
    # §6.4: "Stores entry as given, without merging: ... null fields are dropped"
    key = fresh_key()
    peer.result("patch", key=key, patch={"old": 1, "updatedAt": now_ms() + 10**6})
    given = {"sessionId": "s", "updatedAt": 1234, "new": [1], "gone": None}
    stored = peer.result("replace", key=key, entry=given)
    assert stored["entry"] == {"sessionId": "s", "updatedAt": 1234, "new": [1]}
    assert peer.result("get", key=key) == stored


def test_replace_without_updated_at_gets_now(peer: SpecPeer) -> None:
    # §6.4: "a missing updatedAt becomes now"
    before = now_ms()
    stored = peer.result("replace", key=fresh_key(), entry={"sessionId": "s"})["entry"]
    assert before <= stored["updatedAt"] <= now_ms()


@pytest.mark.parametrize("entry", [{}, {"sessionId": None}, {"sessionId": 5}, {"n": 1}])
def test_replace_requires_a_string_session_id(peer: SpecPeer, entry: dict[str, Any]) -> None:
    # §6.4: "sessionId (a string) is required"
    assert code_of(peer, "replace", key=fresh_key(), entry=entry) == "invalid_request"


@pytest.mark.parametrize(
    ("op", "fields"),
    [("patch", {}), ("update", {}), ("replace", {}), ("patch", {"patch": None})],
)
def test_writes_without_their_map_are_invalid_request(
    peer: SpecPeer, op: str, fields: dict[str, Any]
) -> None:
    # §6.4: patch (map), entry (map) are not optional
    assert code_of(peer, op, key=fresh_key(), **fields) == "invalid_request"


# -- §6.5 update_last_route -------------------------------------------------------------


def test_update_last_route_creates_the_entry_with_updated_at_now(peer: SpecPeer) -> None:
    # §6.5: "creating the entry if missing ... a new entry gets now"
    before = now_ms()
    result = peer.result("update_last_route", key=fresh_key(), provider="tg", to="+1")
    assert set(result) == {"key", "entry", "revision"}
    assert before <= result["entry"]["updatedAt"] <= now_ms()
    assert result["entry"]["lastProvider"] == "tg" and result["entry"]["lastTo"] == "+1"


def test_update_last_route_fields(peer: SpecPeer) -> None:
    # §6.5: lastProvider as given (null removes); lastTo trimmed, blank/null removes;
    # lastAccountId trimmed, blank/null keeps the previous one
    key = fresh_key()
    js_space = " \t\n\u00a0\u2003\u2028\ufeff"
    entry = peer.result(
        "update_last_route", key=key, provider=" tg ", to=f"{js_space}+1555{js_space}",
        account_id=f"{js_space}acct{js_space}",
    )["entry"]  # fmt: skip
    assert entry["lastProvider"] == " tg "
    assert entry["lastTo"] == "+1555"
    assert entry["lastAccountId"] == "acct"
    entry = peer.result("update_last_route", key=key, provider="tg", to=js_space, account_id="  ")[
        "entry"
    ]
    assert "lastTo" not in entry and entry["lastAccountId"] == "acct"
    entry = peer.result("update_last_route", key=key, to="x", account_id=None)["entry"]
    assert "lastProvider" not in entry, "an omitted provider is null, which removes it"
    assert entry["lastTo"] == "x" and entry["lastAccountId"] == "acct"
    entry = peer.result("update_last_route", key=key, provider="p", to=None, account_id="b")[
        "entry"
    ]
    assert "lastTo" not in entry and entry["lastAccountId"] == "b" and entry["lastProvider"] == "p"


def test_update_last_route_moves_updated_at_only_with_touch(peer: SpecPeer) -> None:
    # §6.5: "updatedAt of an existing entry moves only with touch: true"
    key = fresh_key()
    old = now_ms() - 5 * MINUTE_MS
    peer.result("replace", key=key, entry={"sessionId": "s", "updatedAt": old})
    kept = peer.result("update_last_route", key=key, provider="p", to="t")["entry"]
    assert kept["updatedAt"] == old
    assert (
        peer.result("update_last_route", key=key, to="u", touch=False)["entry"]["updatedAt"] == old
    )
    before = now_ms()
    touched = peer.result("update_last_route", key=key, to="v", touch=True)["entry"]
    assert before <= touched["updatedAt"] <= now_ms()


# -- §6.6 delete ------------------------------------------------------------------------


def test_delete_answers_whether_the_entry_existed(peer: SpecPeer) -> None:
    # §6.6: "true if the entry existed, false if not (then no seq)"
    agent = fresh_agent()
    peer.result("patch", agent=agent, key="k", patch={})
    existed = peer.call_op("delete", agent=agent, key="k")
    assert existed["result"] is True and existed["seq"] == 2
    again = peer.call_op("delete", agent=agent, key="k")
    assert again["result"] is False and "seq" not in again
    assert peer.result("get", agent=agent, key="k") is None


# -- §6.8 flush -------------------------------------------------------------------------


def test_flush_answers_true_once_every_change_is_in_the_store_file(
    ops: DaemonProcess, peer: SpecPeer
) -> None:
    # §6.8: "Writes a snapshot of every store ... and answers true once they are durable"
    agent = fresh_agent()
    written = peer.result("patch", agent=agent, key="k", patch={"n": 1})
    assert peer.result("flush", agent=agent) is True
    assert json.loads(store_file(ops, agent).read_text()) == {"k": written["entry"]}
    store = peer.result("stats", agent=agent)["stores"][agent]
    assert store["dirty"] == 0 and store["flush_count"] >= 1


# -- §6.9 stats -------------------------------------------------------------------------

STATS_TYPES: dict[str, type | tuple[type, ...]] = {
    "version": str,
    "uptime_s": (int, float),
    "connections": int,
    "connections_total": int,
    "connections_refused": int,
    "requests_in_flight": int,
    "replayed_writes": int,
    "ops": dict,
    "errors": dict,
    "stores": dict,
    "unavailable_stores": dict,
}
NULLABLE_NUMBER = (int, float, type(None))
NULLABLE_STRING = (str, type(None))
STORE_TYPES: dict[str, type | tuple[type, ...]] = {
    "entries": int,
    "seq": int,
    "mode": str,
    "path": str,
    "bytes_on_disk": int,
    "journal_bytes": int,
    "dirty": int,
    "flush_count": int,
    "flush_failures": int,
    "journal_fsyncs": int,
    "last_flush_at": NULLABLE_NUMBER,
    "last_flush_duration_s": NULLABLE_NUMBER,
    "last_error": NULLABLE_STRING,
    "failing": bool,
    "loaded_syntax": NULLABLE_STRING,
    "corrupt_moved_to": NULLABLE_STRING,
    "journal_records_replayed": int,
    "journal_dropped_bytes": int,
    "journal_corruption": NULLABLE_STRING,
}


def test_stats_holds_the_documented_keys(ops: DaemonProcess, peer: SpecPeer) -> None:
    # §6.9: the result map and Store
    agent = fresh_agent()
    peer.result("patch", agent=agent, key="k", patch={})
    peer.result("patch", agent=agent, key="j", patch={})
    peer.error("get", agent=agent, key="")
    stats = peer.result("stats")
    for name, kind in STATS_TYPES.items():
        assert isinstance(stats[name], kind), (name, stats.get(name))
    assert stats["connections"] >= 1 and stats["connections_total"] >= stats["connections"]
    assert stats["ops"]["patch"] >= 2 and stats["errors"]["invalid_request"] >= 1
    store = stats["stores"][agent]
    for name, kind in STORE_TYPES.items():
        item = store[name]
        typed = isinstance(item, bool) if kind is bool else not isinstance(item, bool)
        assert typed and isinstance(item, kind), (name, item)
    assert store["mode"] == "journal"  # README: the default durability
    assert store["entries"] == 2 and store["seq"] == 2
    assert store["path"] == str(store_file(ops, agent))
    assert store["loaded_syntax"] in ("json", "json5", "empty", None)
    seeded = peer.result("stats", agent="seeded")["stores"]["seeded"]
    assert seeded["loaded_syntax"] == "json"


def test_stats_with_agent_holds_that_agent_only(peer: SpecPeer) -> None:
    # §6.9: "With agent, stores and unavailable_stores hold that agent only"
    agent = fresh_agent()
    peer.result("patch", agent=agent, key="k", patch={})
    stats = peer.result("stats", agent=agent)
    assert list(stats["stores"]) == [agent] and stats["unavailable_stores"] == {}


def test_dirty_counts_changes_not_yet_in_the_store_file(peer: SpecPeer) -> None:
    # §6.9: "dirty is the number of changes not yet in the store file"
    agent = fresh_agent()
    for n in range(3):
        peer.result("patch", agent=agent, key="k", patch={"n": n})
    store = peer.result("stats", agent=agent)["stores"][agent]
    assert store["dirty"] == (3 if store["last_flush_at"] is None else store["dirty"])
    assert 0 < store["dirty"] <= 3
    peer.result("flush", agent=agent)
    assert peer.result("stats", agent=agent)["stores"][agent]["dirty"] == 0
