"""The admin commands that read and repair sessions and show the daemon's state: ``get``,
``ls``, ``patch``, ``delete``, ``resolve``, ``stats``, ``agents``, ``flush``, ``prune``,
``metrics`` and ``watch``. Each talks to a running daemon through the sync client; output
is for people, or JSON with ``--json``. Writes by hand (``patch``, ``delete``) are
durable: the command returns once the change is on disk.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from sessiond.cli_common import (
    EXIT_FAILURE,
    WATCH_RECONNECT_S,
    Subcommands,
    add_agent_option,
    age_text,
    print_json,
)
from sessiond.metrics import render_prometheus
from sessiond_client import Client, Session

__all__ = ["add_admin_commands"]

LS_DEFAULT_LIMIT = 50
LS_PAGE_SIZE = 500
RESOLVE_FIELDS = {
    "from": "From",
    "chat-type": "ChatType",
    "provider": "Provider",
    "session-key": "SessionKey",
    "group-subject": "GroupSubject",
    "group-room": "GroupRoom",
    "group-space": "GroupSpace",
    "thread-label": "ThreadLabel",
    "message-thread-id": "MessageThreadId",
    "body": "Body",
}


def _session_json(session: Session) -> dict[str, Any]:
    return {"key": session.key, "revision": session.revision, "entry": session.data}


def _updated_at_s(entry: Any) -> float | None:
    updated_at = entry.get("updatedAt") if isinstance(entry, dict) else None
    if isinstance(updated_at, int | float) and not isinstance(updated_at, bool):
        return updated_at / 1000
    return None


def _positive_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, e.g. \'{"label": "ops"}\'')
    return value


# -- sessions -----------------------------------------------------------------------------


def run_get(client: Client, args: argparse.Namespace) -> int:
    session = client.get(args.key, agent=args.agent, fields=args.fields)
    if session is None:
        if args.json:
            print_json(None)
        print(f"sessiond: no session {args.key!r}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print_json(_session_json(session))
    else:
        print(f"{session.key}  (revision {session.revision})")
        print(json.dumps(session.data, indent=2, ensure_ascii=False))
    return 0


def run_ls(client: Client, args: argparse.Namespace) -> int:
    limit: int | None = None if args.all else args.limit
    rows: list[Session] = []
    cursor: str | None = args.cursor
    while limit is None or len(rows) < limit:
        page_size = LS_PAGE_SIZE if limit is None else min(LS_PAGE_SIZE, limit - len(rows))
        page = client.list(
            agent=args.agent,
            prefix=args.prefix,
            label=args.label,
            spawned_by=args.spawned_by,
            active_minutes=args.active_minutes,
            cursor=cursor,
            limit=page_size,
        )
        rows.extend(page.items)
        cursor = page.cursor
        if cursor is None:
            break
    if args.json:
        print_json({"sessions": [_session_json(s) for s in rows], "next_cursor": cursor})
        return 0
    for session in rows:
        entry = session.data if isinstance(session.data, dict) else {}
        name = entry.get("displayName") or entry.get("label") or ""
        age = age_text(_updated_at_s(entry))
        print(f"{age:>9}  {session.key}  {entry.get('sessionId', '')}  {name}".rstrip())
    shown = f"{len(rows)} session(s)"
    if cursor is not None:
        print(
            f"{shown}; more exist: add --cursor {cursor} for the next page, or --all for every one",
            file=sys.stderr,
        )
    else:
        print(shown, file=sys.stderr)
    return 0


def run_patch(client: Client, args: argparse.Namespace) -> int:
    session = client.patch(
        args.key, args.patch, agent=args.agent, if_revision=args.if_revision, durable=True
    )
    if args.json:
        print_json(_session_json(session))
    else:
        print(f"{session.key}  (revision {session.revision})")
    return 0


def run_delete(client: Client, args: argparse.Namespace) -> int:
    deleted = client.delete(args.key, agent=args.agent, if_revision=args.if_revision, durable=True)
    if args.json:
        print_json({"key": args.key, "deleted": deleted})
    if not deleted:
        print(f"sessiond: no session {args.key!r}", file=sys.stderr)
        return EXIT_FAILURE
    if not args.json:
        print(f"deleted {args.key}")
    return 0


def run_resolve(client: Client, args: argparse.Namespace) -> int:
    ctx = {
        wire: getattr(args, flag.replace("-", "_"))
        for flag, wire in RESOLVE_FIELDS.items()
        if getattr(args, flag.replace("-", "_")) is not None
    }
    resolution = client.resolve(ctx, agent=args.agent, authorized=not args.unauthorized)
    if args.json:
        print_json(
            {
                "session_key": resolution.session_key,
                "session_id": resolution.session_id,
                "is_new": resolution.is_new,
                "reset_triggered": resolution.reset_triggered,
                "body_stripped": resolution.body_stripped,
                **_session_json(resolution.session),
            }
        )
        return 0
    state = "new" if resolution.is_new else "existing"
    reset = ", reset" if resolution.reset_triggered else ""
    print(f"{resolution.session_key} -> {resolution.session_id} ({state}{reset})")
    return 0


def run_watch(client: Client, args: argparse.Namespace) -> int:
    """One line per change until interrupted (JSON lines with ``--json``)."""
    with client.watch(args.prefix, agent=args.agent, since=args.since) as watch:
        try:
            for event in watch:
                if event.type == "progress" and not args.progress:
                    continue
                if args.json:
                    line = {"type": event.type, "seq": event.seq, "key": event.key}
                    if event.type == "put":
                        line.update(entry=event.entry, revision=event.revision)
                    print(json.dumps(line, ensure_ascii=False), flush=True)
                else:
                    print(f"{event.seq:>8}  {event.type:<8}  {event.key or ''}", flush=True)
        except KeyboardInterrupt:
            return 0
    return 0


# -- the daemon -----------------------------------------------------------------------


def _store_state(store: dict[str, Any]) -> str:
    notes = []
    if store.get("failing"):
        notes.append(f"FAILING: {store.get('last_error')}")
    if store.get("corrupt_moved_to"):
        notes.append(f"QUARANTINED: the corrupt file was moved to {store['corrupt_moved_to']}")
    if store.get("journal_corruption"):
        notes.append(f"journal damaged: {store['journal_corruption']}")
    return "; ".join(notes) or "ok"


def _size(byte_count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if byte_count >= size:
            return f"{byte_count / size:.1f} {unit}"
    return f"{byte_count} B"


def _print_redis_stats(stats: dict[str, Any]) -> None:
    """``stats`` of a Redis/Valkey target: the server, then each agent's store."""
    print(
        f"{stats['server']} {stats.get('version', '?')}, up {stats.get('uptime_s', 0):.0f} s, "
        f"{stats.get('connections', 0)} connection(s), {stats.get('durability', '?')}, "
        f"maxmemory-policy {stats.get('maxmemory_policy', '?')}"
    )
    for agent, store in sorted(stats.get("stores", {}).items()):
        print(
            f"store {agent}: {store['entries']} entries, seq {store['seq']}, "
            f"{store['watch_history']} change(s) kept for watch"
        )


