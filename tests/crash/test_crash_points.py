"""Durability proven, not assumed: a workload of plain and durable writes, snapshots, journal
rotation, segment deletion, request tokens, a process crash and clean restarts runs on a
file system that forgets what was never synced (``tests/support/crashfs.py``); the power
fails after every I/O step in turn, and what survived is loaded and checked.

After every crash point:
- the store loads, and reports no corruption (a torn end of the last segment is allowed
  when unsynced bytes survive in part);
- it equals the store's history at some point at or after the last durable point — every
  acknowledged durable write (and ``flush``, and clean close) is there with its value, no
  older value comes back, and no change survives without the ones before it;
- the request tokens of acknowledged durable writes are still remembered (journal mode);
- the store's sequence number did not go back past the durable point (journal mode).

In-process and deterministic: the real persistence shell, journal writer, snapshot writer
and loader, with jobs run inline, a fixed clock, and background timers far off (syncs and
snapshots happen because a durable write, ``flush`` or close asks for them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from sessiond.config import PersistenceConfig
from sessiond.dedup import RequestMemory
from sessiond.loader import LoadedStore, load_store
from sessiond.persistence import StorePersistence
from sessiond.snapshotter import InlineSnapshotter
from sessiond.store import Change, SessionStore
from sessiond.syncthread import InlineRunner
from sessiond_client.errors import SessiondError
from tests.support.crashfs import CrashFiles, CrashMode

STORE = Path("/state/agents/main/sessions/sessions.json")
STORE_ID = "agents/main/sessions/sessions.json"
FAR_S = 1e9
RESTART = "\0restart"
Mode = Literal["journal", "debounced"]


class History:
    """Every change the store accepted, in order, and how far durability was promised.

    Positions count changes across restarts (in ``debounced`` mode a restarted store
    numbers its changes from 0 again, so its ``seq`` cannot order them)."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, Any]] = []
        self.durable_position = 0
        self.durable_seq = 0
        self.durable_tokens: set[str] = set()
        self.clock_ms = 1_700_000_000_000
        self.ids = 0

    def record(self, change: Change) -> None:
        self.changes.append((change.key, None if change.entry is None else change.entry.value()))

    def restarted(self, entries: dict[str, Any]) -> None:
        """The store was reopened with ``entries``: later changes build on them (a killed
        ``debounced`` daemon loses what it had not written; that is allowed)."""
        assert self.consistent(entries), f"reopened as {entries}, not its history"
        self.changes.append((RESTART, entries))

    def consistent(self, recovered: dict[str, Any]) -> bool:
        """Whether ``recovered`` is the store at some point at or after the durable one."""
        return any(
            position >= self.durable_position and state == recovered
            for position, state in self.states()
        )

    def now_ms(self) -> int:
        self.clock_ms += 1
        return self.clock_ms

    def new_id(self) -> str:
        self.ids += 1
        return f"session-{self.ids}"

    def promised(self, position: int, seq: int, token: str | None = None) -> None:
        """Every change up to ``position`` (the store at ``seq``) is now promised durable."""
        self.durable_position = max(self.durable_position, position)
        self.durable_seq = max(self.durable_seq, seq)
        if token is not None:
            self.durable_tokens.add(token)

    def states(self) -> list[tuple[int, dict[str, Any]]]:
        """(position, the store after that many changes), from the empty store on."""
        state: dict[str, Any] = {}
        states = [(0, dict(state))]
        for position, (key, value) in enumerate(self.changes, start=1):
            if key is RESTART:
                state = dict(value)
            elif value is None:
                state.pop(key, None)
            else:
                state[key] = value
            states.append((position, dict(state)))
        return states


