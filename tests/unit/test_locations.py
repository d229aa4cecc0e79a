"""Unit tests for sessiond_client.locations: default state dir and socket path.

Pure: the environment and the home directory are passed in as plain values.
"""

from __future__ import annotations

import pytest

from sessiond_client.locations import SOCKET_NAME, default_socket_path, default_state_dir

HOME = "/home/bot"


# --- state dir: SESSIOND_STATE_DIR > $STATE_DIRECTORY > $XDG_STATE_HOME/sessiond > ~ -----


def test_state_dir_default_is_under_home() -> None:
    assert default_state_dir({}, home=HOME) == "/home/bot/.local/state/sessiond"


def test_state_dir_precedence() -> None:
    environ = {
        "SESSIOND_STATE_DIR": "/explicit",
        "STATE_DIRECTORY": "/var/lib/sessiond",
        "XDG_STATE_HOME": "/xdg/state",
    }
    assert default_state_dir(environ, home=HOME) == "/explicit"
    del environ["SESSIOND_STATE_DIR"]
    assert default_state_dir(environ, home=HOME) == "/var/lib/sessiond"
    del environ["STATE_DIRECTORY"]
    assert default_state_dir(environ, home=HOME) == "/xdg/state/sessiond"
    del environ["XDG_STATE_HOME"]
    assert default_state_dir(environ, home=HOME) == "/home/bot/.local/state/sessiond"


@pytest.mark.parametrize("name", ["SESSIOND_STATE_DIR", "STATE_DIRECTORY", "XDG_STATE_HOME"])
def test_empty_variables_are_ignored(name: str) -> None:
    assert default_state_dir({name: ""}, home=HOME) == "/home/bot/.local/state/sessiond"


def test_blank_state_directory_is_ignored() -> None:
    assert default_state_dir({"STATE_DIRECTORY": "  "}, home=HOME) == (
        "/home/bot/.local/state/sessiond"
    )


def test_several_systemd_state_directories_use_the_first() -> None:
    # systemd joins several StateDirectory= paths with ":" (systemd.exec(5)).
    environ = {"STATE_DIRECTORY": "/var/lib/sessiond:/var/lib/other"}
    assert default_state_dir(environ, home=HOME) == "/var/lib/sessiond"


def test_a_systemd_state_directory_may_contain_spaces() -> None:
    environ = {"STATE_DIRECTORY": "/var/lib/my sessiond"}
    assert default_state_dir(environ, home=HOME) == "/var/lib/my sessiond"


def test_relative_xdg_state_home_is_ignored() -> None:
    # The XDG base directory spec: relative paths are invalid and must be ignored.
    assert default_state_dir({"XDG_STATE_HOME": "state"}, home=HOME) == (
        "/home/bot/.local/state/sessiond"
    )


# --- socket: SESSIOND_SOCKET > $RUNTIME_DIRECTORY > $XDG_RUNTIME_DIR > <state dir> ----------


def test_socket_name() -> None:
    assert SOCKET_NAME == "sessiond.sock"


def test_socket_precedence() -> None:
    environ = {
        "SESSIOND_SOCKET": "/run/explicit.sock",
        "RUNTIME_DIRECTORY": "/run/sessiond",
        "XDG_RUNTIME_DIR": "/run/user/1000",
        "SESSIOND_STATE_DIR": "/state",
    }
    assert default_socket_path(environ, home=HOME) == "/run/explicit.sock"
    del environ["SESSIOND_SOCKET"]
    assert default_socket_path(environ, home=HOME) == "/run/sessiond/sessiond.sock"
    del environ["RUNTIME_DIRECTORY"]
    assert default_socket_path(environ, home=HOME) == "/run/user/1000/sessiond.sock"
    del environ["XDG_RUNTIME_DIR"]
    assert default_socket_path(environ, home=HOME) == "/state/sessiond.sock"


def test_socket_falls_back_to_the_default_state_dir() -> None:
    assert default_socket_path({}, home=HOME) == "/home/bot/.local/state/sessiond/sessiond.sock"


def test_socket_uses_the_given_state_dir() -> None:
    assert default_socket_path({}, home=HOME, state_dir="/flag/dir") == "/flag/dir/sessiond.sock"


def test_several_runtime_directories_use_the_first() -> None:
    environ = {"RUNTIME_DIRECTORY": "/run/sessiond:/run/other"}
    assert default_socket_path(environ, home=HOME) == "/run/sessiond/sessiond.sock"


def test_relative_xdg_runtime_dir_is_ignored() -> None:
    environ = {"XDG_RUNTIME_DIR": "run", "SESSIOND_STATE_DIR": "/state"}
    assert default_socket_path(environ, home=HOME) == "/state/sessiond.sock"


@pytest.mark.parametrize("name", ["SESSIOND_SOCKET", "RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"])
def test_empty_socket_variables_are_ignored(name: str) -> None:
    assert default_socket_path({name: "", "SESSIOND_STATE_DIR": "/s"}, home=HOME) == (
        "/s/sessiond.sock"
    )
