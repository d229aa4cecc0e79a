"""Unit tests for sessiond_client.entry: the typed entry view and write-time validation.

Pure: dicts in, Structs out.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sessiond_client.entry import KNOWN_FIELD_NAMES, SessionEntry, validate_entry_fields

# DESIGN.md §2, verbatim: the known fields, camelCase.
DESIGN_FIELDS = """
sessionId, updatedAt, sessionFile, spawnedBy, systemSent, abortedLastRun,
chatType, thinkingLevel, verboseLevel, reasoningLevel, elevatedLevel,
responseUsage, providerOverride, modelOverride, authProfileOverride, groupActivation,
groupActivationNeedsSystemIntro, sendPolicy, queueMode, queueDebounceMs, queueCap, queueDrop,
inputTokens, outputTokens, totalTokens, modelProvider, model, contextTokens, compactionCount,
claudeCliSessionId, label, displayName, provider, subject, room, space, lastProvider, lastTo,
lastAccountId, skillsSnapshot
"""
DESIGN_FIELD_NAMES = frozenset(name.strip() for name in DESIGN_FIELDS.split(",") if name.strip())


def full_entry() -> dict[str, Any]:
    return {
        "sessionId": "s-1",
        "updatedAt": 1_700_000_000_000,
        "sessionFile": "/state/s-1.jsonl",
        "spawnedBy": "agent:main:main",
        "systemSent": True,
        "abortedLastRun": False,
        "chatType": "group",
        "thinkingLevel": "high",
        "queueDebounceMs": 1500,
        "inputTokens": 12.5,
        "label": "nightly",
        "lastTo": "+15550001",
        "skillsSnapshot": {"prompt": "p", "skills": [{"name": "x"}]},
    }


def test_known_fields_are_the_designed_ones() -> None:
    assert KNOWN_FIELD_NAMES == DESIGN_FIELD_NAMES


def test_python_attributes_are_snake_case() -> None:
    entry = SessionEntry.from_dict(full_entry())
    assert entry.session_id == "s-1"
    assert entry.updated_at == 1_700_000_000_000
    assert entry.session_file == "/state/s-1.jsonl"
    assert entry.spawned_by == "agent:main:main"
    assert entry.system_sent is True
    assert entry.aborted_last_run is False
    assert entry.chat_type == "group"
    assert entry.queue_debounce_ms == 1500
    assert entry.last_to == "+15550001"
    assert entry.skills_snapshot == {"prompt": "p", "skills": [{"name": "x"}]}
    assert entry.claude_cli_session_id is None
    assert entry.extra == {}


def test_round_trip_is_exact() -> None:
    data = full_entry()
    assert SessionEntry.from_dict(data).to_dict() == data


def test_unknown_fields_are_kept_in_extra_and_written_back() -> None:
    data = {
        **full_entry(),
        "fromANewerGateway": {"nested": [1, 2, 3]},
        "anotherOne": None,
        "weird key with spaces": "v",
    }
    entry = SessionEntry.from_dict(data)
    assert entry.extra == {
        "fromANewerGateway": {"nested": [1, 2, 3]},
        "anotherOne": None,
        "weird key with spaces": "v",
    }
    assert entry.to_dict() == data


@pytest.mark.parametrize(
    ("field", "bad_value"),
    [
        ("chatType", "channel"),
        ("systemSent", "yes"),
        ("label", 42),
        ("queueCap", "ten"),
        ("inputTokens", True),
        ("skillsSnapshot", ["not", "a", "map"]),
        ("sessionFile", {"path": "x"}),
    ],
)
def test_wrong_typed_known_fields_move_to_extra(field: str, bad_value: Any) -> None:
    data = {**full_entry(), field: bad_value}
    entry = SessionEntry.from_dict(data)
    assert entry.extra == {field: bad_value}
    # The other fields still made it into the typed view.
    assert entry.session_id == "s-1"
    assert entry.label == ("nightly" if field != "label" else None)
    # And nothing is lost on the way back.
    assert entry.to_dict() == data


def test_several_misfits_at_once() -> None:
    data = {**full_entry(), "chatType": "dm", "updatedAt": "yesterday", "unknown": 1}
    entry = SessionEntry.from_dict(data)
    assert entry.extra == {"chatType": "dm", "updatedAt": "yesterday", "unknown": 1}
    assert entry.thinking_level == "high"
    assert entry.to_dict() == data


def test_to_dict_omits_absent_fields() -> None:
    entry = SessionEntry(session_id="s", updated_at=5)
    assert entry.to_dict() == {"sessionId": "s", "updatedAt": 5}


def test_to_dict_extra_wins_over_a_typed_value_of_the_same_name() -> None:
    # A misfit moved to extra must be written back as stored, not as the placeholder.
    entry = SessionEntry.from_dict({"sessionId": "s", "updatedAt": "later"})
    assert entry.to_dict() == {"sessionId": "s", "updatedAt": "later"}


def test_typed_struct_encodes_with_camel_case_names() -> None:
    entry = SessionEntry(session_id="s", updated_at=1, last_account_id="acct")
    assert msgspec.json.decode(msgspec.json.encode(entry)) == {
        "sessionId": "s",
        "updatedAt": 1,
        "lastAccountId": "acct",
    }


# --- validate_entry_fields -------------------------------------------------------------


def test_validation_accepts_a_complete_well_typed_entry() -> None:
    validate_entry_fields(full_entry())


def test_validation_accepts_none_for_every_field() -> None:
    # On the wire null deletes a field; it is never a type error.
    validate_entry_fields(dict.fromkeys(DESIGN_FIELD_NAMES))


def test_validation_ignores_unknown_fields() -> None:
    validate_entry_fields({"future": object.__name__, "x": [1, {"y": 2}], "nested": {"a": b""}})


def test_validation_accepts_partial_patches() -> None:
    validate_entry_fields({})
    validate_entry_fields({"label": "x"})
    validate_entry_fields({"updatedAt": 1.5})
    validate_entry_fields({"chatType": "room"})


@pytest.mark.parametrize(
    ("field", "bad_value"),
    [
        ("updatedAt", "x"),
        ("updatedAt", True),
        ("sessionId", 7),
        ("chatType", "channel"),
        ("systemSent", 1),
        ("abortedLastRun", "false"),
        ("queueDebounceMs", "100"),
        ("skillsSnapshot", "snapshot"),
        ("lastTo", ["+1"]),
        ("label", {"text": "x"}),
    ],
)
def test_validation_rejects_wrong_types(field: str, bad_value: Any) -> None:
    with pytest.raises(msgspec.ValidationError) as raised:
        validate_entry_fields({"label": "fine", field: bad_value})
    assert field in str(raised.value)
