"""Durability proven, not assumed: a workload of plain and durable writes, snapshots, journal
rotation, segment deletion, request tokens, retention (prune), a process crash and clean
restarts runs on a file system that forgets what was never synced
(``tests/support/crashfs.py``); the power fails after every I/O step in turn, and what
survived (all of it dropped, a prefix kept, or an arbitrary subset of a directory's
unsynced name changes kept) is loaded and checked.

After every crash point:
- the store loads, and reports no corruption (a torn end of the last segment is allowed
  when unsynced bytes survive in part);
- it equals the store's history at some point at or after the last durable point — every
  acknowledged durable write (and ``flush``, and clean close) is there with its value, no
  older value comes back, and no change survives without the ones before it;
- the request tokens of acknowledged durable writes are still remembered (journal mode);
- the store's sequence number did not go back past the durable point (journal mode);
- every entry retention pruned that is gone from the store is in the prune archive
  (archive before delete).

In-process and deterministic: the real persistence shell, journal writer, snapshot writer
and loader, with jobs run inline (or, for the ``concurrent`` workload, settled a few loop
iterations late, so records are appended while a sync is in flight), a fixed clock, and
background timers far off (syncs and snapshots happen because a durable write, ``flush``
or close asks for them). Each workload run has a deadline: a hang fails the test.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pytest

from sessiond.config import PersistenceConfig
from sessiond.dedup import RequestMemory
from sessiond.journal_writer import JournalWriter, SyncJob
from sessiond.loader import LoadedStore, load_store
from sessiond.persistence import StorePersistence
from sessiond.registry import enforce_retention
from sessiond.retention import DAY_MS, RetentionConfig, plan_retention
from sessiond.snapshotter import InlineSnapshotter
from sessiond.store import Change, SessionStore
from sessiond.syncthread import InlineRunner, JobRunner
from sessiond_client.errors import SessiondError
from tests.support.crashfs import CrashFiles, CrashMode
from tests.support.lagrunner import LaggingRunner

STORE = Path("/state/agents/main/sessions/sessions.json")
STORE_ID = "agents/main/sessions/sessions.json"
ARCHIVE = STORE.with_name("sessions.pruned.jsonl")
FAR_S = 1e9
WORKLOAD_DEADLINE_S = 20.0
"""Real time one workload run may take (a few milliseconds normally): a hang fails."""
MAX_TICKS = 10_000
"""Loop ticks one burst of overlapping writes may take (tens normally)."""
RETENTION = RetentionConfig(mode="enforce", prune_after_days=1.0, protect=["k*", "p*"])
"""Prunes every ``old-*`` entry once the clock is a day past it."""
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

    def __init__(
        self, fs: CrashFiles, mode: Mode, runner: Callable[[], JobRunner] = InlineRunner
    ) -> None:
        self.fs = fs
        self.mode = mode
        self.runner = runner
        self.history = History()
        self.pruned: dict[str, Any] = {}
        """Entries retention set out to prune (each durable before), and their values."""
        self.seen: collections.Counter[str] = collections.Counter()
        """How often the journal met the situations a workload is meant to produce."""
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
            runner=self.runner(),
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
        self.observe(persistence.journal)

    def observe(self, journal: JournalWriter) -> None:
        """Count the moments the ``concurrent`` workload exists for (so it cannot silently
        stop producing them): a sync completing after more records were appended, and a
        rotation that has to sync the segment's tail itself."""
        synced, rotate_now = journal.synced, journal.rotate_now

        def observed_synced(job: SyncJob) -> None:
            if journal.appended_seq > job.seq:
                self.seen["sync completed behind newer records"] += 1
            synced(job)

        def observed_rotate_now() -> None:
            if journal.unsynced:
                self.seen["rotate_now with an unsynced tail"] += 1
            rotate_now()

        journal.synced = observed_synced  # type: ignore[method-assign]
        journal.rotate_now = observed_rotate_now  # type: ignore[method-assign]

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

    async def prune(self) -> None:
        """Retention in ``enforce`` mode, as the daemon runs it (archive, then delete), two
        days on: every ``old-*`` entry goes."""
        assert self.store is not None and self.persistence is not None
        now_ms = self.history.clock_ms + 2 * DAY_MS
        plan = plan_retention(self.store.items(), RETENTION, now_ms=now_ms, always_kept=frozenset())
        for pruned, _ in plan.prune:
            self.pruned[pruned.key] = self.store.entries[pruned.key].value()
        await enforce_retention(self.store, self.persistence, plan, now_ms)

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


async def retention_workload(run: Run) -> None:
    """Retention prunes between writes, snapshots, a kill and restarts: first creating the
    archive, then appending to it; the deletions become durable through a journal sync of
    a segment already in the directory (no directory fsync on the way)."""
    await run.open()
    for round_ in range(2):
        for n in range(3):
            run.write(f"old-{round_}-{n}", n)
        run.write("k1", f"a1.{round_}")
        await run.flush()  # the entries retention takes are durable; the segment rotates
        await run.durable("k2", f"d2.{round_}")  # a new segment, made durable in the directory
        await run.prune()  # archive, then delete
        run.write("k3", f"a3.{round_}")
        await run.durable("k4", f"d4.{round_}")  # the deletions are durable now
        run.write(f"old-{round_}-late", "late")
        await run.durable("k5", f"d5.{round_}")
        await run.prune()  # the archive exists: appended to
        await run.durable("k6", f"d6.{round_}")
        await run.flush()
        run.write("k7", f"a7.{round_}")
        await run.kill()
        await run.open()
    await run.close()


async def overlapping(run: Run, tag: str, *starts: Callable[[], Awaitable[None]]) -> None:
    """Start each of ``starts`` one loop tick after the other, and write one plain change
    every tick until all of them are done: records are appended while syncs and snapshots
    are in flight. Raises the first error one of them met (the machine is down)."""
    tasks: list[asyncio.Future[None]] = []
    tick = 0
    while tick < len(starts) or not all(task.done() for task in tasks):
        assert tick < MAX_TICKS, f"{tag}: still waiting after {tick} ticks (a hang)"
        if tick < len(starts):
            tasks.append(asyncio.ensure_future(starts[tick]()))
        run.write(f"p{tick % 5}", f"{tag}.{tick}")
        tick += 1
        await asyncio.sleep(0)
    errors = [error for task in tasks if (error := task.exception()) is not None]
    if errors:
        raise errors[0]


async def concurrent_workload(run: Run) -> None:
    """Durable writes, flushes and a forced rotation while writes keep coming and each sync
    settles a few loop iterations late (``LaggingRunner``): a sync may only release the
    writes its job covered, a segment may only be closed once clean, and a rotation that
    cannot wait for a clean moment must sync the tail itself."""
    await run.open()
    for round_ in range(2):

        def durable(key: str, value: str) -> Callable[[], Awaitable[None]]:
            return lambda: run.durable(key, value)

        # Group commit under load: each durable write arrives while the previous one syncs.
        await overlapping(run, f"a{round_}", durable("k1", f"d1.{round_}"), durable("k2", "x"))
        # A snapshot in flight: rotation is wanted, but the segment is never clean when a
        # sync completes; the syncs that follow count until rotate_now syncs the tail.
        await overlapping(
            run,
            f"b{round_}",
            run.flush,
            *(durable(f"k{n}", f"d{n}.{round_}") for n in range(3, 8)),
        )
        await overlapping(run, f"c{round_}", *(durable(f"k{n}", f"e{n}") for n in range(1, 4)))
        run.write("k8", f"a8.{round_}")
        await run.kill()
        await run.open()
        await overlapping(run, f"d{round_}", run.flush, durable("k9", f"d9.{round_}"))
        await run.close()
        await run.open()


class Workload(NamedTuple):
    mode: Mode
    steps: Callable[[Run], Awaitable[None]]
    minimum_operations: int
    """Crash points it must offer (hundreds in all)."""
    runner: Callable[[], JobRunner] = InlineRunner


WorkloadName = Literal["journal", "debounced", "disk-full", "retention", "concurrent"]
WORKLOADS: dict[WorkloadName, Workload] = {
    "journal": Workload("journal", journal_workload, 150),
    "debounced": Workload("debounced", debounced_workload, 60),
    "disk-full": Workload("journal", disk_full_workload, 40),
    "retention": Workload("journal", retention_workload, 60),
    "concurrent": Workload("journal", concurrent_workload, 150, LaggingRunner),
}


def run_workload(
    workload: WorkloadName,
    crash_after: int | None,
    *,
    deadline_s: float = WORKLOAD_DEADLINE_S,
    steps: Callable[[Run], Awaitable[None]] | None = None,
) -> Run:
    """Run ``workload`` (or ``steps`` in its setting) until it ends or the machine goes down
    after ``crash_after`` operations. A run that does neither within ``deadline_s`` fails
    the test (a broken build can wait or spin forever)."""
    spec = WORKLOADS[workload]
    run = Run(CrashFiles(crash_after=crash_after), spec.mode, spec.runner)

    async def go() -> None:
        try:
            async with asyncio.timeout(deadline_s):
                # Once the machine is down, the workload stops where an operation failed.
                with contextlib.suppress(OSError, SessiondError):
                    await (steps or spec.steps)(run)
        except TimeoutError:
            pytest.fail(
                f"{workload} (crash after {crash_after}) did not finish within "
                f"{deadline_s} s: it hangs"
            )

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
    archived = archived_entries(survivor)
    for key, value in run.pruned.items():
        if key not in recovered:
            assert archived.get(key) == value, (
                f"{where}: {key} was pruned, but the archive does not hold it: {archived}"
            )


