"""Durable writes are released by every journal sync, including the ones a rotation makes.

Found by the benchmark: 64 durable patches in flight on one connection, with snapshots
running, froze a daemon for good. A rotation synced the old segment's tail itself (it
appends pending records first) without telling the durability tracker; the records it
synced were durable, but their waiters were never released, and the sync loop, seeing
waiters and nothing left to sync, went round without ever yielding to the event loop.

Here persistence runs on real files in the test's event loop, with a runner whose syncs
settle a few loop turns late (as the sync thread's do), while writes and durable waits
keep arriving around flushes. Every durable wait must end, and the loop must stay live:
a watchdog thread fails the test if the loop stops turning.
"""

from __future__ import annotations

import _thread
import asyncio
import itertools
import signal
import threading
import time
from pathlib import Path

from sessiond.config import PersistenceConfig
from sessiond.dedup import RequestMemory
from sessiond.persistence import StorePersistence
from sessiond.snapshotter import InlineSnapshotter
from sessiond.store import SessionStore
from tests.support.lagrunner import LaggingRunner

FAR_S = 1e9
ROUNDS = 40
WRITERS = 64
LOOP_STALL_LIMIT_S = 10.0


class LoopWatchdog:
    """Notes when the loop last turned; a stall is reported, not hung on."""

    def __init__(self) -> None:
        self.last_turn = time.monotonic()
        self.stalled = threading.Event()
        self.done = threading.Event()

    def tick(self) -> None:
        self.last_turn = time.monotonic()

    def watch(self) -> None:
        while not self.done.wait(0.2):
            if time.monotonic() - self.last_turn > LOOP_STALL_LIMIT_S:
                self.stalled.set()
                # The spin is Python code: a signal handler raising in it ends it.
                _thread.interrupt_main(signal.SIGUSR1)
                return


class LoopStalled(BaseException):
    """Raised in the spinning code (BaseException: ``except Exception`` must not eat it)."""


def _raise_stalled(signum: int, frame: object) -> None:
    raise LoopStalled


async def _open(state: Path) -> tuple[StorePersistence, SessionStore]:
    path = state / "agents" / "main" / "sessions" / "sessions.json"
    path.parent.mkdir(parents=True)
    config = PersistenceConfig(
        durability="journal",
        flush_delay_s=FAR_S,
        flush_max_delay_s=FAR_S,
        journal_fsync_interval_s=FAR_S,
        journal_snapshot_interval_s=FAR_S,
    )
    persistence = StorePersistence(
        path,
        config,
        store_id="agents/main/sessions/sessions.json",
        runner=LaggingRunner(lag=3),
        snapshotter=InlineSnapshotter(),
        load_in_thread=False,
    )
    loaded = await persistence.open()
    clock = itertools.count(1_700_000_000_000)
    ids = itertools.count(1)
    requests = RequestMemory(max_entries=1000, ttl_s=FAR_S, clock_s=time.monotonic)
    store = SessionStore(
        "main",
        loaded.entries,
        clock_ms=lambda: next(clock),
        new_session_id=lambda: f"s-{next(ids)}",
        on_change=persistence.record_change,
        requests=requests,
        seq=loaded.seq,
    )
    persistence.start(lambda: store.entries, requests.live)
    return persistence, store


async def _durable_writes_around_flushes(state: Path, watchdog: LoopWatchdog) -> int:
    """``WRITERS`` tasks each write and wait for durability ``ROUNDS`` times (64 durable
    patches in flight, as the benchmark had), while another task keeps flushing: syncs
    complete behind newer records, and rotations must sync a segment's tail themselves."""
    persistence, store = await _open(state)
    released = 0
    writing = True

    async def writer(index: int) -> None:
        nonlocal released
        for round_index in range(ROUNDS):
            for _ in range((index + round_index) % 7):  # spread the writes over the syncs
                await asyncio.sleep(0)
            store.patch(f"k{index}", {"round": round_index})
            await asyncio.wait_for(persistence.wait_durable(store.seq), timeout=5.0)
            released += 1
            watchdog.tick()

    async def flusher() -> None:
        while writing:
            await asyncio.wait_for(persistence.flush(), timeout=5.0)
            for _ in range(5):
                await asyncio.sleep(0)
            watchdog.tick()

    try:
        flushing = asyncio.ensure_future(flusher())
        await asyncio.gather(*(writer(index) for index in range(WRITERS)))
        writing = False
        await flushing
    finally:
        await persistence.close()
    return released


def test_every_durable_write_around_rotations_is_released(short_tmp: Path) -> None:
    watchdog = LoopWatchdog()
    previous = signal.signal(signal.SIGUSR1, _raise_stalled)
    thread = threading.Thread(target=watchdog.watch, daemon=True)
    thread.start()
    released = 0
    try:
        released = asyncio.run(_durable_writes_around_flushes(short_tmp, watchdog))
    except (LoopStalled, TimeoutError):
        pass  # reported below, with the reason
    finally:
        watchdog.done.set()
        thread.join()
        signal.signal(signal.SIGUSR1, previous)
    assert not watchdog.stalled.is_set(), f"the event loop stopped for {LOOP_STALL_LIMIT_S} s"
    assert released == ROUNDS * WRITERS, "durable writes were never released"