def run_stats(client: Client, args: argparse.Namespace) -> int:
    stats = client.stats(agent=args.agent)
    if args.json:
        print_json(stats)
        return 0
    if stats.get("server") in ("redis", "valkey"):
        _print_redis_stats(stats)
        return 0
    print(
        f"sessiond {stats.get('version', '?')}, up {stats.get('uptime_s', 0):.0f} s, "
        f"{stats.get('connections', 0)} connection(s) "
        f"({stats.get('connections_refused', 0)} refused since start), "
        f"{stats.get('requests_in_flight', 0)} request(s) in flight"
    )
    for agent, store in sorted(stats.get("stores", {}).items()):
        print(
            f"store {agent}: {store['entries']} entries, {_size(store['bytes_on_disk'])} file, "
            f"journal {_size(store['journal_bytes'])}, {store['dirty']} unsaved change(s), "
            f"{store['mode']} mode, {_store_state(store)}"
        )
    for agent, reason in sorted(stats.get("unavailable_stores", {}).items()):
        print(f"store {agent}: UNAVAILABLE: {reason}")
    for op, codes in sorted(stats.get("requests", {}).items()):
        summary = ", ".join(f"{code} {count}" for code, count in sorted(codes.items()))
        print(f"  {op}: {summary}")
    return 0


