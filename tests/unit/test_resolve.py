"""Unit tests for sessiond.resolve end to end on an in-memory store with an injected clock.

Pure: a :class:`~sessiond.store.SessionStore` with a settable clock and numbered session
ids, no sockets. Covers DESIGN.md §4 ``resolve``: new sessions, reuse within the idle
window, expiry, ``/new``/``/reset`` (exact, with a trailing message, unauthorized), group
and channel metadata, thread labels and topics, legacy key migration, the original's
``updateLastRoute`` bug not reproduced, and per-agent settings with request overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import pytest

from sessiond.config import AgentSessionConfig
from sessiond.dedup import RequestMemory
from sessiond.entries import encode_entry
from sessiond.resolve import (
    PER_SESSION_FIELDS,
    ResolveOptions,
    resolve_session,
    session_key_for,
)
from sessiond.store import Change, SessionStore
from sessiond_client.errors import ConflictError, InvalidRequestError
from sessiond_client.protocol import ResolveRequest, ResolveResult

T0 = 1_700_000_000_000
MINUTE_MS = 60_000
TRANSCRIPTS = "/state/agents/main/sessions"
DIRECT = {"From": "+15551234567", "Provider": "whatsapp"}


class Clock:
    def __init__(self) -> None:
        self.now_ms = T0

    def __call__(self) -> int:
        return self.now_ms


class World:
    """A store, its clock and a resolve() that uses them."""

    def __init__(self, agent: str = "main") -> None:
        self.clock = Clock()
        self.ids = 0
        self.store = SessionStore(
            agent,
            clock_ms=self.clock,
            new_session_id=self.next_id,
            on_change=self.note,
            requests=RequestMemory(max_entries=100, ttl_s=60.0, clock_s=lambda: 0.0),
        )
        self.changes: list[Change] = []

    def next_id(self) -> str:
        self.ids += 1
        return f"sess-{self.ids}"

    def note(self, change: Change) -> None:
        self.changes.append(change)

    def resolve(
        self,
        ctx: Mapping[str, Any],
        *,
        token: str | None = None,
        if_revision: str | None = None,
        **options: Any,
    ) -> ResolveResult:
        """The result with its entry decoded (it travels as msgpack bytes)."""
        result = resolve_session(
            self.store,
            ctx,
            ResolveOptions(**options),
            check_key=lambda key: key,
            transcripts_dir=TRANSCRIPTS,
            token=token,
            if_revision=if_revision,
        )
        assert isinstance(result.entry, msgspec.Raw)
        return msgspec.structs.replace(result, entry=msgspec.msgpack.decode(result.entry))

    def later(self, minutes: float) -> None:
        self.clock.now_ms += int(minutes * MINUTE_MS)

    def entry(self, key: str) -> Any:
        stored = self.store.get(key)
        assert stored is not None
        return stored.value()


@pytest.fixture
def world() -> World:
    return World()


def test_a_first_message_creates_a_session(world: World) -> None:
    result = world.resolve({**DIRECT, "Body": "hello"})
    assert result.session_key == "agent:main:main"
    assert (result.session_id, result.is_new, result.reset_triggered) == ("sess-1", True, False)
    assert result.body_stripped is None
    assert result.entry == {
        "sessionId": "sess-1",
        "updatedAt": T0,
        "systemSent": False,
        "abortedLastRun": False,
        "chatType": "direct",
        "sessionFile": f"{TRANSCRIPTS}/sess-1.jsonl",
    }
    assert world.entry("agent:main:main") == result.entry
    assert result.revision == world.store.get("agent:main:main").revision  # type: ignore[union-attr]


def test_a_session_is_reused_within_the_idle_window(world: World) -> None:
    world.resolve(DIRECT)
    world.store.patch("agent:main:main", {"systemSent": True, "thinkingLevel": "high"})
    world.later(60)  # exactly the default 60 minutes still counts (<=)
    result = world.resolve(DIRECT)
    assert (result.session_id, result.is_new) == ("sess-1", False)
    assert result.entry["updatedAt"] == world.clock.now_ms
    assert result.entry["systemSent"] is True
    assert result.entry["thinkingLevel"] == "high"


def test_a_session_expires_after_the_idle_window(world: World) -> None:
    world.resolve(DIRECT)
    settings = dict.fromkeys(PER_SESSION_FIELDS, "x")
    kept = {"label": "mine", "elevatedLevel": "on", "authProfileOverride": "p", "custom": 1}
    world.store.patch("agent:main:main", {**settings, **kept, "systemSent": True})
    world.later(60 + 1 / 60)  # one second past the window
    result = world.resolve(DIRECT)
    assert (result.session_id, result.is_new, result.reset_triggered) == ("sess-2", True, False)
    for name in PER_SESSION_FIELDS:
        assert name not in result.entry
    assert {name: result.entry[name] for name in kept} == kept
    assert (result.entry["systemSent"], result.entry["abortedLastRun"]) == (False, False)
    assert result.entry["sessionFile"] == f"{TRANSCRIPTS}/sess-2.jsonl"


def test_idle_minutes_below_one_are_raised_to_one() -> None:
    request = ResolveRequest(id=1, ctx={}, idle_minutes=0)
    assert ResolveOptions.from_request(request, AgentSessionConfig()).idle_minutes == 1


@pytest.mark.parametrize("trigger", ["/new", "/reset"])
def test_an_exact_trigger_resets_a_fresh_session(world: World, trigger: str) -> None:
    world.resolve(DIRECT)
    world.store.patch("agent:main:main", {"modelOverride": "gpt", "label": "kept"})
    result = world.resolve({**DIRECT, "Body": f"  {trigger.upper()} "})
    assert (result.session_id, result.is_new, result.reset_triggered) == ("sess-2", True, True)
    assert result.body_stripped == ""
    assert "modelOverride" not in result.entry
    assert result.entry["label"] == "kept"


@pytest.mark.parametrize(
    ("body", "rest"),
    [
        ("[Jan 1 10:00] Peter: /NEW Hello World", "hello world"),
        ("/reset   Spaced   Out", "spaced out"),
        ("older line\nPeter: /new again", None),  # the text does not start with the trigger
        ("[Chat history]\nAnn: hi\n[Current message - respond to this]\nBob: /new Go", "go"),
        ("Ann:\u2028/new after a JS line break", "after a js line break"),
    ],
)
def test_a_trigger_with_a_message_yields_the_stripped_body(
    world: World, body: str, rest: str | None
) -> None:
    result = world.resolve({**DIRECT, "Body": body})
    assert result.body_stripped == rest
    assert result.reset_triggered is (rest is not None)


def test_command_body_and_raw_body_come_before_body(world: World) -> None:
    ctx = {**DIRECT, "Body": "[ctx] Peter: /new from body", "RawBody": "plain text"}
    assert world.resolve(ctx).reset_triggered is False  # RawBody wins, even when present
    ctx = {**DIRECT, "Body": "hello", "RawBody": "hi", "CommandBody": "/reset now"}
    assert world.resolve(ctx).body_stripped == "now"
    assert world.resolve({**DIRECT, "RawBody": "", "Body": "/new"}).reset_triggered is False


def test_an_unauthorized_sender_cannot_reset(world: World) -> None:
    first = world.resolve(DIRECT)
    result = world.resolve({**DIRECT, "Body": "/new hello"}, authorized=False)
    assert (result.session_id, result.is_new, result.reset_triggered) == (
        first.session_id,
        False,
        False,
    )
    assert result.body_stripped is None


def test_custom_triggers_replace_the_defaults_and_empty_means_default(world: World) -> None:
    assert (
        world.resolve({**DIRECT, "Body": "/new"}, reset_triggers=("!fresh",)).reset_triggered
        is False
    )
    assert (
        world.resolve({**DIRECT, "Body": "!fresh x"}, reset_triggers=("!fresh",)).body_stripped
        == "x"
    )
    request = ResolveRequest(id=1, ctx={}, reset_triggers=[])
    options = ResolveOptions.from_request(request, AgentSessionConfig(reset_triggers=[]))
    assert options.reset_triggers == ("/new", "/reset")


def test_mentions_are_stripped_in_groups_only(world: World) -> None:
    group = {"From": "12036@g.us", "Provider": "whatsapp", "ChatType": "group"}
    assert world.resolve({**group, "Body": "@15550001111 /new hi"}).body_stripped == "hi"
    assert world.resolve({**group, "Body": "/new"}).is_new
    discord = {"From": "discord:channel:123", "Provider": "discord"}
    assert world.resolve({**discord, "Body": "<@987> /reset"}).body_stripped == ""
    assert world.resolve({**DIRECT, "Body": "@15550001111 /new hi"}).reset_triggered is False


@pytest.mark.parametrize(
    ("ctx", "key", "metadata"),
    [
        (
            {"From": "12036@g.us", "Provider": "whatsapp", "GroupSubject": " Family "},
            "agent:main:whatsapp:group:12036@g.us",
            {"chatType": "group", "provider": "whatsapp", "subject": "Family"},
        ),
        (
            {"From": "discord:channel:123", "GroupSubject": "#general", "GroupSpace": "guild"},
            "agent:main:discord:channel:123",
            {"chatType": "room", "provider": "discord", "room": "#general", "space": "guild"},
        ),
        (
            {"From": "slack:channel:C1", "GroupRoom": "#ops"},
            "agent:main:slack:channel:C1",
            {"chatType": "room", "provider": "slack", "room": "#ops"},
        ),
        (
            {"From": "telegram:group:-100123", "GroupSubject": "Friends"},
            "agent:main:telegram:group:-100123",
            {"chatType": "group", "provider": "telegram", "subject": "Friends"},
        ),
    ],
)
def test_group_and_channel_sessions_get_their_metadata(
    world: World, ctx: dict[str, str], key: str, metadata: dict[str, str]
) -> None:
    result = world.resolve(ctx)
    assert result.session_key == key
    assert {name: result.entry.get(name) for name in metadata} == metadata
    expected_names = {
        "agent:main:whatsapp:group:12036@g.us": "whatsapp:g-family",
        "agent:main:discord:channel:123": "discord:guild#general",
        "agent:main:slack:channel:C1": "slack:#ops",
        "agent:main:telegram:group:-100123": "telegram:g-friends",
    }
    assert result.entry["displayName"] == expected_names[key]


def test_a_thread_label_names_the_session_and_a_thread_id_its_transcript(world: World) -> None:
    ctx = {"From": "slack:channel:C1", "ThreadLabel": " Release plan ", "MessageThreadId": 42}
    result = world.resolve(ctx)
    assert result.entry["displayName"] == "Release plan"
    assert result.entry["sessionFile"] == f"{TRANSCRIPTS}/sess-1-topic-42.jsonl"


def test_a_legacy_group_entry_moves_to_the_new_key(world: World) -> None:
    legacy = {"sessionId": "old", "updatedAt": T0, "label": "keep me"}
    world.store.set("group:12036@g.us", encode_entry(legacy))
    world.later(1)
    result = world.resolve({"From": "12036@g.us", "Provider": "whatsapp"})
    assert result.session_key == "agent:main:whatsapp:group:12036@g.us"
    assert (result.session_id, result.is_new) == ("old", False)
    assert result.entry["label"] == "keep me"
    assert world.store.get("group:12036@g.us") is None


def test_a_legacy_entry_does_not_replace_an_existing_new_one(world: World) -> None:
    world.store.set("group:12036@g.us", encode_entry({"sessionId": "old", "updatedAt": T0}))
    key = "agent:main:whatsapp:group:12036@g.us"
    world.store.set(key, encode_entry({"sessionId": "new", "updatedAt": T0}))
    assert world.resolve({"From": "12036@g.us", "Provider": "whatsapp"}).session_id == "new"
    assert world.store.get("group:12036@g.us") is not None


def test_a_route_update_does_not_keep_an_idle_session_alive(world: World) -> None:
    first = world.resolve(DIRECT)
    world.later(59)
    world.store.update_last_route("agent:main:main", provider="whatsapp", to="+1", account_id=None)
    world.later(2)  # 61 minutes after the last message, 2 after the delivery receipt
    result = world.resolve(DIRECT)
    assert result.is_new and result.session_id != first.session_id
    assert result.entry["lastTo"] == "+1"  # route fields are kept


def test_a_touching_route_update_counts_as_activity(world: World) -> None:
    world.resolve(DIRECT)
    world.later(59)
    world.store.update_last_route(
        "agent:main:main", provider="x", to="y", account_id=None, touch=True
    )
    world.later(2)
    assert world.resolve(DIRECT).is_new is False


def test_agent_settings_apply_and_a_request_overrides_them() -> None:
    agent = AgentSessionConfig(scope="global", idle_minutes=5, reset_triggers=["/start"])
    options = ResolveOptions.from_request(ResolveRequest(id=1, ctx={}), agent)
    assert (options.scope, options.idle_minutes, options.reset_triggers) == (
        "global",
        5,
        ("/start",),
    )
    request = ResolveRequest(
        id=2, ctx={}, scope="per-sender", idle_minutes=30, reset_triggers=["/x"], main_key="home"
    )
    options = ResolveOptions.from_request(request, agent)
    assert (options.scope, options.idle_minutes, options.reset_triggers) == (
        "per-sender",
        30,
        ("/x",),
    )
    assert options.main_key == "home"


def test_scope_and_main_key_shape_the_key(world: World) -> None:
    assert world.resolve(DIRECT, scope="global").session_key == "global"
    assert world.resolve(DIRECT, main_key="home").session_key == "agent:main:home"


def test_a_fresh_entry_without_a_session_id_starts_a_new_session(world: World) -> None:
    world.store.set("agent:main:main", encode_entry({"updatedAt": T0, "label": "l"}))
    result = world.resolve(DIRECT)
    assert (result.session_id, result.is_new, result.entry["label"]) == ("sess-1", True, "l")


def test_a_null_entry_is_replaced(world: World) -> None:
    world.store.set("agent:main:main", encode_entry(None))
    assert world.resolve(DIRECT).is_new


def test_a_non_string_text_field_is_an_invalid_request(world: World) -> None:
    with pytest.raises(InvalidRequestError):
        world.resolve({**DIRECT, "CommandBody": 5})


# --- the result's entry -----------------------------------------------------------------------


def test_the_result_entry_is_the_stored_entry_as_msgpack(world: World) -> None:
    result = resolve_session(
        world.store, DIRECT, ResolveOptions(), check_key=lambda key: key, transcripts_dir="/t"
    )
    assert isinstance(result.entry, msgspec.Raw)
    stored = world.store.get(result.session_key)
    assert stored is not None
    assert msgspec.msgpack.decode(result.entry) == stored.value()
    assert bytes(result.entry) == bytes(world.store.wire_value(result.session_key, stored))


def test_a_resolve_reports_its_change_with_its_token_and_op(world: World) -> None:
    result = world.resolve(DIRECT, token="tok-1")
    stored = world.store.get(result.session_key)
    assert world.changes == [Change(1, "agent:main:main", stored, "tok-1", "resolve")]
    remembered = world.store.requests.lookup("tok-1")
    assert remembered is not None
    assert (remembered.key, remembered.op, remembered.seq) == ("agent:main:main", "resolve", 1)


def test_a_legacy_key_move_is_reported_as_part_of_the_resolve(world: World) -> None:
    world.store.entries["group:12036@g.us"] = encode_entry({"sessionId": "old", "updatedAt": T0})
    world.resolve({"From": "12036@g.us", "Provider": "whatsapp"}, token="tok")
    new_key = "agent:main:whatsapp:group:12036@g.us"
    assert [(c.key, c.entry is None, c.op) for c in world.changes] == [
        (new_key, False, "resolve"),
        ("group:12036@g.us", True, "resolve"),
        (new_key, False, "resolve"),
    ]
    # Only the final change completes the request (and carries its token).
    assert [c.token for c in world.changes] == [None, None, "tok"]
    assert world.store.seq == 3


# --- keys of other agents ---------------------------------------------------------------------


@pytest.fixture
def ops() -> World:
    return World("ops")


def test_a_direct_session_of_another_agent_is_spelled_with_its_id(ops: World) -> None:
    result = ops.resolve(DIRECT)
    assert result.session_key == "agent:ops:main"
    assert ops.store.get("agent:ops:main") is not None
    assert ops.store.get("agent:main:main") is None


def test_the_global_scope_of_another_agent_is_its_own_global_key(ops: World) -> None:
    assert ops.resolve(DIRECT, scope="global").session_key == "agent:ops:global"


def test_the_default_agent_keeps_the_gateway_keys(world: World) -> None:
    assert world.resolve(DIRECT).session_key == "agent:main:main"
    assert world.resolve(DIRECT, scope="global").session_key == "global"


def test_a_main_key_and_a_group_key_of_another_agent(ops: World) -> None:
    assert ops.resolve(DIRECT, main_key="home").session_key == "agent:ops:home"
    group = ops.resolve({"From": "12036@g.us", "Provider": "whatsapp"})
    assert group.session_key == "agent:ops:whatsapp:group:12036@g.us"


@pytest.mark.parametrize(
    ("agent", "scope", "expected"),
    [
        ("main", "per-sender", "agent:main:main"),
        ("main", "global", "global"),
        ("ops", "per-sender", "agent:ops:main"),
        ("ops", "global", "agent:ops:global"),
        ("Team_2", "per-sender", "agent:Team_2:main"),
    ],
)
def test_session_key_for(agent: str, scope: str, expected: str) -> None:
    assert session_key_for(agent, ResolveOptions(scope=scope), DIRECT) == expected


def test_an_explicit_session_key_of_the_agent_is_used_as_given(ops: World) -> None:
    result = ops.resolve({**DIRECT, "SessionKey": "agent:ops:custom:thing"})
    assert result.session_key == "agent:ops:custom:thing"


@pytest.mark.parametrize(
    ("agent", "session_key"),
    [("ops", "agent:main:main"), ("ops", "global"), ("ops", "custom"), ("main", "agent:ops:x")],
)
def test_an_explicit_session_key_of_another_agent_is_refused(agent: str, session_key: str) -> None:
    world = World(agent)
    with pytest.raises(InvalidRequestError) as raised:
        world.resolve({**DIRECT, "SessionKey": session_key})
    assert repr(agent) in str(raised.value)
    assert world.changes == []
    assert len(world.store) == 0


def test_an_explicit_session_key_of_the_default_agent_is_kept(world: World) -> None:
    assert world.resolve({**DIRECT, "SessionKey": "custom"}).session_key == "custom"


# --- if_revision ------------------------------------------------------------------------------


def test_resolve_with_the_current_revision_applies(world: World) -> None:
    first = world.resolve(DIRECT)
    world.later(1)
    second = world.resolve(DIRECT, if_revision=first.revision)
    assert (second.session_id, second.is_new) == (first.session_id, False)
    assert second.revision != first.revision


def test_resolve_with_a_stale_revision_conflicts_and_changes_nothing(world: World) -> None:
    first = world.resolve(DIRECT)
    world.later(1)
    world.store.patch("agent:main:main", {"label": "moved on"})
    current = world.store.get("agent:main:main")
    seq, ids = world.store.seq, world.ids
    with pytest.raises(ConflictError):
        world.resolve({**DIRECT, "Body": "/new"}, if_revision=first.revision, token="t")
    assert world.store.get("agent:main:main") is current
    assert (world.store.seq, world.ids) == (seq, ids)
    assert world.store.requests.lookup("t") is None


def test_resolve_with_a_revision_of_a_missing_session_conflicts(world: World) -> None:
    with pytest.raises(ConflictError):
        world.resolve(DIRECT, if_revision="0123456789abcdef")
    assert len(world.store) == 0
    assert world.changes == []


def test_if_revision_names_the_legacy_entry_that_will_move(world: World) -> None:
    legacy = encode_entry({"sessionId": "old", "updatedAt": T0})
    world.store.entries["group:12036@g.us"] = legacy
    ctx = {"From": "12036@g.us", "Provider": "whatsapp"}
    with pytest.raises(ConflictError):
        world.resolve(ctx, if_revision="0123456789abcdef")
    assert world.store.entries["group:12036@g.us"] is legacy  # not moved
    assert world.changes == []
    result = world.resolve(ctx, if_revision=legacy.revision)
    assert (result.session_key, result.session_id) == (
        "agent:main:whatsapp:group:12036@g.us",
        "old",
    )
