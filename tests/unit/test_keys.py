"""Unit tests for sessiond_client.keys: the original's session-key rules."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond_client.jscompat import UNDEFINED
from sessiond_client.keys import (
    DEFAULT_AGENT_ID,
    DEFAULT_IDLE_MINUTES,
    DEFAULT_MAIN_KEY,
    DEFAULT_RESET_TRIGGER,
    DEFAULT_RESET_TRIGGERS,
    GroupKeyResolution,
    ParsedAgentSessionKey,
    build_agent_main_session_key,
    build_group_display_name,
    derive_session_key,
    normalize_agent_id,
    normalize_e164,
    normalize_main_key,
    parse_agent_session_key,
    resolve_agent_id_from_session_key,
    resolve_agent_main_session_key,
    resolve_group_session_key,
    resolve_main_session_key,
    resolve_session_key,
)

SAFE_AGENT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
VALID_AGENT_IDS = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}", fullmatch=True)
MESSY_TEXT = st.text(
    alphabet=st.sampled_from("aZ09_-.: /é😀İ\u212a\ufeff\x1c\u00a0#@"), max_size=80
)


def test_constants() -> None:
    assert (DEFAULT_AGENT_ID, DEFAULT_MAIN_KEY) == ("main", "main")
    assert DEFAULT_RESET_TRIGGER == "/new"
    assert DEFAULT_RESET_TRIGGERS == ("/new", "/reset")
    assert DEFAULT_IDLE_MINUTES == 60


class TestAgentIds:
    @pytest.mark.parametrize(
        ("raw", "normalized"),
        [("Main", "Main"), ("ops-", "ops-"), (" ops ", "ops"), ("Ops Team", "ops-team"),
         ("../etc", "etc"), ("_ops", "_ops"), ("café", "caf"), ("日本", "main"), ("", "main"),
         (None, "main"), (UNDEFINED, "main"), ("\u212aelvin", "kelvin"), ("İstanbul", "i-stanbul"),
         ("a" * 65, "a" * 64), ("\x1cfs", "fs")],
    )  # fmt: skip
    def test_normalize_agent_id(self, raw: object, normalized: str) -> None:
        assert normalize_agent_id(raw) == normalized

    def test_non_string_agent_id_raises(self) -> None:
        with pytest.raises(TypeError):
            normalize_agent_id(5)

    @given(MESSY_TEXT)
    def test_normalized_agent_id_is_default_or_a_safe_path_segment(self, raw: str) -> None:
        agent = normalize_agent_id(raw)
        assert agent == DEFAULT_AGENT_ID or SAFE_AGENT_ID.fullmatch(agent)

    @given(VALID_AGENT_IDS)
    def test_valid_ids_are_kept_verbatim(self, agent: str) -> None:
        assert normalize_agent_id(agent) == agent

    def test_main_key_is_trimmed_not_lowercased(self) -> None:
        assert normalize_main_key(" Work ") == "Work"
        assert normalize_main_key("\ufeff\t") == DEFAULT_MAIN_KEY
        assert normalize_main_key("\x1c") == "\x1c"
        with pytest.raises(TypeError):
            normalize_main_key(["x"])


class TestAgentSessionKeys:
    @pytest.mark.parametrize(
        ("key", "parsed"),
        [("agent:Ops:main", ("Ops", "main")), ("agent:::ops:::main", ("ops", "main")),
         ("agent: ops :a:b", ("ops", "a:b")), (" agent:x:y\n", ("x", "y")), ("agent:ops", None),
         ("Agent:ops:main", None), ("agent: :main", None), ("agent:ops: ", None), ("", None),
         (None, None)],
    )  # fmt: skip
    def test_parse(self, key: object, parsed: tuple[str, str] | None) -> None:
        result = parse_agent_session_key(key)
        assert (None if result is None else tuple(result)) == parsed

    def test_parse_result_to_js(self) -> None:
        assert ParsedAgentSessionKey("a", "b").to_js() == {"agentId": "a", "rest": "b"}

    def test_agent_from_key(self) -> None:
        assert resolve_agent_id_from_session_key("agent:a/b:x") == "a-b"
        assert resolve_agent_id_from_session_key("group:123") == DEFAULT_AGENT_ID
        assert resolve_agent_id_from_session_key(None) == DEFAULT_AGENT_ID

    @given(VALID_AGENT_IDS, st.text(alphabet=st.characters(blacklist_characters=":"), max_size=20))
    def test_build_then_parse_round_trips(self, agent: str, main_key: str) -> None:
        key = build_agent_main_session_key(agent_id=agent, main_key=main_key)
        assert parse_agent_session_key(key) == (agent, normalize_main_key(main_key))
        assert resolve_agent_id_from_session_key(key) == agent

    def test_main_session_keys(self) -> None:
        assert build_agent_main_session_key(agent_id=" ops ") == "agent:ops:main"
        assert resolve_agent_main_session_key(agent_id="x", cfg={"session": {"mainKey": "W"}}) == (
            "agent:x:W"
        )
        assert resolve_agent_main_session_key(agent_id="x", cfg="not a config") == "agent:x:main"


class TestMainSessionKey:
    def test_global_scope(self) -> None:
        assert resolve_main_session_key({"session": {"scope": "global"}}) == "global"
        assert resolve_main_session_key({"session": {"scope": "GLOBAL"}}) == "agent:main:main"

    def test_default_agent_and_main_key(self) -> None:
        cfg = {"agents": {"list": [{"id": "ops"}, {"id": "dev", "default": "yes"}]},
               "session": {"mainKey": " Work "}}  # fmt: skip
        assert resolve_main_session_key(cfg) == "agent:dev:Work"

    def test_default_agent_without_id_falls_back_to_first_entry(self) -> None:
        cfg = {"agents": {"list": [{"id": "first"}, {"default": True}]}}
        assert resolve_main_session_key(cfg) == "agent:first:main"

    def test_no_config(self) -> None:
        assert resolve_main_session_key() == "agent:main:main"
        assert resolve_main_session_key({"agents": {"list": [None]}}) == "agent:main:main"

    def test_non_list_agents_raise(self) -> None:
        with pytest.raises(TypeError):
            resolve_main_session_key({"agents": {"list": {"id": "x"}}})


class TestPhoneNumbers:
    @pytest.mark.parametrize(
        ("raw", "e164"),
        [("+1 (555) 123-4567", "+15551234567"), ("whatsapp:+1555", "+1555"),
         ("whatsapp:whatsapp:+1555", "+1555"), ("1+2", "+1+2"), ("abc", "+"),
         ("\u0661\u0662\u0663\u0664", "+"), ("\ufeff+1555", "+1555"), ("+\u0661\u0662\u0663", "+")],
    )  # fmt: skip
    def test_normalize_e164(self, raw: str, e164: str) -> None:
        assert normalize_e164(raw) == e164

    @pytest.mark.parametrize("raw", [12345, None, UNDEFINED, ["+1"]])
    def test_non_strings_raise(self, raw: object) -> None:
        with pytest.raises(TypeError):
            normalize_e164(raw)

    @given(st.text(max_size=40))
    def test_output_shape(self, raw: str) -> None:
        e164 = normalize_e164(raw)
        assert e164.startswith("+")
        assert set(e164) <= set("+0123456789")


class TestGroupKeys:
    def test_legacy_group_without_provider(self) -> None:
        resolved = resolve_group_session_key({"From": "group:  padded  "})
        assert resolved == GroupKeyResolution(
            "group:padded", "padded", "group", None, "group:padded"
        )
        assert resolved is not None
        assert list(resolved.to_js()) == ["key", "id", "legacyKey", "chatType"]

    def test_provider_from_sender_wins_over_hint(self) -> None:
        resolved = resolve_group_session_key(
            {"From": "group:discord:channel:123", "Provider": "whatsapp"}
        )
        assert resolved == GroupKeyResolution(
            "discord:channel:123", "123", "room", "discord", "group:123"
        )

    def test_provider_hint_and_missing_legacy_key(self) -> None:
        resolved = resolve_group_session_key(
            {"From": "unknownprov:123", "ChatType": " Group ", "Provider": "Discord "}
        )
        assert resolved is not None
        assert resolved.key == "discord:group:unknownprov:123"
        assert resolved.to_js()["legacyKey"] is UNDEFINED

    def test_whatsapp_jid_is_a_group(self) -> None:
        resolved = resolve_group_session_key({"From": "12345-678@g.us", "Provider": "whatsapp"})
        assert resolved is not None
        assert (resolved.key, resolved.legacy_key) == (
            "whatsapp:group:12345-678@g.us",
            "group:12345-678@g.us",
        )

    @pytest.mark.parametrize(
        "ctx",
        [{"From": "slack:C1", "ChatType": "channel"}, {"From": "\x1cgroup:123"},
         {"From": "\u200bgroup:1"}, {"From": "   "}, {"From": 12345, "ChatType": "group"}, {}],
    )  # fmt: skip
    def test_not_a_group(self, ctx: dict[str, object]) -> None:
        assert resolve_group_session_key(ctx) is None

    def test_bom_is_trimmed(self) -> None:
        resolved = resolve_group_session_key({"From": "\ufeffgroup:123"})
        assert resolved is not None and resolved.key == "group:123"

    def test_non_string_fields_raise_only_when_read(self) -> None:
        with pytest.raises(TypeError):
            resolve_group_session_key({"From": "whatsapp:1", "ChatType": 5})
        with pytest.raises(TypeError):
            resolve_group_session_key({"From": "group:1", "Provider": 7})
        assert resolve_group_session_key({"From": "", "ChatType": 5}) is None
        assert resolve_group_session_key({"From": "+1", "Provider": 7}) is None
        with pytest.raises(TypeError):
            resolve_group_session_key(None)


class TestGroupDisplayNames:
    def test_room_and_space(self) -> None:
        assert build_group_display_name("k", provider="Discord", room="general", space="Guild") == (
            "discord:guild#general"
        )

    def test_subject_gets_g_prefix(self) -> None:
        assert build_group_display_name("k", provider="whatsapp", subject="Family Chat") == (
            "whatsapp:g-family-chat"
        )

    def test_hash_dropped_without_room_but_kept_for_blank_room(self) -> None:
        assert build_group_display_name("k", provider="slack", subject="#ops") == "slack:g-ops"
        assert build_group_display_name("k", provider="slack", subject="#ops", room=" ") == (
            "slack:#ops"
        )

    def test_falls_back_to_id_then_key(self) -> None:
        assert build_group_display_name("group:123", group_id=" ") == "group:g-123"
        assert build_group_display_name("group:x", group_id="ID") == "group:g-id"

    def test_unusable_label_gives_provider_only(self) -> None:
        assert build_group_display_name("group:😀😀😀😀😀😀😀😀", provider="x") == "x"

    def test_non_string_key_raises_when_needed(self) -> None:
        with pytest.raises(TypeError):
            build_group_display_name(None)
        assert build_group_display_name(None, group_id="abc") == "group:g-abc"


class TestSessionKeys:
    def test_derive(self) -> None:
        assert derive_session_key("global", {"From": "+1"}) == "global"
        assert derive_session_key("per-sender", {"From": "whatsapp:+1 555"}) == "+1555"
        assert derive_session_key("per-sender", {"From": "abc"}) == "+"
        assert derive_session_key("per-sender", {}) == "unknown"
        assert derive_session_key("per-sender", {"From": "slack:C1", "ChatType": "room"}) == "+1"
        assert derive_session_key("per-sender", {"From": "group:", "Provider": "whatsapp"}) == (
            "whatsapp:group:group:"
        )

    def test_derive_raises_on_truthy_non_string_sender(self) -> None:
        with pytest.raises(TypeError):
            derive_session_key("per-sender", {"From": 12345})
        assert derive_session_key("per-sender", {"From": 0}) == "unknown"

    def test_resolve(self) -> None:
        assert resolve_session_key("per-sender", {"SessionKey": " custom "}) == "custom"
        assert resolve_session_key("per-sender", {"From": "+1"}, " Work ") == "agent:main:Work"
        assert resolve_session_key("per-sender", {"From": "group:1"}) == "agent:main:group:1"
        assert resolve_session_key("global", {"From": "group:1"}) == "global"
        with pytest.raises(TypeError):
            resolve_session_key("per-sender", {"SessionKey": 5})

    @given(st.dictionaries(st.sampled_from(["From", "ChatType", "Provider"]), MESSY_TEXT))
    def test_direct_chats_share_the_main_session(self, ctx: dict[str, str]) -> None:
        key = resolve_session_key("per-sender", ctx)
        group = resolve_group_session_key(ctx)
        if group is None:
            assert key == "agent:main:main"
        else:
            assert key == f"agent:main:{group.key}"
