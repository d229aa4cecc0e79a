"""Retention on a real daemon (and one race in-process): age is inactivity, a cap never
takes a protected, main or recently active session (if those alone exceed it, the store
stays above it and says so), pruned entries are archived before they are deleted through
the normal write path (watchers see the deletes), ``warn`` only reports, ``enforce``
prunes on the schedule, and an entry written while a prune runs is never pruned."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sessiond_client import Client
from tests.support.daemon import DaemonProcess
from tests.support.inprocess import InProcessDaemon, frame_of

DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def put(client: Client, key: str, *, days_idle: float, **fields: Any) -> None:
    """An entry whose last activity was ``days_idle`` days ago."""
    entry = {"sessionId": f"s-{key}", "updatedAt": now_ms() - int(days_idle * DAY_MS), **fields}
    client.replace(key, entry)


def keys(client: Client) -> set[str]:
    return {session.key for session in client.iter_list()}


def test_a_dry_run_says_what_would_go_and_why_and_changes_nothing(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon(
        {"retention": {"prune_after_days": 30, "protect": ["agent:main:vip*"]}}
    ).start()
    with daemon.client() as client:
        put(client, "agent:main:old", days_idle=40)
        put(client, "agent:main:vip-old", days_idle=90)
        put(client, "agent:main:main", days_idle=365)
        put(client, "agent:main:fresh", days_idle=1)
        result = client.prune(dry_run=True)
        assert (result.dry_run, result.mode) == (True, "warn")
        assert [(p.key, p.reason) for p in result.pruned] == [("agent:main:old", "age")]
        assert {(k.key, k.reason) for k in result.kept} == {
            ("agent:main:vip-old", "protected"),
            ("agent:main:main", "main"),
        }
        assert keys(client) == {
            "agent:main:old",
            "agent:main:vip-old",
            "agent:main:main",
            "agent:main:fresh",
        }


def test_a_cap_never_takes_protected_sessions_even_when_they_exceed_it(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    retention = {"max_entries": 3, "protect": ["agent:main:keep*"], "min_idle_minutes": 60}
    daemon = make_daemon({"retention": retention}).start()
    with daemon.client() as client:
        for n in range(4):
            put(client, f"agent:main:keep{n}", days_idle=10 + n)
        put(client, "agent:main:main", days_idle=50)
        put(client, "agent:main:recent", days_idle=0.001)  # active 1.4 minutes ago
        for n in range(3):
            put(client, f"agent:main:loose{n}", days_idle=5 + n)
        result = client.prune()
        assert sorted(p.key for p in result.pruned) == [f"agent:main:loose{n}" for n in range(3)]
        assert {p.reason for p in result.pruned} == {"cap"}
        assert result.over_cap and result.entries == 6
        assert keys(client) == {
            *(f"agent:main:keep{n}" for n in range(4)),
            "agent:main:main",
            "agent:main:recent",
        }


def test_the_cap_takes_the_least_recently_active_first_and_no_more(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon({"retention": {"max_entries": 4, "min_idle_minutes": 0}}).start()
    with daemon.client() as client:
        for n in range(7):
            put(client, f"agent:main:k{n}", days_idle=n)
        # A route update is not activity: k6 stays the least recently active.
        client.update_last_route("agent:main:k6", provider="telegram", to="123")
        result = client.prune()
        assert [p.key for p in result.pruned] == ["agent:main:k6", "agent:main:k5", "agent:main:k4"]
        assert keys(client) == {f"agent:main:k{n}" for n in range(4)}


def test_pruned_entries_are_archived_then_deleted_as_writes(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon({"retention": {"prune_after_days": 7}}).start()
    with daemon.client() as client:
        put(client, "agent:main:stale", days_idle=8, label="gone", futureField=["kept", 1])
        put(client, "agent:main:live", days_idle=1)
        since = client.list().seq
        with client.watch(since=since) as watch:
            result = client.prune()
            deleted = next(event for event in watch if event.type != "progress")
        assert [p.key for p in result.pruned] == ["agent:main:stale"]
        assert result.archive is not None
        assert (deleted.type, deleted.key, deleted.seq) == ("delete", "agent:main:stale", since + 1)
    archive = Path(result.archive)
    assert archive.parent == daemon.store_path.parent and archive.stat().st_mode & 0o777 == 0o600
    (line,) = archive.read_text().splitlines()
    record = json.loads(line)
    assert (record["key"], record["reason"]) == ("agent:main:stale", "age")
    assert record["entry"]["futureField"] == ["kept", 1]  # the entry exactly as it was
    assert daemon.stop() == 0
    assert set(json.loads(daemon.store_path.read_text())) == {"agent:main:live"}


def test_warn_only_logs_and_enforce_prunes_on_the_schedule(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    for mode in ("warn", "enforce"):
        retention = {"mode": mode, "prune_after_days": 7, "interval_s": 0.5}
        daemon = make_daemon({"retention": retention}).start()
        with daemon.client() as client:
            put(client, "agent:main:stale", days_idle=8)
            deadline = time.monotonic() + 10
            verb = "would prune (mode warn)" if mode == "warn" else "pruned 1"
            while verb not in daemon.log():
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.1)
            assert ("agent:main:stale" in keys(client)) == (mode == "warn")
        daemon.stop()


async def test_an_entry_written_while_the_prune_runs_is_never_pruned(short_tmp: Path) -> None:
    daemon = InProcessDaemon(short_tmp / "state", {"retention": {"prune_after_days": 1}})
    try:
        old = 1_700_000_000_000 - 5 * DAY_MS  # the in-process daemon's clock starts there
        connection, transport = daemon.connect()
        for key in ("agent:main:a", "agent:main:b"):
            connection.data_received(
                frame_of(
                    {
                        "op": "replace",
                        "id": 1,
                        "key": key,
                        "entry": {"sessionId": key, "updatedAt": old},
                    }
                )
            )
        await daemon.settle()
        archived = asyncio.Event()
        persistence = daemon.registry.by_agent["main"].persistence
        real_archive = persistence.archive

        async def slow_archive(lines: list[bytes]) -> None:
            await real_archive(lines)
            archived.set()
            await asyncio.sleep(0.05)  # the prune waits here while a write comes in

        persistence.archive = slow_archive  # type: ignore[method-assign]
        prune = asyncio.ensure_future(daemon.registry.prune("main", dry_run=False))
        await asyncio.wait_for(archived.wait(), 10)
        connection.data_received(
            frame_of({"op": "patch", "id": 2, "key": "agent:main:a", "patch": {"label": "alive"}})
        )
        result = await prune
        await daemon.settle()
        assert [p.key for p in result.pruned] == ["agent:main:b"]
        assert ("agent:main:a", "changed while pruning") in [(k.key, k.reason) for k in result.kept]
        store = daemon.registry.by_agent["main"].store
        assert set(store.entries) == {"agent:main:a"}
        assert transport.replies()[-1]["result"]["entry"]["label"] == "alive"
    finally:
        await daemon.close()