def run_agents(client: Client, args: argparse.Namespace) -> int:
    stats = client.stats()
    open_stores: dict[str, Any] = stats.get("stores", {})
    unavailable: dict[str, str] = stats.get("unavailable_stores", {})
    agents = sorted({*open_stores, *unavailable, *stats.get("stores_on_disk", [])})
    rows = []
    for agent in agents:
        store = open_stores.get(agent)
        if agent in unavailable:
            health = f"UNAVAILABLE: {unavailable[agent]}"
        elif store is None:
            health = "not loaded (opened on first use)"
        else:
            health = _store_state(store)
        rows.append(
            {
                "agent": agent,
                "loaded": store is not None,
                "entries": None if store is None else store["entries"],
                # Over Redis there are no files: those columns stay empty.
                "bytes_on_disk": None if store is None else store.get("bytes_on_disk"),
                "journal_bytes": None if store is None else store.get("journal_bytes"),
                "last_change_at": None if store is None else store.get("last_change_at"),
                "last_flush_at": None if store is None else store.get("last_flush_at"),
                "health": health,
            }
        )
    if args.json:
        print_json(rows)
        return 0
    print(f"{'AGENT':<20} {'ENTRIES':>8} {'FILE':>10} {'JOURNAL':>10} {'LAST WRITE':>12}  HEALTH")
    for row in rows:
        entries = "-" if row["entries"] is None else str(row["entries"])
        file_size = "-" if row["bytes_on_disk"] is None else _size(row["bytes_on_disk"])
        journal = "-" if row["journal_bytes"] is None else _size(row["journal_bytes"])
        last = age_text(row["last_change_at"])
        print(
            f"{row['agent']:<20} {entries:>8} {file_size:>10} {journal:>10} {last:>12}  "
            f"{row['health']}"
        )
    return 0


def run_flush(client: Client, args: argparse.Namespace) -> int:
    started = time.monotonic()
    client.flush(agent=args.agent)
    took_s = time.monotonic() - started
    if args.json:
        print_json({"flushed": True, "seconds": round(took_s, 3)})
    else:
        print(f"flushed ({took_s:.3f} s)")
    return 0


def run_prune(client: Client, args: argparse.Namespace) -> int:
    result = client.prune(agent=args.agent, dry_run=args.dry_run)
    if args.json:
        print_json(
            {
                "mode": result.mode,
                "dry_run": result.dry_run,
                "pruned": [{"key": p.key, "reason": p.reason} for p in result.pruned],
                "kept": [{"key": k.key, "reason": k.reason} for k in result.kept],
                "entries": result.entries,
                "over_cap": result.over_cap,
                "archive": result.archive,
            }
        )
        return 0
    verb = "would prune" if result.dry_run else "pruned"
    for pruned in result.pruned:
        print(f"{verb} {pruned.key} ({pruned.reason})")
    for kept in result.kept:
        print(f"kept {kept.key} ({kept.reason})")
    print(f"{verb} {len(result.pruned)}, {result.entries} entries left (retention {result.mode})")
    if result.archive and result.pruned and not result.dry_run:
        print(f"archived to {result.archive}")
    if result.over_cap:
        print("warning: the entries retention never prunes exceed max_entries")
    return 0


def run_metrics(client: Client, args: argparse.Namespace) -> int:
    stats = client.stats()
    if args.json:
        print_json(stats)
    else:
        sys.stdout.write(render_prometheus(stats))
    return 0


