"""PROTOCOL.md §4 (entries and values) and §5 (stores and agents), statement by statement,
against a real daemon over a raw Unix socket. Expectations come from PROTOCOL.md and
README.md only; requests that encoders refuse to produce (invalid UTF-8, binary, ext)
are built byte by byte with ``tests.support.rawmsgpack``.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest

from tests.support.daemon import DaemonProcess
from tests.support.rawmsgpack import array_chain, map_of, raw_str, value
from tests.support.spec_peer import (
    HEX16,
    SpecPeer,
    fresh_agent,
    fresh_key,
    running_daemon,
    store_file,
)

MAX_FIELDS = 50
MAX_ENTRY = 2048
MAX_DEPTH = 32  # the default

# A store file as the gateway (or a hand edit) may leave it: JSON5 numbers, a number
# beyond 64 bits, -0, and falsy "entries".
SEEDED_MAIN = """{
  "numbers": {"sessionId": "s-numbers", "updatedAt": 1000,
              "big": 123456789012345678901234567890, "negzero": -0,
              "nan": NaN, "inf": Infinity, "ninf": -Infinity, "max": 18446744073709551615},
  "falsy-null": null, "falsy-false": false, "falsy-zero": 0, "falsy-empty": ""
}
"""


@pytest.fixture(scope="module")
def values() -> Iterator[DaemonProcess]:
    config = {"limits": {"max_fields": MAX_FIELDS, "max_entry_bytes": MAX_ENTRY}}
    with running_daemon(config, {"main": SEEDED_MAIN}) as daemon:
        yield daemon


def request(op: str, rid: int, **parts: bytes) -> bytes:
    """A request map of already-encoded values (``op`` and ``id`` first)."""
    pairs = [(value("op"), value(op)), (value("id"), value(rid))]
    pairs += [(value(name), part) for name, part in parts.items()]
    return map_of(*pairs)


def compact_json_size(entry: dict[str, Any]) -> int:
    return len(json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode())


# -- §4 Value model ----------------------------------------------------------------------

REFUSED: dict[str, bytes] = {
    "nan": value(float("nan")),
    "infinity": value(float("inf")),
    "minus-infinity": value(float("-inf")),
    "binary": value(b"\x00\x01"),
    "ext": value(msgspec.msgpack.Ext(5, b"xyz")),
    "timestamp": value(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)),
    "integer-map-key": map_of((value(1), value("x"))),
    "invalid-utf8-string": raw_str(b"ok\xff\xfe"),
    "invalid-utf8-map-key": map_of((raw_str(b"\xc3("), value(1))),
    "nested-too-deep": array_chain(MAX_DEPTH + 5),
    "too-many-fields": value(list(range(MAX_FIELDS + 5))),
    "nan-inside-an-array": value([1, float("nan")]),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
@pytest.mark.parametrize("op", ["patch", "replace", "resolve"])
def test_values_outside_the_model_are_refused_before_anything_is_applied(
    values: DaemonProcess, op: str, kind: str
) -> None:
    # §4: refused with invalid_request — before anything is applied, connection kept
    agent = fresh_agent()
    bad = map_of((value("good"), value(1)), (value("bad"), REFUSED[kind]))
    with SpecPeer(values.socket_path) as peer:
        before = peer.result("patch", agent=agent, key="agent:x:k", patch={"n": 1})
        agent_part = value(agent)
        if op == "patch":
            payload = request(op, 50, agent=agent_part, key=value("agent:x:k"), patch=bad)
        elif op == "replace":
            entry = map_of(
                (value("sessionId"), value("s")),
                (value("good"), value(1)),
                (value("bad"), REFUSED[kind]),
            )
            payload = request(op, 50, agent=agent_part, key=value("agent:x:k"), entry=entry)
        else:
            ctx = map_of((value("From"), value("+15550001")), (value("Extra"), REFUSED[kind]))
            payload = request(op, 50, agent=agent_part, ctx=ctx)
        peer.send_payload(payload)
        reply = peer.read_reply()
        assert reply["id"] == 50 and reply["ok"] is False, reply
        assert reply["error"]["code"] == "invalid_request", reply
        assert peer.result("get", agent=agent, key="agent:x:k") == before
        listed = peer.result("list", agent=agent)
        assert [item["key"] for item in listed["items"]] == ["agent:x:k"]
        assert listed["seq"] == 1  # nothing applied


def chain(depth: int, kind: str) -> Any:
    """``depth`` nested containers, the innermost empty."""
    inner: Any = [] if kind == "array" else {}
    for _ in range(depth - 1):
        inner = [inner] if kind == "array" else {"m": inner}
    return inner


@pytest.mark.parametrize("kind", ["array", "map"])
def test_depth_counts_the_entry_as_level_1(values: DaemonProcess, kind: str) -> None:
    # §4: nested deeper than max_depth (32) refused; "the entry itself is level 1, so its
    # fields are at level 2": a field holding 31 nested containers reaches level 32
    with SpecPeer(values.socket_path) as peer:
        key = fresh_key()
        fits = peer.result("patch", key=key, patch={"a": chain(MAX_DEPTH - 1, kind)})
        assert fits["entry"]["a"] == chain(MAX_DEPTH - 1, kind)
        too_deep = peer.error("patch", key=key, patch={"a": chain(MAX_DEPTH, kind)})
        assert too_deep["code"] == "invalid_request"
        entry = {"sessionId": "s", "a": chain(MAX_DEPTH - 1, kind)}
        assert peer.result("replace", key=key, entry=entry)["entry"]["a"] == entry["a"]
        deeper = {"sessionId": "s", "a": chain(MAX_DEPTH, kind)}
        assert peer.error("replace", key=key, entry=deeper)["code"] == "invalid_request"


def test_max_fields_counts_map_members_plus_array_items_in_all(values: DaemonProcess) -> None:
    # §4: "more than max_fields map members plus array items in all" is refused; a replace
    # entry {sessionId, updatedAt, list} has 3 members plus the list's items
    with SpecPeer(values.socket_path) as peer:
        key = fresh_key()
        at_limit = {"sessionId": "s", "updatedAt": 5, "list": list(range(MAX_FIELDS - 3))}
        assert peer.result("replace", key=key, entry=at_limit)["entry"] == at_limit
        over = {"sessionId": "s", "updatedAt": 5, "list": list(range(MAX_FIELDS - 2))}
        assert peer.error("replace", key=key, entry=over)["code"] == "invalid_request"
        nested = {"sessionId": "s", "m": {str(i): [i] for i in range((MAX_FIELDS) // 2)}}
        assert peer.error("replace", key=key, entry=nested)["code"] == "invalid_request"


def test_an_entry_s_compact_json_may_not_exceed_max_entry_bytes(values: DaemonProcess) -> None:
    # §4: "An entry's compact JSON may not exceed max_entry_bytes"
    key = fresh_key()
    entry: dict[str, Any] = {"sessionId": "s", "updatedAt": 1700000000000, "pad": ""}
    entry["pad"] = "x" * (MAX_ENTRY - compact_json_size(entry))
    assert compact_json_size(entry) == MAX_ENTRY
    with SpecPeer(values.socket_path) as peer:
        stored = peer.result("replace", key=key, entry=entry)
        assert stored["entry"] == entry
        bigger = entry | {"pad": entry["pad"] + "x"}
        assert peer.error("replace", key=key, entry=bigger)["code"] == "invalid_request"
        # a patch that would make the merged entry too large is refused, nothing changed
        assert peer.error("patch", key=key, patch={"more": "y"})["code"] == "invalid_request"
        assert peer.result("get", key=key) == stored


def test_numbers_read_from_a_store_file_follow_json_parse(values: DaemonProcess) -> None:
    # §4: beyond 64 bits -> a double; -0 -> 0; the file's NaN/Infinity -> null
    with SpecPeer(values.socket_path) as peer:
        entry = peer.result("get", key="numbers")["entry"]
    assert isinstance(entry["big"], float) and entry["big"] == float(123456789012345678901234567890)
    assert entry["negzero"] == 0 and math.copysign(1.0, entry["negzero"]) == 1.0
    assert entry["nan"] is None and entry["inf"] is None and entry["ninf"] is None
    assert entry["max"] == 18446744073709551615  # within the 64 bits msgpack carries


# -- §4 Known fields --------------------------------------------------------------------

STRING_FIELDS = [
    "sessionId", "sessionFile", "spawnedBy", "label", "displayName", "provider", "subject",
    "room", "space", "lastProvider", "lastTo", "lastAccountId", "thinkingLevel",
    "verboseLevel", "reasoningLevel", "elevatedLevel", "responseUsage", "providerOverride",
    "modelOverride", "authProfileOverride", "groupActivation", "sendPolicy", "queueMode",
    "queueDrop", "modelProvider", "model", "claudeCliSessionId",
]  # fmt: skip
NUMBER_FIELDS = [
    "updatedAt", "queueDebounceMs", "queueCap", "inputTokens", "outputTokens",
    "totalTokens", "contextTokens", "compactionCount",
]  # fmt: skip
BOOLEAN_FIELDS = ["systemSent", "abortedLastRun", "groupActivationNeedsSystemIntro"]

KNOWN: list[tuple[str, list[Any], list[Any]]] = [
    *((name, ["a string"], [5, True, ["x"], {"x": 1}]) for name in STRING_FIELDS),
    *((name, [1700000000000, 1.5], ["5", True, [1]]) for name in NUMBER_FIELDS),
    *((name, [True, False], [1, "true", 0]) for name in BOOLEAN_FIELDS),
    ("chatType", ["direct", "group", "room"], ["channel", "Direct", 5, True]),
    ("skillsSnapshot", [{"a": [1]}, {}], [[], "x", 5]),
]


@pytest.mark.parametrize(("field", "good", "bad"), KNOWN, ids=[k[0] for k in KNOWN])
def test_a_known_field_of_the_wrong_type_is_invalid_request(
    values: DaemonProcess, field: str, good: list[Any], bad: list[Any]
) -> None:
    # §4: "A known field with the wrong type in a patch or replace entry is
    # invalid_request (null is always allowed ...)"
    key = fresh_key()
    base = {"sessionId": "s", "updatedAt": 1700000000000}
    with SpecPeer(values.socket_path) as peer:
        for item in good:
            patched = peer.result("patch", key=key, patch={field: item})["entry"]
            if field != "updatedAt":
                assert patched[field] == item
            replaced = peer.result("replace", key=key, entry=base | {field: item})["entry"]
            assert replaced[field] == item
        for item in bad:
            assert peer.error("patch", key=key, patch={field: item})["code"] == "invalid_request"
            error = peer.error("replace", key=key, entry=base | {field: item})
            assert error["code"] == "invalid_request", item
        assert field not in peer.result("patch", key=key, patch={field: None})[
            "entry"
        ] or field in (
            "sessionId",
            "updatedAt",
        )


def test_null_in_a_patch_deletes_the_field(values: DaemonProcess) -> None:
    # §4/§6.4: "in a patch it deletes the field"
    key = fresh_key()
    with SpecPeer(values.socket_path) as peer:
        peer.result("patch", key=key, patch={"label": "x", "custom": 1, "queueCap": 3})
        entry = peer.result(
            "patch", key=key, patch={"label": None, "custom": None, "queueCap": None}
        )
        assert not {"label", "custom", "queueCap"} & set(entry["entry"])


def test_unknown_fields_are_stored_and_returned_as_given(values: DaemonProcess) -> None:
    # §4: "unknown fields are stored and returned as given, never dropped"; "What a
    # write's reply shows is exactly what a later get returns and what the store file
    # holds"
    agent = fresh_agent()
    unknown = {
        "float": 1.25,
        "negative": -3,
        "int64min": -(2**63),
        "uint64max": 2**64 - 1,
        "text": "héllo 🙂 \u2028",
        "nested": {"a": [1, "two", None, {"b": False}], "empty": {}},
        "emptyList": [],
        "nullInside": {"x": None},
        "t": True,
    }
    with SpecPeer(values.socket_path) as peer:
        written = peer.result("patch", agent=agent, key="k", patch=unknown)
        for name, item in unknown.items():
            assert written["entry"][name] == item, name
        assert peer.result("get", agent=agent, key="k") == written
        assert peer.result("flush", agent=agent) is True
    on_disk = json.loads(store_file(values, agent).read_text())
    assert on_disk["k"] == written["entry"]


@pytest.mark.parametrize("name", ["a" * 256, "é" * 256, "x"])
def test_field_names_of_1_to_256_characters_are_accepted(values: DaemonProcess, name: str) -> None:
    # §4: "Field names are 1 to 256 characters"
    with SpecPeer(values.socket_path) as peer:
        assert peer.result("patch", key=fresh_key(), patch={name: 1})["entry"][name] == 1


@pytest.mark.parametrize("name", ["", "a" * 257, "é" * 257])
def test_field_names_outside_1_to_256_characters_are_refused(
    values: DaemonProcess, name: str
) -> None:
    # §4: "Field names are 1 to 256 characters"
    with SpecPeer(values.socket_path) as peer:
        assert peer.error("patch", key=fresh_key(), patch={name: 1})["code"] == "invalid_request"
        entry = {"sessionId": "s", name: 1}
        assert peer.error("replace", key=fresh_key(), entry=entry)["code"] == "invalid_request"


# -- §4 Revision ------------------------------------------------------------------------


def test_the_revision_is_16_hex_characters_and_changes_with_the_content(
    values: DaemonProcess,
) -> None:
    # §4: "a 16-character hex string that changes whenever the entry's content changes (a
    # hash of its compact JSON)" — so equal content, equal revision
    entry = {"sessionId": "s", "updatedAt": 1700000000000, "n": 1}
    with SpecPeer(values.socket_path) as peer:
        key1, key2 = fresh_key(), fresh_key()
        first = peer.result("replace", key=key1, entry=entry)["revision"]
        assert HEX16.match(first), first
        assert peer.result("replace", key=key1, entry=entry)["revision"] == first
        assert peer.result("replace", key=key2, entry=entry)["revision"] == first
        changed = peer.result("replace", key=key1, entry=entry | {"n": 2})["revision"]
        assert HEX16.match(changed) and changed != first
        assert peer.result("replace", key=key1, entry=entry)["revision"] == first


def test_the_revision_stays_valid_across_a_restart(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # §4: "It stays valid across daemon restarts" (clean stop and kill -9)
    daemon = make_daemon().start()
    with SpecPeer(daemon.socket_path) as peer:
        one = peer.result("patch", key="agent:main:a", patch={"n": 1, "f": 0.1})
        two = peer.result("patch", key="agent:main:b", patch={"n": 2, "t": "é"})
    daemon.stop()
    daemon.start()
    with SpecPeer(daemon.socket_path) as peer:
        assert peer.result("get", key="agent:main:a") == one
        assert peer.result("patch", key="agent:main:a", patch={}, if_revision=one["revision"])
        three = peer.result("get", key="agent:main:b")
        assert three["revision"] == two["revision"]
    daemon.kill()
    daemon.start()
    with SpecPeer(daemon.socket_path) as peer:
        assert peer.result("get", key="agent:main:b")["revision"] == two["revision"]


# -- §4 Keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["k" * 1024, "é" * 512, " spaces ", "../../etc/passwd", "🙂\n"])
def test_any_key_of_1_to_max_key_bytes_utf8_bytes_works(values: DaemonProcess, key: str) -> None:
    # §4: "a non-empty string of at most max_key_bytes (default 1024) UTF-8 bytes ... any
    # string works"
    agent = fresh_agent()
    with SpecPeer(values.socket_path) as peer:
        assert peer.result("patch", agent=agent, key=key, patch={"n": 1})["key"] == key
        assert peer.result("get", agent=agent, key=key)["key"] == key


@pytest.mark.parametrize("key", ["", "k" * 1025, "é" * 513])
def test_keys_empty_or_over_max_key_bytes_are_refused(values: DaemonProcess, key: str) -> None:
    # §4: key rules; bytes, not characters ("é" is 2 bytes)
    with SpecPeer(values.socket_path) as peer:
        assert peer.error("patch", key=key, patch={})["code"] == "invalid_request"
        assert peer.error("get", key=key)["code"] == "invalid_request"


def test_keys_are_compared_exactly(values: DaemonProcess) -> None:
    # §4: "Keys are compared exactly (case-sensitive)"
    agent = fresh_agent()
    with SpecPeer(values.socket_path) as peer:
        peer.result("patch", agent=agent, key="Key", patch={"n": 1})
        peer.result("patch", agent=agent, key="key", patch={"n": 2})
        peer.result("patch", agent=agent, key="key ", patch={"n": 3})
        assert peer.result("get", agent=agent, key="Key")["entry"]["n"] == 1
        assert peer.result("get", agent=agent, key="key")["entry"]["n"] == 2
        assert len(peer.result("list", agent=agent)["items"]) == 3


# -- §5 Stores and agents ---------------------------------------------------------------


def agents_dir(daemon: DaemonProcess) -> list[str]:
    path = daemon.state_dir / "agents"
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


@pytest.mark.parametrize(
    ("key_agent", "store"),
    [
        ("Upper{}", "Upper{}"),
        ("Up.per{}", "up-per{}"),
        ("a.b c{}", "a-b-c{}"),
        ("-{}-", "{}"),
        ("{}" + "x" * 60, ("{}" + "x" * 60)[:64]),
    ],
    ids=[
        "valid-keeps-case",
        "invalid-lowercased",
        "outside-chars-to-dash",
        "dashes-trimmed",
        "cut-to-64",
    ],
)
def test_a_key_names_its_store_normalised(
    values: DaemonProcess, key_agent: str, store: str
) -> None:
    # §5: without `agent`, the agent the key names, in normal form: a valid id as it is;
    # else lowercased, runs outside [a-z0-9_-] -> "-", "-" trimmed, at most 64 characters
    tag = fresh_agent("n")
    key = f"agent:{key_agent.format(tag)}:main"
    expected = store.format(tag)[:64]
    with SpecPeer(values.socket_path) as peer:
        peer.result("patch", key=key, patch={"n": 1})
        assert peer.result("get", agent=expected, key=key)["entry"]["n"] == 1
        assert peer.result("get", key=key)["entry"]["n"] == 1
        assert peer.result("get", agent="main", key=key) is None
    assert expected in agents_dir(values)


def test_a_key_of_any_other_shape_names_main(values: DaemonProcess) -> None:
    # §5: "a key of any other shape names main"
    key = fresh_key("plain:")
    with SpecPeer(values.socket_path) as peer:
        peer.result("patch", key=key, patch={"n": 1})
        assert peer.result("get", agent="main", key=key)["entry"]["n"] == 1


@pytest.mark.parametrize(
    "agent", ["../x", "..", "é", "", "   ", " ops", "-x", "_X", "a" * 65, "a/b", "a b", "A.B"]
)
def test_a_wire_agent_that_is_not_a_valid_id_is_invalid_request(
    values: DaemonProcess, agent: str
) -> None:
    # §5: a wire agent must already be in normal form
    before = agents_dir(values)
    with SpecPeer(values.socket_path) as peer:
        calls: list[tuple[str, dict[str, Any]]] = [
            ("get", {"key": "k"}),
            ("patch", {"key": "k", "patch": {}}),
            ("list", {}),
            ("stats", {}),
        ]
        for op, fields in calls:
            assert peer.error(op, agent=agent, **fields)["code"] == "invalid_request", op
    assert agents_dir(values) == before


@pytest.mark.parametrize(
    ("agent", "normal"), [("a b", "a-b"), ("A.B", "a-b"), ("My Agent", "my-agent")]
)
def test_the_refusal_of_a_wire_agent_names_the_normal_form(
    values: DaemonProcess, agent: str, normal: str
) -> None:
    # §5: "the message names the normal form (normalizeAgentId's output) to use instead"
    with SpecPeer(values.socket_path) as peer:
        error = peer.error("get", agent=agent, key="k")
    assert normal in error["message"], error


@pytest.mark.parametrize("agent", ["a" * 64, "9lives", "a_b-C", "Z", "x-", "_x", "_ops-1"])
def test_valid_wire_agents_are_accepted(values: DaemonProcess, agent: str) -> None:
    # §5: ids in normal form, up to 64 characters, case kept (`_ops` is its own normal form)
    with SpecPeer(values.socket_path) as peer:
        assert peer.result("get", agent=agent, key="k") is None


def test_agent_ids_keep_their_case_two_stores_two_directories(values: DaemonProcess) -> None:
    # §5: "Ops and ops are two agents (two stores, two directories)"
    lower = fresh_agent("ops")
    upper = "O" + lower[1:]
    with SpecPeer(values.socket_path) as peer:
        peer.result("patch", agent=upper, key="k", patch={"who": "upper"})
        peer.result("patch", agent=lower, key="k", patch={"who": "lower"})
        assert peer.result("get", agent=upper, key="k")["entry"]["who"] == "upper"
        assert peer.result("get", agent=lower, key="k")["entry"]["who"] == "lower"
        assert peer.result("flush") is True
    assert json.loads(store_file(values, upper).read_text())["k"]["who"] == "upper"
    assert json.loads(store_file(values, lower).read_text())["k"]["who"] == "lower"


def test_get_many_picks_each_key_s_store_unless_agent_is_given(values: DaemonProcess) -> None:
    # §5: "get_many: each key picks its store by the rule above (unless agent is given)"
    other = fresh_agent("gm")
    plain = fresh_key("plain")
    keyed = f"agent:{other}:x"
    with SpecPeer(values.socket_path) as peer:
        peer.result("patch", key=keyed, patch={"n": 1})
        peer.result("patch", key=plain, patch={"n": 2})
        both = peer.result("get_many", keys=[keyed, plain])
        assert set(both) == {keyed, plain}
        assert set(peer.result("get_many", agent=other, keys=[keyed, plain])) == {keyed}
        assert set(peer.result("get_many", agent="main", keys=[keyed, plain])) == {plain}


def test_list_watch_and_prune_use_agent_or_main_never_a_key_prefix(values: DaemonProcess) -> None:
    # §5: "list, watch, prune: agent or main"
    other = fresh_agent("lw")
    key = f"agent:{other}:x"
    with SpecPeer(values.socket_path) as peer:
        peer.result("patch", key=key, patch={"n": 1})
        assert peer.result("list", prefix=f"agent:{other}:")["items"] == []
        assert [i["key"] for i in peer.result("list", agent=other)["items"]] == [key]
        main_seq = peer.result("list")["seq"]
        watch = peer.send_op("watch", prefix=f"agent:{other}:")
        assert peer.reply_to(watch)["result"] == {"type": "progress", "seq": main_seq}
        assert peer.result("unwatch", watch=watch) is True


def test_flush_and_stats_cover_every_store_unless_agent_is_given(values: DaemonProcess) -> None:
    # §5: "flush, stats: agent if given, else all stores"
    one, two = fresh_agent("fs"), fresh_agent("fs")
    with SpecPeer(values.socket_path) as peer:
        peer.result("patch", agent=one, key="k", patch={})
        peer.result("patch", agent=two, key="k", patch={})
        everything = peer.result("stats")
        assert {one, two, "main"} <= set(everything["stores"])
        only = peer.result("stats", agent=one)
        assert set(only["stores"]) == {one}
        assert peer.result("flush", agent=one) is True
        assert peer.result("stats", agent=one)["stores"][one]["dirty"] == 0
        assert peer.result("flush") is True
        assert peer.result("stats", agent=two)["stores"][two]["dirty"] == 0


def test_reading_an_agent_never_written_answers_empty_and_creates_nothing(
    values: DaemonProcess,
) -> None:
    # §5: "answers as an empty store and creates nothing"
    ghost = fresh_agent("ghost")
    with SpecPeer(values.socket_path) as peer:
        assert peer.result("get", agent=ghost, key="k") is None
        assert peer.result("get_many", agent=ghost, keys=["k"]) == {}
        assert peer.result("list", agent=ghost) == {"items": [], "cursor": None, "seq": 0}
        assert peer.result("flush", agent=ghost) is True
        peer.result("stats", agent=ghost)
        assert peer.result("prune", agent=ghost, dry_run=True)["pruned"] == []
        assert peer.result("get", key=f"agent:{ghost}:main") is None
    assert ghost not in agents_dir(values)


def test_watch_opens_the_agent_s_store(values: DaemonProcess) -> None:
    # §5/§6.10: "watch opens (creates) the agent's store"
    agent = fresh_agent("wo")
    with SpecPeer(values.socket_path) as peer:
        watch = peer.send_op("watch", agent=agent)
        assert peer.reply_to(watch)["result"] == {"type": "progress", "seq": 0}
        assert agent in peer.result("stats", agent=agent)["stores"]
        assert peer.result("unwatch", watch=watch) is True
