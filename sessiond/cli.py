"""The ``sessiond`` command line: ``serve`` runs the daemon; the admin commands talk to a
running daemon through the sync client; ``check`` validates a store file offline. Does I/O.

Output is for people by default and JSON with ``--json`` (for scripts). Exit status:
0 success; 1 failure (an error reply, a corrupt file for ``check``, a failed final
flush for ``serve``); 2 usage; 69 the daemon cannot be reached; 75 another daemon owns
the state dir or socket; 78 invalid configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sessiond import __version__
from sessiond.config import Config, ConfigError, build_config, load_config_file
from sessiond.storecheck import check_store_file
from sessiond.systemd import SocketActivationError
from sessiond_client import Client, DaemonUnavailableError, RetryPolicy, SessiondError

__all__ = ["main"]

EXIT_FAILURE = 1
EXIT_UNAVAILABLE = 69
EXIT_CANT_CREATE = 73
EXIT_IN_USE = 75
EXIT_CONFIG = 78


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", help="state directory (default: see README)")
    parser.add_argument("--socket", help="Unix socket path")
    parser.add_argument("--config", help="TOML config file (env SESSIOND_CONFIG)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sessiond", description="session store daemon")
    parser.add_argument("--version", action="version", version=f"sessiond {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the daemon in the foreground")
    _add_common(serve)
    serve.add_argument(
        "--log-level",
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
        help="log verbosity, any case (default: info, or log_level in the config file)",
    )
    get = commands.add_parser("get", help="show one session entry")
    get.add_argument("key")
    ls = commands.add_parser("ls", help="list sessions, newest first")
    ls.add_argument("--active-minutes", type=float)
    ls.add_argument("--prefix")
    ls.add_argument("--label")
    ls.add_argument("--limit", type=int, help="stop after this many (default: all)")
    commands.add_parser("stats", help="show the daemon's counters")
    commands.add_parser("flush", help="write every store to disk now")
    check = commands.add_parser("check", help="validate a store file offline")
    check.add_argument("path")
    check.add_argument("--json", action="store_true")
    resolve = commands.add_parser("resolve", help="resolve a message to its session")
    for field in (
        "from",
        "chat-type",
        "provider",
        "session-key",
        "group-subject",
        "group-room",
        "group-space",
        "thread-label",
        "message-thread-id",
        "body",
    ):
        resolve.add_argument(f"--{field}")
    resolve.add_argument("--unauthorized", action="store_true", help="sender may not reset")
    for command in (get, ls, commands.choices["stats"], commands.choices["flush"], resolve):
        _add_common(command)
        command.add_argument("--agent")
        command.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def load_config(args: argparse.Namespace) -> Config:
    config_path = args.config or os.environ.get("SESSIOND_CONFIG")
    file_data = load_config_file(config_path) if config_path else {}
    return build_config(
        file_data,
        environ=os.environ,
        home=os.path.expanduser("~"),
        state_dir_flag=args.state_dir,
        socket_flag=args.socket,
    )


def configure_logging(level: str) -> None:
    # journald stamps each line itself; a terminal gets our own timestamps.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr, format=f"{stamp}%(levelname)s %(name)s: %(message)s"
    )


def run_serve(args: argparse.Namespace, config: Config) -> int:
    from sessiond.daemon import AlreadyRunningError, StartupError, run_daemon

    configure_logging(args.log_level or config.log_level)
    faulthandler.enable()
    try:
        import uvloop
    except ImportError:
        logging.getLogger("sessiond").info("uvloop is not installed; using asyncio's loop")
        runner: Callable[[Any], int] = asyncio.run
    else:
        runner = uvloop.run
    try:
        return runner(run_daemon(config, reload_config=lambda: load_config(args)))
    except AlreadyRunningError as error:
        logging.getLogger("sessiond").error("%s", error)
        return EXIT_IN_USE
    except StartupError as error:
        logging.getLogger("sessiond").error("%s", error)
        return EXIT_CANT_CREATE
    except SocketActivationError as error:
        logging.getLogger("sessiond").error("socket activation: %s", error)
        return EXIT_CONFIG


def _age(updated_at: Any) -> str:
    if not isinstance(updated_at, int | float):
        return "?"
    seconds = max(0.0, time.time() - updated_at / 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def run_get(client: Client, args: argparse.Namespace) -> int:
    session = client.get(args.key, agent=args.agent)
    if session is None:
        if args.json:
            _print_json(None)
        else:
            print(f"no session {args.key!r}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        _print_json({"key": session.key, "revision": session.revision, "entry": session.data})
    else:
        print(f"{session.key}  (revision {session.revision})")
        print(json.dumps(session.data, indent=2, ensure_ascii=False))
    return 0


def run_ls(client: Client, args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while args.limit is None or len(rows) < args.limit:
        page = client.list(
            agent=args.agent,
            prefix=args.prefix,
            label=args.label,
            active_minutes=args.active_minutes,
            cursor=cursor,
            limit=500,
        )
        rows.extend({"key": s.key, "revision": s.revision, "entry": s.data} for s in page.items)
        cursor = page.cursor
        if cursor is None:
            break
    rows = rows if args.limit is None else rows[: args.limit]
    if args.json:
        _print_json(rows)
        return 0
    for row in rows:
        entry = row["entry"] if isinstance(row["entry"], dict) else {}
        name = entry.get("displayName") or entry.get("label") or ""
        print(
            f"{_age(entry.get('updatedAt')):>9}  {row['key']}  {entry.get('sessionId', '')}  {name}"
        )
    print(f"{len(rows)} session(s)", file=sys.stderr)
    return 0


def run_stats(client: Client, args: argparse.Namespace) -> int:
    stats = client.stats()
    if args.json:
        _print_json(stats)
        return 0
    print(f"uptime {stats.get('uptime_s', 0):.0f} s, {stats.get('connections', 0)} connection(s)")
    for agent, store in sorted(stats.get("stores", {}).items()):
        state = f"FAILING: {store['last_error']}" if store.get("failing") else "ok"
        print(
            f"store {agent}: {store['entries']} entries, {store['bytes_on_disk']} bytes, "
            f"journal {store['journal_bytes']} bytes, dirty {store['dirty']}, {state}"
        )
    for op, count in sorted(stats.get("ops", {}).items()):
        print(f"  {op}: {count}")
    return 0


def run_flush(client: Client, args: argparse.Namespace) -> int:
    client.flush(agent=args.agent)
    if args.json:
        _print_json(True)
    else:
        print("flushed")
    return 0


def run_resolve(client: Client, args: argparse.Namespace) -> int:
    fields = {
        "From": args.__dict__["from"],
        "ChatType": args.chat_type,
        "Provider": args.provider,
        "SessionKey": args.session_key,
        "GroupSubject": args.group_subject,
        "GroupRoom": args.group_room,
        "GroupSpace": args.group_space,
        "ThreadLabel": args.thread_label,
        "MessageThreadId": args.message_thread_id,
        "Body": args.body,
    }
    ctx = {name: value for name, value in fields.items() if value is not None}
    resolution = client.resolve(ctx, agent=args.agent, authorized=not args.unauthorized)
    result = {
        "session_key": resolution.session_key,
        "session_id": resolution.session_id,
        "is_new": resolution.is_new,
        "reset_triggered": resolution.reset_triggered,
        "body_stripped": resolution.body_stripped,
        "revision": resolution.session.revision,
        "entry": resolution.session.data,
    }
    if args.json:
        _print_json(result)
    else:
        state = "new" if resolution.is_new else "existing"
        print(
            f"{resolution.session_key} -> {resolution.session_id} ({state}"
            f"{', reset' if resolution.reset_triggered else ''})"
        )
    return 0


def run_check(args: argparse.Namespace) -> int:
    report = check_store_file(Path(args.path))
    if args.json:
        _print_json(report.to_dict())
    else:
        for line in report.lines():
            print(line)
    return 0 if report.ok else EXIT_FAILURE


ADMIN_COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "get": run_get,
    "ls": run_ls,
    "stats": run_stats,
    "flush": run_flush,
    "resolve": run_resolve,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return run_check(args)
    try:
        config = load_config(args)
    except ConfigError as error:
        print(f"sessiond: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "serve":
        return run_serve(args, config)
    try:
        with Client(config.socket_path, retry=RetryPolicy(reconnect_timeout_s=1.0)) as client:
            return ADMIN_COMMANDS[args.command](client, args)
    except DaemonUnavailableError as error:
        print(f"sessiond: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except SessiondError as error:
        print(f"sessiond: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILURE
