"""Unit tests for sessiond.config: defaults, validation, and flags > env > file > defaults.

Pure: the environment and home are injected. The ``load_config_file`` tests read small
TOML files from pytest's ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sessiond.config import (
    AgentSessionConfig,
    Config,
    ConfigError,
    build_config,
    load_config_file,
)

HOME = "/home/bot"
DEFAULT_STATE_DIR = "/home/bot/.local/state/sessiond"


def build(
    file_data: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    state_dir_flag: str | None = None,
    socket_flag: str | None = None,
) -> Config:
    return build_config(
        file_data or {},
        environ=environ or {},
        home=HOME,
        state_dir_flag=state_dir_flag,
        socket_flag=socket_flag,
    )


# --- defaults -----------------------------------------------------------------------------


def test_defaults() -> None:
    config = build()
    assert config.state_dir == DEFAULT_STATE_DIR
    assert config.socket_path == f"{DEFAULT_STATE_DIR}/sessiond.sock"
    assert config.store_path == f"{DEFAULT_STATE_DIR}/agents/{{agentId}}/sessions/sessions.json"
    assert config.limits.max_frame_bytes == 16 * 1024 * 1024
    assert config.persistence.durability == "journal"
    assert config.persistence.snapshot_format == "pretty"
    assert config.persistence.on_corrupt == "move-aside"
    # DESIGN.md §6: flush after about 100 ms, at the latest after about 1 s.
    assert config.persistence.flush_delay_s == pytest.approx(0.1)
    assert config.persistence.flush_max_delay_s == pytest.approx(1.0)
    assert config.session.scope == "per-sender"
    assert config.session.idle_minutes == 60
    assert config.session.reset_triggers == ["/new", "/reset"]
    assert config.access.socket_mode == 0o660


# --- state dir ----------------------------------------------------------------------------


def test_state_dir_flag_beats_everything() -> None:
    config = build(
        {"state_dir": "/from/file"},
        {"SESSIOND_STATE_DIR": "/from/env", "STATE_DIRECTORY": "/systemd"},
        state_dir_flag="/from/flag",
    )
    assert config.state_dir == "/from/flag"


def test_state_dir_env_beats_the_file() -> None:
    config = build({"state_dir": "/from/file"}, {"SESSIOND_STATE_DIR": "/from/env"})
    assert config.state_dir == "/from/env"


def test_state_dir_file_beats_the_default_locations() -> None:
    environ = {"STATE_DIRECTORY": "/systemd", "XDG_STATE_HOME": "/xdg"}
    assert build({"state_dir": "/from/file"}, environ).state_dir == "/from/file"


def test_systemd_state_directory_beats_xdg() -> None:
    environ = {"STATE_DIRECTORY": "/var/lib/sessiond", "XDG_STATE_HOME": "/xdg"}
    assert build({}, environ).state_dir == "/var/lib/sessiond"


def test_xdg_state_home() -> None:
    assert build({}, {"XDG_STATE_HOME": "/xdg"}).state_dir == "/xdg/sessiond"


def test_empty_values_fall_through() -> None:
    config = build({"state_dir": ""}, {"SESSIOND_STATE_DIR": ""}, state_dir_flag="")
    assert config.state_dir == DEFAULT_STATE_DIR


def test_state_dir_is_made_absolute() -> None:
    config = build(state_dir_flag="relative/dir")
    assert Path(config.state_dir).is_absolute()
    assert config.state_dir == str(Path("relative/dir").absolute())


def test_state_dir_tilde_is_expanded() -> None:
    config = build(state_dir_flag="~/.clawdbot")
    assert config.state_dir == str(Path("~/.clawdbot").expanduser())
    assert "~" not in config.state_dir


def test_derived_paths_follow_the_chosen_state_dir() -> None:
    config = build(state_dir_flag="/srv/state")
    assert config.socket_path == "/srv/state/sessiond.sock"
    assert config.store_path == "/srv/state/agents/{agentId}/sessions/sessions.json"


def test_explicit_store_path_is_kept() -> None:
    config = build({"store_path": "/data/{agentId}.json"})
    assert config.store_path == "/data/{agentId}.json"


# --- socket -------------------------------------------------------------------------------


def test_socket_precedence() -> None:
    environ = {"SESSIOND_SOCKET": "/env.sock", "RUNTIME_DIRECTORY": "/run/sessiond"}
    file_data = {"socket_path": "/file.sock"}
    assert build(file_data, environ, socket_flag="/flag.sock").socket_path == "/flag.sock"
    assert build(file_data, environ).socket_path == "/env.sock"
    del environ["SESSIOND_SOCKET"]
    assert build(file_data, environ).socket_path == "/file.sock"
    assert build({}, environ).socket_path == "/run/sessiond/sessiond.sock"
    assert build({}, {"XDG_RUNTIME_DIR": "/run/user/7"}).socket_path == (
        "/run/user/7/sessiond.sock"
    )


def test_socket_path_longer_than_a_sockaddr_is_refused() -> None:
    build(socket_flag="/" + "s" * 106)  # 107 bytes: the most AF_UNIX takes
    with pytest.raises(ConfigError, match="107"):
        build(socket_flag="/" + "s" * 107)


def test_a_long_state_dir_needs_an_explicit_socket() -> None:
    long_dir = "/" + "d" * 120
    with pytest.raises(ConfigError):
        build(state_dir_flag=long_dir)
    assert build(state_dir_flag=long_dir, socket_flag="/run/s.sock").state_dir == long_dir


# --- file validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "file_data",
    [
        {"no_such_setting": 1},
        {"limits": {"max_frame_byte": 5}},
        {"persistence": {"durabilty": "memory"}},
        {"access": {"allowed_users": [1]}},
        {"session": {"idle": 5}},
        {"agents": {"ops": {"scope": "global", "typo": True}}},
    ],
)
def test_unknown_keys_are_errors(file_data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        build(file_data)


@pytest.mark.parametrize(
    "file_data",
    [
        {"limits": {"max_connections": "many"}},
        {"limits": {"max_connections": True}},
        {"persistence": {"durability": "eventually"}},
        {"persistence": {"snapshot_format": "yaml"}},
        {"persistence": {"on_corrupt": "ignore"}},
        {"session": {"scope": "per-channel"}},
        {"log_level": "verbose"},
        {"limits": []},
    ],
)
def test_wrong_types_and_values_are_errors(file_data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        build(file_data)


def test_file_values_are_used() -> None:
    config = build(
        {
            "log_level": "debug",
            "limits": {"max_frame_bytes": 1024, "max_list_limit": 50},
            "persistence": {"durability": "debounced", "snapshot_format": "compact"},
            "access": {"allowed_uids": [1000], "socket_mode": 0o600},
        }
    )
    assert config.log_level == "debug"
    assert config.limits.max_frame_bytes == 1024
    assert config.limits.max_list_limit == 50
    assert config.limits.max_connections == 1024  # untouched settings keep their default
    assert config.persistence.durability == "debounced"
    assert config.persistence.snapshot_format == "compact"
    assert config.access.allowed_uids == [1000]
    assert config.access.socket_mode == 0o600


def test_per_agent_session_config() -> None:
    config = build(
        {
            "session": {"idle_minutes": 30},
            "agents": {"ops": {"scope": "global", "reset_triggers": ["/fresh"]}},
        }
    )
    assert config.session_config_for("main") == AgentSessionConfig(idle_minutes=30)
    ops = config.session_config_for("ops")
    assert ops.scope == "global"
    assert ops.reset_triggers == ["/fresh"]


# --- range checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "name"),
    [
        ("limits", "max_connections"),
        ("limits", "max_inflight_per_connection"),
        ("limits", "max_frame_bytes"),
        ("limits", "max_key_bytes"),
        ("limits", "max_entry_bytes"),
        ("limits", "max_keys_per_request"),
        ("limits", "max_list_limit"),
        ("limits", "frame_timeout_s"),
        ("persistence", "flush_max_delay_s"),
        ("persistence", "journal_fsync_interval_s"),
        ("persistence", "retry_initial_s"),
    ],
)
@pytest.mark.parametrize("bad", [0, -1])
def test_sizes_and_intervals_must_be_positive(section: str, name: str, bad: int) -> None:
    with pytest.raises(ConfigError, match=name):
        build({section: {name: bad}})
    build({section: {name: 1}})


def test_shutdown_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        build({"shutdown_timeout_s": 0})


def test_flush_delay_must_be_within_the_max_delay() -> None:
    build({"persistence": {"flush_delay_s": 0}})
    build({"persistence": {"flush_delay_s": 1.0, "flush_max_delay_s": 1.0}})
    with pytest.raises(ConfigError):
        build({"persistence": {"flush_delay_s": -0.1}})
    with pytest.raises(ConfigError):
        build({"persistence": {"flush_delay_s": 2.0, "flush_max_delay_s": 1.0}})


def test_idle_minutes_must_be_at_least_one() -> None:
    build({"session": {"idle_minutes": 1}})
    with pytest.raises(ConfigError):
        build({"session": {"idle_minutes": 0.5}})
    with pytest.raises(ConfigError):
        build({"agents": {"ops": {"idle_minutes": 0}}})


# --- the file itself ------------------------------------------------------------------------


def test_load_config_file(tmp_path: Path) -> None:
    path = tmp_path / "sessiond.toml"
    path.write_text(
        'state_dir = "/srv/sessiond"\n\n[limits]\nmax_list_limit = 10\n\n'
        '[agents.ops]\nscope = "global"\n',
        encoding="utf-8",
    )
    data = load_config_file(path)
    assert data == {
        "state_dir": "/srv/sessiond",
        "limits": {"max_list_limit": 10},
        "agents": {"ops": {"scope": "global"}},
    }
    config = build(data)
    assert config.state_dir == "/srv/sessiond"
    assert config.limits.max_list_limit == 10


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "absent.toml")


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("state_dir = \n[[[", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_config_file(path)
