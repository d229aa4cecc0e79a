"""Config errors a person can act on: the file, the key as TOML spells it, what was
expected (a type or the allowed values), and the nearest key for a typo."""

from __future__ import annotations

from typing import Any

import pytest

from sessiond.config import ConfigError, build_config

SOURCE = "/etc/sessiond/sessiond.toml"


def error_for(file_data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        build_config(file_data, environ={}, home="/home/bot", source=SOURCE)
    return str(raised.value)


@pytest.mark.parametrize(
    ("file_data", "expected"),
    [
        (
            {"limits": {"max_conections": 3}},
            "[limits] max_conections: unknown key; did you mean 'max_connections'?",
        ),
        ({"log_levl": "debug"}, "log_levl: unknown key; did you mean 'log_level'?"),
        (
            {"agents": {"ops": {"idle_minutes": "ten"}}},
            "[agents.ops] idle_minutes: expected a number, got a string",
        ),
        (
            {"agents": {"ops": {"retention": {"mode": "on"}}}},
            "[agents.ops.retention] mode: 'on' is not one of 'off', 'warn', 'enforce'",
        ),
        (
            {"persistence": {"durability": "always"}},
            "[persistence] durability: 'always' is not one of 'memory', 'debounced', 'journal'",
        ),
        (
            {"limits": {"max_connections": "many"}},
            "[limits] max_connections: expected an integer, got a string",
        ),
        ({"limits": {"max_connections": -1}}, "[limits] max_connections: must be more than 0"),
        ({"agents": {"ops": {"idle_minutes": 0}}}, "[agents.ops] idle_minutes: must be at least 1"),
        (
            {"agents": {"ops": {"retention": {"max_entries": 0}}}},
            "[agents.ops.retention] max_entries: must be at least 1",
        ),
        ({"persistence": {"file_mode": 0o777}}, "[persistence] file_mode: must be one of 0o600"),
        ({"limits": 5}, "limits: expected a table, got an integer"),
    ],
)
def test_errors_name_the_file_and_the_key(file_data: dict[str, Any], expected: str) -> None:
    message = error_for(file_data)
    assert message.startswith(f"{SOURCE}: ")
    assert expected in message
    assert "$." not in message  # never msgspec's JSON path


def test_an_unknown_key_far_from_any_lists_the_known_ones() -> None:
    message = error_for({"retention": {"zzz": 1}})
    assert "[retention] zzz: unknown key (known: " in message and "max_entries" in message