class Run:
    """One run of the workload on one file system."""

    def __init__(self, fs: CrashFiles, mode: Mode) -> None:
        self.fs = fs
        self.mode = mode
        self.history = History()
        self.config = PersistenceConfig(
            durability=mode,
            flush_delay_s=FAR_S,
            flush_max_delay_s=FAR_S,
            journal_fsync_interval_s=FAR_S,
            journal_snapshot_interval_s=FAR_S,
            retry_initial_s=FAR_S,
            retry_max_s=FAR_S,
        )
        self.persistence: StorePersistence | None = None
        self.store: SessionStore | None = None
        self.tokens = 0

    async def open(self) -> None:
        persistence = StorePersistence(
            STORE,
            self.config,
            store_id=STORE_ID,
            fs=self.fs,
            runner=InlineRunner(),
            snapshotter=InlineSnapshotter(self.fs),
            load_in_thread=False,
            clock=lambda: 1000.0,
        )
        loaded = await persistence.open()
        self.history.restarted({key: entry.value() for key, entry in loaded.entries.items()})
        requests = RequestMemory(max_entries=10_000, ttl_s=FAR_S, clock_s=lambda: 1000.0)
        for token, write in loaded.replayed_tokens.items():
            requests.remember(token, write)
        store = SessionStore(
            "main",
            loaded.entries,
            clock_ms=self.history.now_ms,
            new_session_id=self.history.new_id,
            on_change=persistence.record_change,
            requests=requests,
            seq=loaded.seq,
        )
        store.listeners.append(self.history.record)
        persistence.start(lambda: store.entries, requests.live)
        self.persistence, self.store = persistence, store

    def token(self) -> str:
        self.tokens += 1
        return f"token-{self.tokens}"

    def write(self, key: str, value: Any) -> str:
        """A plain write (acknowledged once its record reached the kernel)."""
        assert self.store is not None
        token = self.token()
        if value is None:
            self.store.delete(key, token=token)
        else:
            self.store.patch(key, {"v": value}, token=token)
        return token

    async def durable(self, key: str, value: Any, *, replace: bool = False) -> None:
        assert self.store is not None and self.persistence is not None
        token = self.token()
        if replace:
            self.store.replace(key, {"sessionId": "fixed", "v": value}, token=token)
        elif value is None:
            self.store.delete(key, token=token)
        else:
            self.store.patch(key, {"v": value}, token=token)
        position, seq = len(self.history.changes), self.store.seq
        await self.persistence.wait_durable(seq)
        self.history.promised(position, seq, token)

    async def flush(self) -> None:
        assert self.store is not None and self.persistence is not None
        position, seq = len(self.history.changes), self.store.seq
        await self.persistence.flush()
        self.history.promised(position, seq)

    async def close(self) -> None:
        assert self.store is not None and self.persistence is not None
        position, seq = len(self.history.changes), self.store.seq
        if await self.persistence.close():
            self.history.promised(position, seq)
        self.persistence = self.store = None

    async def snapshot_now(self) -> None:
        """What the snapshot loop's retry does once the disk works again."""
        assert self.persistence is not None
        await self.persistence.snapshot_once()

    async def try_durable(self, key: str, value: Any) -> None:
        """A durable write that may be refused (``unavailable``) while the disk is full."""
        with contextlib.suppress(SessiondError):
            await self.durable(key, value)

    async def kill(self) -> None:
        """The process dies: what reached the kernel stays (the page cache), nothing more."""
        assert self.persistence is not None
        await asyncio.sleep(0)  # records queued this tick reach the kernel first
        for task in self.persistence.tasks:
            task.cancel()
        await asyncio.gather(*self.persistence.tasks, return_exceptions=True)
        self.persistence = self.store = None


async def journal_workload(run: Run) -> None:
    await run.open()
    for round_ in range(3):
        for n in range(1, 5):
            run.write(f"k{n}", f"a{n}.{round_}")
        await run.durable("k1", f"d1.{round_}")
        run.write("k5", f"a5.{round_}")
        await run.flush()  # a snapshot
        run.write("k2", f"b2.{round_}")
        run.write("k3", None)
        await run.durable("k4", None)
        run.write("k6", f"a6.{round_}")
        await run.flush()  # another: the segments the first one left are deleted
        run.write("k6", f"b6.{round_}")
        run.write("k7", f"a7.{round_}")
        await run.kill()
        await run.open()  # replays k6, k7
        await run.durable("k8", f"d8.{round_}")
        run.write("k9", f"a9.{round_}")
        await run.durable("k10", f"r10.{round_}", replace=True)
        await run.close()
        await run.open()
        run.write("k11", f"a11.{round_}")
        await run.durable("k1", f"d1b.{round_}")
    run.write("k12", "a12")
    await run.durable("k12", "d12")


async def disk_full_workload(run: Run) -> None:
    """The disk fills: writes are accepted in memory, the journal stops; it is freed, a
    snapshot holds everything, and old segments must never overwrite it."""
    await run.open()
    for round_ in range(2):
        run.write("k1", f"v1.{round_}")
        await run.durable("k2", f"d2.{round_}")
        run.fs.disk_full = True
        run.write("k1", f"v2.{round_}")  # accepted in memory; its record cannot be written
        await asyncio.sleep(0)
        await run.try_durable("k3", f"lost?.{round_}")  # refused: not promised
        run.write("k4", f"v4.{round_}")
        await run.snapshot_now()  # fails: the disk is still full
        run.fs.disk_full = False
        run.write("k1", f"v3.{round_}")
        # Its own record gets synced, but the changes before it are in no file yet: it may
        # only be promised once a snapshot holds them.
        later = asyncio.ensure_future(run.try_durable("k5", f"waits.{round_}"))
        for _ in range(10):
            await asyncio.sleep(0)
        await run.snapshot_now()
        await later
        await run.durable("k6", f"d6.{round_}")
        await run.flush()
        run.write("k7", f"v7.{round_}")
        await run.kill()
        await run.open()
    await run.close()


