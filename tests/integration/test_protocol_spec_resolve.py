"""PROTOCOL.md §6.7 (resolve), statement by statement, against a real daemon over a raw
Unix socket: key derivation (scopes, groups, other agents, SessionKey, legacy keys), reset
triggers and ``body_stripped``, the idle clock (backdated with ``replace``), the fields
written, ``is_new`` and the result shape. Expectations come from PROTOCOL.md and README.md
only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess
from tests.support.spec_peer import UUID4, SpecPeer, fresh_agent, now_ms, running_daemon

MINUTE_MS = 60_000
SETTINGS = [
    "thinkingLevel", "verboseLevel", "reasoningLevel", "responseUsage", "providerOverride",
    "modelOverride", "sendPolicy", "queueMode", "queueDebounceMs", "queueCap", "queueDrop",
]  # fmt: skip
RESULT_KEYS = {
    "session_key",
    "session_id",
    "is_new",
    "reset_triggered",
    "body_stripped",
    "entry",
    "revision",
}
CONFIGURED = "cfg"  # an agent with its own [agents.cfg] session settings


@pytest.fixture(scope="module")
def resolver() -> Iterator[DaemonProcess]:
    config = {
        f"agents.{CONFIGURED}": {"scope": "global", "idle_minutes": 5.0, "reset_triggers": ["/go"]}
    }
    with running_daemon(config) as daemon:
        yield daemon


@pytest.fixture
def peer(resolver: DaemonProcess) -> Iterator[SpecPeer]:
    with SpecPeer(resolver.socket_path) as connection:
        yield connection


def resolve(peer: SpecPeer, agent: str, ctx: dict[str, Any], **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = peer.result("resolve", agent=agent, ctx=ctx, **fields)
    return result


def direct(body: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"From": "+15550001111", "To": "+15559990000", "Body": body, **extra}


# -- Result and key ---------------------------------------------------------------------


def test_resolve_answers_the_documented_result(peer: SpecPeer) -> None:
    # §6.7: the result map; the entry is the stored one; a write's reply carries seq
    agent = fresh_agent()
    reply = peer.call_op("resolve", agent=agent, ctx=direct())
    result = reply["result"]
    assert set(result) == RESULT_KEYS and reply["seq"] == 1
    assert result["session_id"] == result["entry"]["sessionId"] and UUID4.match(
        result["session_id"]
    )
    assert result["is_new"] is True and result["reset_triggered"] is False
    assert result["body_stripped"] is None
    stored = peer.result("get", agent=agent, key=result["session_key"])
    assert stored == {
        "key": result["session_key"],
        "entry": result["entry"],
        "revision": result["revision"],
    }


@pytest.mark.parametrize(
    ("ctx", "fields", "key"),
    [
        (direct(), {}, "agent:main:main"),
        (direct(), {"main_key": "work"}, "agent:main:work"),
        (direct(), {"scope": "global"}, "global"),
        (direct(), {"scope": "per-sender"}, "agent:main:main"),
        ({"From": "telegram:group:-100123", "Body": "x"}, {}, "agent:main:telegram:group:-100123"),
        ({"From": "group:555", "Provider": "discord"}, {}, "agent:main:discord:group:555"),
        ({"From": "group:556"}, {}, "agent:main:group:556"),
        ({"From": "slack:channel:c77", "Body": "x"}, {}, "agent:main:slack:channel:c77"),
        (
            {"From": "grp", "ChatType": "group", "Provider": "signal"},
            {},
            "agent:main:signal:group:grp",
        ),
    ],
    ids=[
        "direct",
        "main_key",
        "global",
        "per-sender",
        "provider-group",
        "group-with-Provider",
        "group-without-provider",
        "channel",
        "ChatType-group",
    ],
)
def test_the_session_key_is_derived_as_documented(
    resolver: DaemonProcess, ctx: dict[str, Any], fields: dict[str, Any], key: str
) -> None:
    # §6.7 step 1 (agent main; a fresh daemon store is not needed: keys are per chat)
    with SpecPeer(resolver.socket_path) as peer:
        assert resolve(peer, "main", ctx, **fields)["session_key"] == key


@pytest.mark.parametrize("agent", [fresh_agent("ops"), "O" + fresh_agent("ps")])
@pytest.mark.parametrize(
    ("ctx", "scope", "tail"),
    [
        (direct(), None, "main"),
        (direct(), "global", "global"),
        ({"From": "telegram:group:42"}, None, "telegram:group:42"),
    ],
    ids=["direct", "global", "group"],
)
def test_for_another_agent_the_returned_key_alone_reads_the_entry_back(
    peer: SpecPeer, agent: str, ctx: dict[str, Any], scope: str | None, tail: str
) -> None:
    # §6.7: "agent:main: becomes agent:<agent>: and global becomes agent:<agent>:global,
    # so that the returned key alone reads the same entry back"
    result = resolve(peer, agent, ctx, scope=scope)
    assert result["session_key"] == f"agent:{agent}:{tail}"
    got = peer.result("get", key=result["session_key"])  # no agent field: key-derived
    assert got is not None and got["entry"] == result["entry"], got


def test_an_explicit_session_key_is_trimmed_and_used(peer: SpecPeer) -> None:
    # §6.7: "An explicit ctx.SessionKey (trimmed, non-blank) is the key"
    agent = fresh_agent()
    key = f"agent:{agent}:custom"
    result = resolve(peer, agent, direct(SessionKey=f"  {key}\t"))
    assert result["session_key"] == key
    assert resolve(peer, agent, direct(SessionKey="   "))["session_key"] == f"agent:{agent}:main"
    assert (
        resolve(peer, "main", direct(SessionKey=" plain-custom "))["session_key"] == "plain-custom"
    )


@pytest.mark.parametrize(
    ("agent", "session_key"),
    [("main", "agent:other:x"), ("ops", "agent:main:x"), ("ops", "plain-key")],
)
def test_a_session_key_of_another_store_is_invalid_request(
    peer: SpecPeer, agent: str, session_key: str
) -> None:
    # §6.7: "an agent:<id>: key of another agent, or a key of another shape with agent
    # other than main, is invalid_request"
    error = peer.error("resolve", agent=agent, ctx=direct(SessionKey=session_key))
    assert error["code"] == "invalid_request"


def test_a_legacy_group_key_moves_to_the_new_key(peer: SpecPeer) -> None:
    # §6.7: "If the store holds the legacy key group:<id> and not the new key, the entry
    # moves to the new key"; §3.2: seq is the last of the changes; if_revision is checked
    # against the entry where it is now
    agent = fresh_agent()
    legacy = peer.result("patch", agent=agent, key="group:900", patch={"legacy": True})
    ctx = {"From": "group:900", "Provider": "discord", "Body": "hi"}
    stale = peer.error("resolve", agent=agent, ctx=ctx, if_revision="0" * 16)
    assert stale["code"] == "conflict"
    reply = peer.call_op("resolve", agent=agent, ctx=ctx, if_revision=legacy["revision"])
    result = reply["result"]
    assert result["session_key"] == f"agent:{agent}:discord:group:900"
    assert result["entry"]["legacy"] is True
    assert result["session_id"] == legacy["entry"]["sessionId"] and result["is_new"] is False
    assert peer.result("get", agent=agent, key="group:900") is None
    listed = peer.result("list", agent=agent)
    assert [i["key"] for i in listed["items"]] == [result["session_key"]]
    assert reply["seq"] == listed["seq"] > 1


def test_two_clients_resolving_a_new_chat_at_once_get_one_session(resolver: DaemonProcess) -> None:
    # §6.7: "two clients resolving the same new chat at the same moment get the same
    # session_id"
    agent = fresh_agent()
    results: list[dict[str, Any]] = []

    def one() -> None:
        with SpecPeer(resolver.socket_path) as peer:
            results.append(resolve(peer, agent, {"From": "telegram:group:7"}))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len({r["session_id"] for r in results}) == 1
    assert sum(r["is_new"] for r in results) == 1


# -- Reset -----------------------------------------------------------------------------

RESETS = [
    ("/new", ""),
    ("/reset", ""),
    ("  /new  ", ""),
    ("/NEW", ""),
    ("/new Hello   World", "hello world"),
    ("/new\n\nmore\ttext", "more text"),
    ("[Tue 12:00] Alice: /reset", ""),
    (
        "[Chat messages since your last reply]\nBob: hi\n"
        "[Current message - respond to this]\nAlice: /new Go",
        "go",
    ),
]  # fmt: skip
NO_RESETS = ["/newx", "hello /new", "/renew", "new", "@123456789 /new"]


@pytest.mark.parametrize(("body", "stripped"), RESETS)
def test_a_trigger_resets_the_session(peer: SpecPeer, body: str, stripped: str) -> None:
    # §6.7 step 2: normalised text, trigger equal or followed by a space; body_stripped
    agent = fresh_agent()
    first = resolve(peer, agent, direct())
    result = resolve(peer, agent, direct(body))
    assert result["reset_triggered"] is True, result
    assert result["body_stripped"] == stripped
    assert result["is_new"] is True and result["session_id"] != first["session_id"]


@pytest.mark.parametrize("body", NO_RESETS)
def test_text_that_is_not_a_trigger_keeps_the_session(peer: SpecPeer, body: str) -> None:
    # §6.7 step 2 ("for group messages" only are bot mentions removed: this is direct)
    agent = fresh_agent()
    first = resolve(peer, agent, direct())
    result = resolve(peer, agent, direct(body))
    assert result["reset_triggered"] is False and result["body_stripped"] is None
    assert result["is_new"] is False and result["session_id"] == first["session_id"]


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        (None, "@123456789 /new"),
        ("discord", "<@98765> /new"),
        ("discord", "<@!98765> /new please"),
        ("whatsapp", "@15550009999 /new"),
    ],
)
def test_bot_mentions_are_removed_in_group_messages(
    peer: SpecPeer, provider: str | None, body: str
) -> None:
    # §6.7 step 2: mentions of the bot are removed in group messages: `@` + 5 or more of
    # [0-9+] always, Discord <@id> with Provider "discord", the bot's number from `To`
    # with Provider "whatsapp"
    agent = fresh_agent()
    ctx = {"From": "discord:group:31", "Body": "hi", "To": "+15550009999"}
    if provider is not None:
        ctx["Provider"] = provider
    first = resolve(peer, agent, ctx)
    result = resolve(peer, agent, ctx | {"Body": body})
    assert result["reset_triggered"] is True and result["session_id"] != first["session_id"]


def test_without_the_discord_provider_only_the_digits_of_a_mention_go(peer: SpecPeer) -> None:
    # §6.7 step 2: "without Provider: "discord", <@98765> becomes < >"
    agent = fresh_agent()
    ctx = {"From": "discord:group:31", "Body": "hi"}
    resolve(peer, agent, ctx)
    result = resolve(peer, agent, ctx | {"Body": "/new <@98765>"})
    assert result["reset_triggered"] is True and result["body_stripped"] == "< >"
    assert resolve(peer, agent, ctx | {"Body": "<@98765> /new"})["reset_triggered"] is False


def test_a_trigger_with_capitals_only_matches_the_raw_text(peer: SpecPeer) -> None:
    # §6.7 step 2: "Triggers are compared as given, so a trigger with capital letters only
    # matches the raw text exactly"
    agent = fresh_agent()
    triggers = ["/New"]
    resolve(peer, agent, direct())
    for body in ("/new", "/NEW"):
        assert (
            resolve(peer, agent, direct(body), reset_triggers=triggers)["reset_triggered"] is False
        )
    result = resolve(peer, agent, direct("/New Topic"), reset_triggers=triggers)
    assert result["reset_triggered"] is True and result["body_stripped"] == "topic"


def test_reset_triggers_replace_the_default_and_an_empty_list_means_the_default(
    peer: SpecPeer,
) -> None:
    # §6.7: reset_triggers "default ["/new", "/reset"]; an empty list means the default"
    agent = fresh_agent()
    resolve(peer, agent, direct())
    assert resolve(peer, agent, direct("/new"), reset_triggers=["/go"])["reset_triggered"] is False
    went = resolve(peer, agent, direct("/go now"), reset_triggers=["/go"])
    assert went["reset_triggered"] is True and went["body_stripped"] == "now"
    assert resolve(peer, agent, direct("/reset"), reset_triggers=[])["reset_triggered"] is True


def test_an_unauthorized_sender_cannot_reset(peer: SpecPeer) -> None:
    # §6.7 step 2: "Only if authorized"
    agent = fresh_agent()
    first = resolve(peer, agent, direct())
    result = resolve(peer, agent, direct("/new"), authorized=False)
    assert result["reset_triggered"] is False and result["is_new"] is False
    assert result["session_id"] == first["session_id"]


@pytest.mark.parametrize(
    ("ctx", "resets"),
    [
        ({"CommandBody": "/new", "RawBody": "hi", "Body": "hi"}, True),
        ({"RawBody": "/new", "Body": "hi"}, True),
        ({"CommandBody": "hi", "Body": "/new"}, False),
        ({"CommandBody": "", "Body": "/new"}, False),
    ],
    ids=["CommandBody", "RawBody", "CommandBody-first", "empty-CommandBody-is-not-nullish"],
)
def test_the_text_is_command_body_then_raw_body_then_body(
    peer: SpecPeer, ctx: dict[str, Any], resets: bool
) -> None:
    # §6.7: "the text CommandBody ?? RawBody ?? Body"
    agent = fresh_agent()
    resolve(peer, agent, direct())
    result = resolve(peer, agent, {"From": "+15550001111", **ctx})
    assert result["reset_triggered"] is resets


def test_a_reset_clears_the_per_session_settings_and_keeps_the_rest(peer: SpecPeer) -> None:
    # §6.7 step 3: new sessionId, systemSent/abortedLastRun false, the settings removed,
    # every other field kept, updatedAt now
    agent = fresh_agent()
    key = resolve(peer, agent, direct())["session_key"]
    settings: dict[str, Any] = dict.fromkeys(SETTINGS, "x")
    settings |= {"queueDebounceMs": 5, "queueCap": 3}
    kept = {"label": "L", "custom": {"a": 1}, "elevatedLevel": "on", "model": "m", "lastTo": "t"}
    peer.result(
        "patch",
        agent=agent,
        key=key,
        patch={**settings, **kept, "systemSent": True, "abortedLastRun": True},
    )
    before = now_ms()
    result = resolve(peer, agent, direct("/new"))
    entry = result["entry"]
    assert not set(SETTINGS) & set(entry), entry
    assert entry["systemSent"] is False and entry["abortedLastRun"] is False
    assert {name: entry.get(name) for name in kept} == kept
    assert before <= entry["updatedAt"] <= now_ms()


# -- Fresh / idle ----------------------------------------------------------------------


def backdate(peer: SpecPeer, agent: str, key: str, minutes: float, **extra: Any) -> None:
    entry = {"sessionId": "old-session", "updatedAt": now_ms() - int(minutes * MINUTE_MS), **extra}
    peer.result("replace", agent=agent, key=key, entry=entry)


@pytest.mark.parametrize(
    ("idle_minutes", "age_minutes", "continues"),
    [
        (None, 59, True),
        (None, 61, False),
        (5, 4, True),
        (5, 6, False),
        (0.5, 0.8, True),
        (0, 0.8, True),
        (0.5, 1.2, False),
    ],
)
def test_a_session_idle_longer_than_idle_minutes_starts_anew(
    peer: SpecPeer, idle_minutes: float | None, age_minutes: float, continues: bool
) -> None:
    # §6.7 step 3: "now - updatedAt <= idle_minutes x 60,000 ms"; default 60; "values
    # below 1 count as 1"
    agent = fresh_agent()
    key = f"agent:{agent}:main"
    backdate(peer, agent, key, age_minutes, thinkingLevel="high", label="L")
    before = now_ms()
    result = resolve(peer, agent, direct(), idle_minutes=idle_minutes)
    assert result["session_key"] == key
    assert (result["session_id"] == "old-session") is continues
    assert result["is_new"] is not continues and result["reset_triggered"] is False
    assert before <= result["entry"]["updatedAt"] <= now_ms()  # "Either way updatedAt becomes now"
    assert result["entry"]["label"] == "L"
    assert ("thinkingLevel" in result["entry"]) is continues


def test_an_entry_without_a_non_empty_session_id_starts_anew(peer: SpecPeer) -> None:
    # §6.7 step 3: the entry must have "a non-empty string sessionId"
    agent = fresh_agent()
    key = f"agent:{agent}:main"
    peer.result("replace", agent=agent, key=key, entry={"sessionId": "", "updatedAt": now_ms()})
    result = resolve(peer, agent, direct())
    assert result["is_new"] is True and UUID4.match(result["session_id"])


def test_route_updates_without_touch_do_not_reset_the_idle_clock(peer: SpecPeer) -> None:
    # §6.7 step 3: "route updates without touch do not reset it"
    agent = fresh_agent()
    key = f"agent:{agent}:main"
    backdate(peer, agent, key, 61)
    peer.result("update_last_route", agent=agent, key=key, provider="p", to="t")
    assert resolve(peer, agent, direct())["is_new"] is True
    backdate(peer, agent, key, 61)
    peer.result("update_last_route", agent=agent, key=key, to="t", touch=True)
    assert resolve(peer, agent, direct())["session_id"] == "old-session"


def test_an_agent_s_configured_session_settings_are_the_defaults(peer: SpecPeer) -> None:
    # §6.7: scope, idle_minutes, reset_triggers default to the agent's configuration
    # (README: [agents.<id>] overrides [session])
    first = resolve(peer, CONFIGURED, direct())
    assert first["session_key"] == f"agent:{CONFIGURED}:global"
    assert resolve(peer, CONFIGURED, direct("/new"))["reset_triggered"] is False
    assert resolve(peer, CONFIGURED, direct("/go"))["reset_triggered"] is True
    backdate(peer, CONFIGURED, first["session_key"], 6)
    assert resolve(peer, CONFIGURED, direct())["is_new"] is True


# -- Fields written --------------------------------------------------------------------


def test_a_direct_session_gets_its_fields(resolver: DaemonProcess, peer: SpecPeer) -> None:
    # §6.7 step 4: sessionId, updatedAt, systemSent, abortedLastRun, chatType "direct",
    # sessionFile <store dir>/<sessionId>.jsonl
    agent = fresh_agent()
    entry = resolve(peer, agent, direct())["entry"]
    store_dir = resolver.state_dir / "agents" / agent / "sessions"
    assert entry["chatType"] == "direct"
    assert entry["systemSent"] is False and entry["abortedLastRun"] is False
    assert entry["sessionFile"] == str(store_dir / f"{entry['sessionId']}.jsonl")


@pytest.mark.parametrize("thread", [42, "t-7"])
def test_a_thread_gets_a_topic_session_file(
    resolver: DaemonProcess, peer: SpecPeer, thread: int | str
) -> None:
    # §6.7 step 4: "<sessionId>-topic-<MessageThreadId>.jsonl"
    agent = fresh_agent()
    entry = resolve(peer, agent, direct(MessageThreadId=thread, ThreadLabel="Topic A"))["entry"]
    store_dir = resolver.state_dir / "agents" / agent / "sessions"
    assert entry["sessionFile"] == str(store_dir / f"{entry['sessionId']}-topic-{thread}.jsonl")
    assert entry["displayName"] == "Topic A"  # "ThreadLabel sets displayName"


def test_the_session_file_is_kept_while_the_session_continues(peer: SpecPeer) -> None:
    # §6.7 step 4: "sessionFile when missing or on a new session"
    agent = fresh_agent()
    key = resolve(peer, agent, direct())["session_key"]
    peer.result("patch", agent=agent, key=key, patch={"sessionFile": "/elsewhere.jsonl"})
    assert resolve(peer, agent, direct())["entry"]["sessionFile"] == "/elsewhere.jsonl"
    renewed = resolve(peer, agent, direct("/new"))["entry"]
    assert renewed["sessionFile"].endswith(f"/{renewed['sessionId']}.jsonl")


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        (
            {"From": "telegram:group:5", "GroupSubject": "Team"},
            {"chatType": "group", "provider": "telegram", "subject": "Team"},
        ),
        (
            {"From": "slack:channel:c9", "GroupRoom": "#general", "GroupSpace": "T1"},
            {"chatType": "room", "provider": "slack", "room": "#general", "space": "T1"},
        ),
        # a provider-less legacy group: "direct", as the gateway did (§6.7 step 4)
        ({"From": "group:77"}, {"chatType": "direct", "provider": None}),
        ({"From": "12345@g.us", "Provider": "whatsapp"}, {"chatType": "group"}),
    ],
    ids=["group", "channel", "legacy-group", "whatsapp-group"],
)
def test_a_group_session_gets_its_fields(
    peer: SpecPeer, ctx: dict[str, Any], expected: dict[str, Any]
) -> None:
    # §6.7 step 4: chatType "group" / "room" for channels, provider, subject or room,
    # space, displayName
    entry = resolve(peer, fresh_agent(), ctx)["entry"]
    assert {name: entry.get(name) for name in expected} == expected
    if expected.get("provider"):
        assert isinstance(entry["displayName"], str) and entry["displayName"]


def test_is_new_is_false_for_a_continuing_session(peer: SpecPeer) -> None:
    # §6.7: is_new true for a created session, after an idle expiry and after a reset
    agent = fresh_agent()
    first = resolve(peer, agent, direct())
    again = resolve(peer, agent, direct())
    assert first["is_new"] is True and again["is_new"] is False
    assert again["session_id"] == first["session_id"]


# -- Field types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"ctx": {"From": 5}},
        {"ctx": {"Body": ["x"]}},
        {"ctx": {"MessageThreadId": 1.5}},
        {"ctx": {"MessageThreadId": True}},
        {"ctx": "From"},
        {},
        {"ctx": {}, "scope": "everyone"},
        {"ctx": {}, "authorized": "yes"},
        {"ctx": {}, "idle_minutes": "5"},
        {"ctx": {}, "reset_triggers": "/new"},
        {"ctx": {}, "main_key": 5},
    ],
)
def test_resolve_fields_of_the_wrong_type_are_invalid_request(
    peer: SpecPeer, fields: dict[str, Any]
) -> None:
    # §6.7: ctx fields read are strings (MessageThreadId string or integer); §3.1 types
    assert peer.error("resolve", agent=fresh_agent(), **fields)["code"] == "invalid_request"


def test_ctx_fields_not_read_are_ignored(peer: SpecPeer) -> None:
    # §6.7: "others are ignored"
    ctx = direct(Foo=[1, {"a": None}], Timestamp=17, WasMentioned=True)
    assert resolve(peer, fresh_agent(), ctx)["is_new"] is True
