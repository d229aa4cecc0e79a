"""The ``sessiond`` command line: the parser, ``serve``, ``config`` and ``check``, and the
dispatch to the admin commands (:mod:`sessiond.cli_admin`, :mod:`sessiond.cli_transfer`),
which talk to a running daemon through the sync client. Does I/O.

Output is for people by default and JSON with ``--json`` (for scripts). Exit status:
0 success; 1 failure (an error reply, an invalid file, a failed final flush); 2 usage;
69 the daemon cannot be reached; 73 the state directory or socket cannot be used; 75
another daemon owns the state dir or socket; 78 invalid configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sessiond import __version__
from sessiond.cli_admin import add_admin_commands
from sessiond.cli_common import (
    EXIT_CANT_CREATE,
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_IN_USE,
    EXIT_UNAVAILABLE,
    SYSTEMD_SOCKET,
    Subcommands,
    add_location_options,
    root_formatter,
)
from sessiond.cli_migrate import add_migrate_command
from sessiond.cli_transfer import add_transfer_commands
from sessiond.config import (
    Config,
    ConfigError,
    build_config,
    load_config_file,
    settings_with_origins,
)
from sessiond.logsetup import configure_logging
from sessiond.storecheck import check_path
from sessiond.systemd import SocketActivationError
from sessiond_client import Client, DaemonUnavailableError, RetryPolicy, SessiondError

__all__ = ["build_parser", "main"]


def build_parser() -> tuple[argparse.ArgumentParser, Subcommands]:
    parser = argparse.ArgumentParser(
        prog="sessiond",
        description="sessiond: the session store daemon for hosts running chat-bot processes",
        epilog=f"run `sessiond COMMAND --help` for each command's options.\n\n{EXIT_CODES}",
        formatter_class=root_formatter(),
    )
    parser.add_argument("--version", action="version", version=f"sessiond {__version__}")
    commands = Subcommands(parser)
    serve = commands.add(
        "serve", "run the daemon in the foreground", "sessiond serve --state-dir /var/lib/sessiond"
    )
    add_location_options(serve, for_serve=True)
    serve.add_argument(
        "--log-level",
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
        help="log verbosity, any case (default: info, or log_level in the config file)",
    )
    serve.add_argument(
        "--log-format",
        type=str.lower,
        choices=["text", "json"],
        help="log lines as text, or one JSON object per line for log shippers "
        "(default: text, or log_format in the config file)",
    )
    config = commands.add(
        "config",
        "print the effective configuration and where each value comes from",
        "sessiond config --check /etc/sessiond/sessiond.toml",
    )
    add_location_options(config, for_serve=True)
    config.add_argument("--check", metavar="FILE", help="only validate FILE (exit 0 or 78)")
    config.add_argument("--json", action="store_true", help="machine-readable output")
    check = commands.add(
        "check",
        "validate a store file, or every store and journal under a state dir, offline",
        "sessiond check /var/lib/sessiond",
    )
    check.add_argument("path", metavar="PATH|STATE_DIR", help="a sessions.json or a state dir")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    add_admin_commands(commands)
    add_transfer_commands(commands)
    add_migrate_command(commands)
    return parser, commands


def load_config(args: argparse.Namespace) -> tuple[Config, dict[str, Any], str | None]:
    """The configuration the flags, the environment and the file give (and the file's data)."""
    config_path = args.config or os.environ.get("SESSIOND_CONFIG") or None
    file_data = load_config_file(config_path) if config_path else {}
    config = build_config(
        file_data,
        environ=os.environ,
        home=os.path.expanduser("~"),
        state_dir_flag=getattr(args, "state_dir", None),
        socket_flag=getattr(args, "socket", None),
        source=config_path or "configuration",
    )
    return config, file_data, config_path


def admin_socket(args: argparse.Namespace, config: Config, file_data: dict[str, Any]) -> str:
    """Where an admin command finds the daemon: flag, env, config file, then the systemd
    socket if it exists, then the default path."""
    explicit = args.socket or os.environ.get("SESSIOND_SOCKET") or file_data.get("socket_path")
    if explicit:
        return str(explicit)
    if (
        not args.state_dir
        and not os.environ.get("SESSIOND_STATE_DIR")
        and os.path.exists(SYSTEMD_SOCKET)
    ):
        return SYSTEMD_SOCKET
    return config.socket_path


def run_serve(args: argparse.Namespace, config: Config) -> int:
    from sessiond.daemon import AlreadyRunningError, StartupError, run_daemon

    configure_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    faulthandler.enable()
    log = logging.getLogger("sessiond")
    try:
        import uvloop
    except ImportError:
        log.info("uvloop is not installed; using asyncio's loop")
        runner: Callable[[Any], int] = asyncio.run
    else:
        runner = uvloop.run
    try:
        return runner(run_daemon(config, reload_config=lambda: load_config(args)[0]))
    except AlreadyRunningError as error:
        log.error("%s", error)
        return EXIT_IN_USE
    except StartupError as error:
        log.error("%s", error)
        return EXIT_CANT_CREATE
    except SocketActivationError as error:
        log.error("socket activation: %s", error)
        return EXIT_CONFIG


def run_config(args: argparse.Namespace) -> int:
    if args.check:
        try:
            build_config(load_config_file(args.check), environ={}, home="/", source=args.check)
        except ConfigError as error:
            print(f"sessiond: {error}", file=sys.stderr)
            return EXIT_CONFIG
        print(f"{args.check}: OK")
        return 0
    config, file_data, config_path = load_config(args)
    rows = settings_with_origins(
        config,
        file_data=file_data,
        file_path=config_path,
        environ=os.environ,
        state_dir_flag=args.state_dir,
        socket_flag=args.socket,
    )
    if args.json:
        print(json.dumps([{"name": n, "value": v, "from": o} for n, v, o in rows], indent=2))
        return 0
    width = max(len(name) for name, _, _ in rows)
    for name, value, origin in rows:
        shown = f"0o{value:o}" if name.endswith("_mode") else json.dumps(value)
        print(f"{name:<{width}}  {shown}  ({origin})")
    return 0


def run_check(args: argparse.Namespace) -> int:
    reports = check_path(Path(args.path))
    if args.json:
        print(json.dumps([report.to_dict() for report in reports], indent=2, ensure_ascii=False))
    else:
        for report in reports:
            for line in report.lines():
                print(line)
        if not reports:
            print(f"{args.path}: no store files found")
    return 0 if reports and all(report.ok for report in reports) else EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        return run_check(args)
    try:
        if args.command == "config":
            return run_config(args)
        config, file_data, _ = load_config(args)
    except ConfigError as error:
        print(f"sessiond: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "serve":
        return run_serve(args, config)
    socket_path = admin_socket(args, config, file_data)
    retry = RetryPolicy(
        reconnect_timeout_s=commands.reconnect_s[args.command], first_connect_timeout_s=1.0
    )
    try:
        with Client(socket_path, retry=retry, timeout_s=args.timeout) as client:
            return commands.handlers[args.command](client, args)
    except DaemonUnavailableError as error:
        print(
            f"sessiond: {error} (is the daemon running? --socket, SESSIOND_SOCKET)", file=sys.stderr
        )
        return EXIT_UNAVAILABLE
    except SessiondError as error:
        print(f"sessiond: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # `sessiond export | head`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