async def debounced_workload(run: Run) -> None:
    await run.open()
    for round_ in range(3):
        run.write("k1", f"a1.{round_}")
        await run.durable("k2", f"d2.{round_}")
        run.write("k1", f"b1.{round_}")
        await run.flush()
        run.write("k3", f"a3.{round_}")
        await run.kill()
        await run.open()
        await run.durable("k4", f"d4.{round_}")
        await run.close()
        await run.open()
        run.write("k5", f"a5.{round_}")
        await run.durable("k5", f"d5.{round_}")


Workload = Literal["journal", "debounced", "disk-full"]
WORKLOADS: dict[Workload, tuple[Mode, Callable[[Run], Awaitable[None]]]] = {
    "journal": ("journal", journal_workload),
    "debounced": ("debounced", debounced_workload),
    "disk-full": ("journal", disk_full_workload),
}
MINIMUM_OPERATIONS: dict[Workload, int] = {"journal": 150, "debounced": 60, "disk-full": 40}


def run_workload(workload: Workload, crash_after: int | None) -> Run:
    mode, steps = WORKLOADS[workload]
    run = Run(CrashFiles(crash_after=crash_after), mode)

    async def go() -> None:
        # Once the machine is down, the workload stops where an operation failed.
        with contextlib.suppress(OSError, SessiondError):
            await steps(run)

    asyncio.run(go())
    return run


def values_of(loaded: LoadedStore) -> dict[str, Any]:
    return {key: entry.value() for key, entry in loaded.entries.items()}


def check_survivor(run: Run, mode: CrashMode, seed: int) -> None:
    survivor = run.fs.crash(mode, seed=seed)
    loaded = load_store(STORE, store_id=STORE_ID, repair=False, fs=survivor)
    report = loaded.report
    where = f"crash after {run.fs.operations} operations ({mode}, seed {seed})"
    assert report.corrupt_error is None, f"{where}: {report.corrupt_error}"
    assert report.journal_corruption is None, f"{where}: {report.journal_corruption}"
    if mode == "drop":
        assert report.journal_dropped_bytes == 0, where
    recovered = values_of(loaded)
    history = run.history
    assert history.consistent(recovered), (
        f"{where}: the store is not its history at or after change "
        f"{history.durable_position}:\n{recovered}\nhistory: {history.changes}"
    )
    if run.mode == "journal":
        missing = history.durable_tokens - set(loaded.replayed_tokens)
        assert not missing, f"{where}: tokens of durable writes forgotten: {missing}"
        assert loaded.seq >= history.durable_seq, where


def operations_of(workload: Workload) -> int:
    full = run_workload(workload, None)
    assert full.history.durable_position > 0
    return full.fs.operations


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("crash", ["drop", "prefix"])
def test_every_crash_point_keeps_every_promise(workload: Workload, crash: CrashMode) -> None:
    total = operations_of(workload)
    assert total > MINIMUM_OPERATIONS[workload]  # hundreds of crash points in all
    for crash_after in range(total + 1):
        run = run_workload(workload, crash_after)
        assert run.fs.operations == crash_after
        for seed in range(3 if crash == "prefix" else 1):
            check_survivor(run, crash, seed * 1000 + crash_after)


def test_the_model_forgets_what_was_not_synced() -> None:
    fs = CrashFiles()
    fs.make_private_dirs("/d")
    fd = fs.create("/d/a")
    fs.write(fd, b"synced")
    fs.fsync(fd)
    fs.write(fd, b"+lost")
    fs.fsync_directory("/d")
    fd2 = fs.create("/d/b")  # never made durable in its directory
    fs.write(fd2, b"x")
    fs.fsync(fd2)
    survivor = fs.crash("drop")
    assert survivor.read_file("/d/a") == b"synced"
    assert survivor.read_file("/d/b") is None
    fs.rename("/d/a", "/d/c")  # a rename without a directory fsync is lost too
    assert fs.crash("drop").read_file("/d/a") == b"synced"


def test_the_model_keeps_a_prefix_of_unsynced_bytes_in_prefix_mode() -> None:
    fs = CrashFiles()
    fs.make_private_dirs("/d")
    fd = fs.create("/d/a")
    fs.fsync_directory("/d")
    fs.write(fd, b"0123456789")
    seen = {fs.crash("prefix", seed=seed).read_file("/d/a") for seed in range(50)}
    assert b"" in seen and b"0123456789" in seen
    assert all(b"0123456789".startswith(value or b"") for value in seen)
    assert len(seen) > 3  # torn in the middle too


def test_after_the_crash_point_nothing_changes_and_everything_fails() -> None:
    fs = CrashFiles(crash_after=2)
    fs.make_private_dirs("/d")  # mkdir + fsync of "/": two operations
    with pytest.raises(OSError, match="crashed"):
        fs.create("/d/a")
    assert fs.operations == 2 and fs.read_file("/d/a") is None
