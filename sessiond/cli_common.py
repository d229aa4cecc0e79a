"""What every ``sessiond`` subcommand shares: exit codes, the help layout (defaults,
environment variables, an example and the exit codes at the end of every ``--help``), the
options that locate the daemon, and JSON output. Pure: builds parsers, formats text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from sessiond.config import ConfigError, build_config
from sessiond_client import Client

__all__ = [
    "EXIT_CANT_CREATE",
    "EXIT_CODES",
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_IN_USE",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "SYSTEMD_SOCKET",
    "AdminCommand",
    "Subcommands",
    "add_client_options",
    "add_location_options",
    "age_text",
    "print_json",
]

EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 69
EXIT_CANT_CREATE: Final = 73
EXIT_IN_USE: Final = 75
EXIT_CONFIG: Final = 78
SYSTEMD_SOCKET: Final = "/run/sessiond/sessiond.sock"
DEFAULT_TIMEOUT_S: Final = 30.0
DEFAULT_RECONNECT_S: Final = 1.0
WATCH_RECONNECT_S: Final = 3600.0

EXIT_CODES: Final = """exit status:
  0   success
  1   failure: an error reply, no such session, an invalid file, a failed final flush
  2   usage error
  69  the daemon cannot be reached (not running, wrong --socket)
  73  the state directory or the socket cannot be created or used
  75  another sessiond already serves this state directory or socket
  78  invalid configuration

environment:
  SESSIOND_STATE_DIR  state directory (below --state-dir)
  SESSIOND_SOCKET     the daemon's socket (below --socket)
  SESSIOND_CONFIG     TOML config file (below --config)"""

AdminCommand = Callable[[Client, argparse.Namespace], int]


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout and appends ``(default: ...)`` to options that have a
    default their help does not already state."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if (
            "default" in help_text
            or action.default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return help_text
        return f"{help_text} (default: {action.default})"


class Subcommands:
    """Adds subcommands whose ``--help`` ends with an example and the exit codes."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.actions = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        self.handlers: dict[str, AdminCommand] = {}
        self.reconnect_s: dict[str, float] = {}

    def add(self, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self.actions.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {example}\n\n{EXIT_CODES}",
            formatter_class=_Formatter,
        )
        return parser

    def add_admin(
        self,
        name: str,
        help_text: str,
        example: str,
        handler: AdminCommand,
        *,
        reconnect_s: float = DEFAULT_RECONNECT_S,
    ) -> argparse.ArgumentParser:
        """A command that talks to the running daemon; ``reconnect_s``: how long it keeps
        trying when the daemon goes away (a one-shot command gives up soon, ``watch``
        outlasts a restart)."""
        parser = self.add(name, help_text, example)
        add_client_options(parser)
        self.handlers[name] = handler
        self.reconnect_s[name] = reconnect_s
        return parser


def root_formatter() -> type[argparse.HelpFormatter]:
    return _Formatter


def default_locations() -> tuple[str, str]:
    """The state dir and socket this environment gives without flags or a config file."""
    try:
        config = build_config({}, environ=os.environ, home=os.path.expanduser("~"))
    except ConfigError:
        return "~/.local/state/sessiond", "<state dir>/sessiond.sock"
    return config.state_dir, config.socket_path


def add_location_options(parser: argparse.ArgumentParser, *, for_serve: bool) -> None:
    state_dir, socket_path = default_locations()
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"state directory (env SESSIOND_STATE_DIR; default here: {state_dir})",
    )
    socket_default = (
        f"$RUNTIME_DIRECTORY/sessiond.sock, else $XDG_RUNTIME_DIR/sessiond.sock, else "
        f"<state dir>/sessiond.sock; here: {socket_path}"
        if for_serve
        else f"{SYSTEMD_SOCKET} if it exists, else {socket_path}"
    )
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help=f"the daemon's socket (env SESSIOND_SOCKET; default: {socket_default})",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML config file (env SESSIOND_CONFIG; default: none)"
    )


def add_client_options(parser: argparse.ArgumentParser) -> None:
    add_location_options(parser, for_serve=False)
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="give up on the daemon's answer after this long",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_agent_option(parser: argparse.ArgumentParser, *, only: bool = False) -> None:
    help_text = (
        "only this agent's store (default: every store)"
        if only
        else "the agent whose store to use (default: main)"
    )
    parser.add_argument("--agent", metavar="ID", help=help_text)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def age_text(timestamp_s: float | None) -> str:
    """``12m ago``; ``-`` when unknown."""
    if timestamp_s is None:
        return "-"
    seconds = max(0.0, time.time() - timestamp_s)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def fail(message: str) -> int:
    print(f"sessiond: {message}", file=sys.stderr)
    return EXIT_FAILURE