def archived_entries(survivor: CrashFiles) -> dict[str, Any]:
    """The entries in the prune archive, by key (a torn last line is not an entry)."""
    data = survivor.read_file(str(ARCHIVE)) or b""
    lines = data.split(b"\n")[:-1]  # what follows the last newline is torn
    return {line["key"]: line["entry"] for line in map(json.loads, lines)}


def full_run(workload: WorkloadName) -> Run:
    """``workload`` without a crash: how many crash points it offers."""
    full = run_workload(workload, None)
    assert full.history.durable_position > 0
    assert full.fs.operations > WORKLOADS[workload].minimum_operations
    return full


def check_it_did_its_job(workload: WorkloadName, full: Run) -> None:
    """The situations ``workload`` exists for did happen (it has not become vacuous)."""
    if workload == "retention":
        assert len(full.pruned) == 8 and not full.pruned.keys() & values_of_store(full)
    if workload == "concurrent":
        assert full.seen["sync completed behind newer records"] > 5, full.seen
        assert full.seen["rotate_now with an unsynced tail"] > 0, full.seen


def values_of_store(run: Run) -> dict[str, Any]:
    """The entries that survive a crash once ``run`` has ended (it ends closed)."""
    return values_of(load_store(STORE, store_id=STORE_ID, repair=False, fs=run.fs.crash()))


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("crash", ["drop", "prefix", "reorder"])
def test_every_crash_point_keeps_every_promise(workload: WorkloadName, crash: CrashMode) -> None:
    """Crash after every I/O step of ``workload``; every survivor keeps every promise (see
    the module docstring), for every way a crash can leave what was not synced."""
    full = full_run(workload)
    total = full.fs.operations
    for crash_after in range(total + 1):
        run = run_workload(workload, crash_after)
        assert run.fs.operations == crash_after
        for seed in range(1 if crash == "drop" else 3):
            check_survivor(run, crash, seed * 1000 + crash_after)
    check_it_did_its_job(workload, full)


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


def test_the_model_keeps_any_subset_of_unsynced_name_changes_in_reorder_mode() -> None:
    """Reorder mode: a later name change may survive without an earlier one (an unlink
    without the rename before it), but a rename is never split in two."""
    fs = CrashFiles()
    fs.make_private_dirs("/d")
    for name in ("old", "tmp"):
        fd = fs.create(f"/d/{name}")
        fs.write(fd, name.encode())
        fs.fsync(fd)
    fs.fsync_directory("/d")
    fs.rename("/d/tmp", "/d/store")
    fs.unlink("/d/old")
    seen = set()
    for seed in range(200):
        survivor = fs.crash("reorder", seed=seed)
        names = frozenset(survivor.listdir("/d"))
        assert ("tmp" in names) != ("store" in names), names  # a rename, whole or not at all
        seen.add(names)
    assert seen == {
        frozenset({"old", "tmp"}),
        frozenset({"old", "store"}),
        frozenset({"store"}),
        frozenset({"tmp"}),  # the unlink survived without the rename before it
    }


async def _waits_forever(run: Run) -> None:
    await asyncio.get_running_loop().create_future()


async def _spins_forever(run: Run) -> None:
    ticks = 0
    while ticks >= 0:  # forever, yielding to the loop every time
        ticks += 1
        await asyncio.sleep(0)


@pytest.mark.parametrize("hang", [_waits_forever, _spins_forever])
def test_a_workload_that_hangs_fails_instead_of_hanging(
    hang: Callable[[Run], Awaitable[None]],
) -> None:
    """A broken build can wait or spin forever; the deadline turns that into a failure."""
    with pytest.raises(pytest.fail.Exception, match="it hangs"):
        run_workload("concurrent", None, deadline_s=0.2, steps=hang)


def test_overlapping_writes_give_up_after_a_bounded_number_of_ticks() -> None:
    """A burst whose durable write never completes fails (it does not write forever)."""

    async def steps(run: Run) -> None:
        await run.open()
        await overlapping(run, "x", lambda: _waits_forever(run))

    with pytest.raises(AssertionError, match="a hang"):
        run_workload("concurrent", None, steps=steps)
