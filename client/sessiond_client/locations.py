"""Where the daemon keeps its state and its socket by default. Pure: no I/O.

Daemon and clients share these rules so that a bot finds the daemon with no settings:

- state dir: ``SESSIOND_STATE_DIR`` > ``$STATE_DIRECTORY`` (set by systemd's
  ``StateDirectory=``) > ``$XDG_STATE_HOME/sessiond`` > ``~/.local/state/sessiond``;
- socket: ``SESSIOND_SOCKET`` > ``$RUNTIME_DIRECTORY/sessiond.sock`` >
  ``$XDG_RUNTIME_DIR/sessiond.sock`` > ``<state dir>/sessiond.sock``.

Empty variables count as unset. systemd joins several ``StateDirectory=`` /
``RuntimeDirectory=`` paths with ``:`` (systemd.exec(5)); the first is used. Relative
``XDG_*`` values are ignored, as the XDG base directory specification requires.

The daemon puts its ``--state-dir`` / ``--socket`` flags in front of these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["SOCKET_NAME", "default_socket_path", "default_state_dir"]

SOCKET_NAME = "sessiond.sock"


def _first_of(value: str) -> str:
    # systemd passes several directories colon-separated; a path may contain spaces.
    return value.split(":", 1)[0] if value.strip() else ""


def _absolute_or_empty(value: str) -> str:
    return value if os.path.isabs(value) else ""


def default_state_dir(environ: Mapping[str, str], *, home: str) -> str:
    if environ.get("SESSIOND_STATE_DIR"):
        return environ["SESSIOND_STATE_DIR"]
    systemd_state = _first_of(environ.get("STATE_DIRECTORY", ""))
    if systemd_state:
        return systemd_state
    xdg_state = _absolute_or_empty(environ.get("XDG_STATE_HOME", ""))
    if xdg_state:
        return os.path.join(xdg_state, "sessiond")
    return os.path.join(home, ".local", "state", "sessiond")


def default_socket_path(
    environ: Mapping[str, str], *, home: str, state_dir: str | None = None
) -> str:
    if environ.get("SESSIOND_SOCKET"):
        return environ["SESSIOND_SOCKET"]
    runtime_dir = _first_of(environ.get("RUNTIME_DIRECTORY", ""))
    if runtime_dir:
        return os.path.join(runtime_dir, SOCKET_NAME)
    xdg_runtime = _absolute_or_empty(environ.get("XDG_RUNTIME_DIR", ""))
    if xdg_runtime:
        return os.path.join(xdg_runtime, SOCKET_NAME)
    return os.path.join(state_dir or default_state_dir(environ, home=home), SOCKET_NAME)