def add_admin_commands(commands: Subcommands) -> None:
    get = commands.add_admin(
        "get", "show one session entry", "sessiond get agent:main:main", run_get
    )
    get.add_argument("key", help="the session key, e.g. agent:main:main")
    add_agent_option(get)
    get.add_argument("--fields", nargs="+", metavar="NAME", help="only these fields")

    ls = commands.add_admin(
        "ls",
        "list sessions, most recently updated first",
        "sessiond ls --active-minutes 60 --prefix agent:main:telegram",
        run_ls,
    )
    add_agent_option(ls)
    ls.add_argument("--prefix", help="only keys that start with this")
    ls.add_argument("--label", help="only entries with this label")
    ls.add_argument("--spawned-by", metavar="KEY", help="only entries spawned by this session")
    ls.add_argument(
        "--active-minutes", type=float, metavar="N", help="only entries updated in the last N"
    )
    ls.add_argument(
        "--limit", type=_positive_limit, default=LS_DEFAULT_LIMIT, metavar="N", help="at most N"
    )
    ls.add_argument("--cursor", help="continue after a previous page (printed when more exist)")
    ls.add_argument("--all", action="store_true", help="every matching entry (ignores --limit)")

    patch = commands.add_admin(
        "patch",
        "merge fields into an entry (creating it); a null deletes a field; durable",
        """sessiond patch agent:main:main '{"label": "ops", "modelOverride": null}'""",
        run_patch,
    )
    patch.add_argument("key", help="the session key")
    patch.add_argument("patch", type=_json_object, metavar="JSON", help="a JSON object")
    add_agent_option(patch)
    patch.add_argument(
        "--if-revision", metavar="REV", help="only if the entry is at this revision (from get)"
    )

    delete = commands.add_admin(
        "delete",
        "remove an entry; durable; exit 1 if it did not exist",
        "sessiond delete agent:main:telegram:dm:+15550001 --if-revision 5f3c...",
        run_delete,
    )
    delete.add_argument("key", help="the session key")
    add_agent_option(delete)
    delete.add_argument(
        "--if-revision", metavar="REV", help="only if the entry is at this revision (from get)"
    )

    resolve = commands.add_admin(
        "resolve",
        "resolve a message context to its session, creating or renewing it as a bot would",
        "sessiond resolve --from +15550001 --provider telegram --body '/new hello'",
        run_resolve,
    )
    for flag, wire in RESOLVE_FIELDS.items():
        resolve.add_argument(f"--{flag}", help=f"the message's {wire}")
    add_agent_option(resolve)
    resolve.add_argument("--unauthorized", action="store_true", help="sender may not reset")

    watch = commands.add_admin(
        "watch",
        "print changes as they happen, until interrupted",
        "sessiond watch agent:main:telegram --json",
        run_watch,
        reconnect_s=WATCH_RECONNECT_S,  # resumes on its own across daemon restarts
    )
    watch.add_argument("prefix", nargs="?", default="", help="only keys starting with this")
    add_agent_option(watch)
    watch.add_argument("--since", type=int, metavar="SEQ", help="first every change after SEQ")
    watch.add_argument("--progress", action="store_true", help="also print progress marks")

    stats = commands.add_admin(
        "stats",
        "show the daemon's counters and every open store's health",
        "sessiond stats",
        run_stats,
    )
    add_agent_option(stats, only=True)

    commands.add_admin(
        "agents",
        "list the stores (open or on disk): entries, sizes, last write, health",
        "sessiond agents",
        run_agents,
    )

    flush = commands.add_admin(
        "flush",
        "write every store's snapshot now, and wait until it is on disk",
        "sessiond flush",
        run_flush,
    )
    add_agent_option(flush, only=True)

    prune = commands.add_admin(
        "prune",
        "apply the retention rules now (entries are archived before deletion)",
        "sessiond prune --agent ops --dry-run",
        run_prune,
    )
    add_agent_option(prune)
    prune.add_argument("--dry-run", action="store_true", help="only say what would go")

    commands.add_admin(
        "metrics",
        "counters and gauges in the Prometheus text format (--json: the raw stats)",
        "sessiond metrics > /var/lib/node_exporter/textfile/sessiond.prom",
        run_metrics,
    )
