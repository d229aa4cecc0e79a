"""``sessiond migrate``: move every store between the daemon and Redis/Valkey. Does I/O.

Both sides are clients (:class:`~sessiond_client.Client`), so either may be the daemon
(a socket path) or a Redis or Valkey server (a URL): ``--to redis://...`` copies every
store the daemon serves into Redis, ``--from redis://...`` copies every store Redis holds
into the daemon. Each store is exported at one instant (``export``), staged whole on the
other side, then committed store by store (``import``: atomic per store, durable), as
``sessiond export | sessiond import`` would do without the file in between. Entries are
copied exactly (unknown fields, unicode, every digit of a number); a revision is a hash
of the entry's content, so every entry keeps its revision. Keys absent from the source
are left alone, and running it again stores the same entries again: it is idempotent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

import msgspec

from sessiond.cli_common import EXIT_FAILURE, Subcommands, add_agent_option, print_json
from sessiond.cli_transfer import all_agents, export_store
from sessiond_client import Client, RetryPolicy, Session, SessiondError

__all__ = ["add_migrate_command", "migrate"]

_encoder = msgspec.json.Encoder()


def _batches(
    sessions: list[Session], max_batch_bytes: int, max_batch_keys: int
) -> Iterator[dict[str, Any]]:
    batch: dict[str, Any] = {}
    batch_bytes = 0
    for session in sessions:
        size = len(session.key.encode()) + len(_encoder.encode(session.data)) + 16
        if batch and (batch_bytes + size > max_batch_bytes or len(batch) >= max_batch_keys):
            yield batch
            batch, batch_bytes = {}, 0
        batch[session.key] = session.data
        batch_bytes += size
    if batch:
        yield batch


def migrate(source: Client, destination: Client, agents: list[str]) -> dict[str, int]:
    """Copy the stores of ``agents`` from ``source`` to ``destination``; entries per agent.

    Every store is staged before any is committed, so an entry the destination refuses
    stops the move before anything changed there."""
    limits = destination.hello()
    max_batch_bytes = limits.max_frame_bytes // 2
    staged: dict[str, tuple[str, int]] = {}
    for agent in agents:
        sessions, _ = export_store(source, agent)
        import_id: str | None = None
        for batch in _batches(sessions, max_batch_bytes, limits.max_keys_per_request):
            import_id = destination.import_entries(
                batch, agent=agent, import_id=import_id
            ).import_id
        if import_id is not None:
            staged[agent] = (import_id, len(sessions))
    moved: dict[str, int] = {}
    for agent, (import_id, _) in staged.items():
        result = destination.import_entries({}, agent=agent, import_id=import_id, commit=True)
        moved[agent] = result.imported
    return moved


def run_migrate(client: Client, args: argparse.Namespace) -> int:
    other_target = args.to or args.source
    retry = RetryPolicy(reconnect_timeout_s=1.0, first_connect_timeout_s=1.0)
    try:
        with Client(other_target, retry=retry, timeout_s=args.timeout) as other:
            source, destination = (client, other) if args.to else (other, client)
            agents = [args.agent] if args.agent else all_agents(source)
            moved = migrate(source, destination, agents)
    except SessiondError as error:
        print(
            f"sessiond: migrate: {type(error).__name__}: {error}; stores committed before "
            "the error stay copied (run it again: it is idempotent)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if args.json:
        print_json({"migrated": moved})
    else:
        for agent, count in moved.items():
            print(f"migrated {count} session(s) of agent {agent}")
        print(f"migrated {sum(moved.values())} session(s) from {len(moved)} store(s)")
    return 0


def add_migrate_command(commands: Subcommands) -> None:
    parser = commands.add_admin(
        "migrate",
        "copy every store between the daemon (--socket) and Redis or Valkey, "
        "either way; idempotent, atomic and durable per store",
        "sessiond migrate --to 'redis://db.internal:6379/0'",
        run_migrate,
    )
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument(
        "--to", metavar="TARGET", help="copy from the daemon into TARGET (a Redis/Valkey URL)"
    )
    direction.add_argument(
        "--from",
        dest="source",
        metavar="TARGET",
        help="copy from TARGET (a Redis/Valkey URL) into the daemon",
    )
    add_agent_option(parser, only=True)
