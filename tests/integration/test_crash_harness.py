"""Crash harness: 4 writer processes under load while the daemon is killed with SIGKILL at
random moments and restarted, 20 times (journal mode) and 8 times (debounced mode).

After every kill the store is loaded from disk exactly as the restarted daemon will load
it (``sessiond.loader.load_store`` without repairs) and checked against the writers' logs:

- no entry is half-applied (each write stores its sequence number three times);
- every write that had to survive did: in ``journal`` mode every acknowledged write (the
  journal record reaches the kernel before the reply, so a process kill loses nothing);
  in ``debounced`` mode every durable write, and every other write acknowledged more than
  the configured window (``flush_max_delay_s`` + one flush) before the kill;
- the entry is the state left by that write or by a later one of the same key (acknowledged
  or the one write per writer that was in flight).

Set ``SESSIOND_CRASH_ROUNDS`` for a longer soak and ``SESSIOND_CRASH_SEED`` to replay one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sessiond.entries import StoredEntry
from sessiond.loader import load_store
from tests.support.daemon import DaemonProcess

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 4
FLUSH_MAX_DELAY_S = 0.5
WINDOW_MARGIN_MS = 1500  # one flush plus scheduling noise on a shared 2-core machine


@dataclass(frozen=True)
class Op:
    seq: int
    kind: str  # "put" | "del"
    durable: bool
    acked: bool
    ack_ms: int


def read_ops(log_paths: list[Path]) -> dict[str, list[Op]]:
    """Every write the writers tried, by key; ``acked`` once the daemon confirmed it."""
    tried: dict[tuple[str, int], tuple[str, bool]] = {}
    acked: dict[tuple[str, int], int] = {}
    for path in log_paths:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 6:
                continue  # a line being written right now
            state, durable, kind, key, seq, ack_ms = parts
            tried[(key, int(seq))] = (kind, durable == "1")
            if state == "ack":
                acked[(key, int(seq))] = int(ack_ms)
    ops: dict[str, list[Op]] = {}
    for (op_key, op_seq), (op_kind, op_durable) in tried.items():
        acked_at = acked.get((op_key, op_seq))
        op = Op(op_seq, op_kind, op_durable, acked_at is not None, acked_at or 0)
        ops.setdefault(op_key, []).append(op)
    for key_ops in ops.values():
        key_ops.sort(key=lambda op: op.seq)
    return ops


def check_entry_whole(key: str, entry: StoredEntry) -> int:
    value: Any = entry.value()
    seq = value["seq"]
    assert value["seqCopy"] == seq and value["tag"] == f"{key}#{seq}", f"half-applied {key}"
    return int(seq)


def must_survive(op: Op, mode: str, kill_times_ms: list[int]) -> bool:
    """Whether no crash may have lost ``op``: always when it was durable or journaled;
    otherwise unless a kill came within the window after its acknowledgement."""
    if not op.acked:
        return False
    if mode == "journal" or op.durable:
        return True
    window_ms = FLUSH_MAX_DELAY_S * 1000 + WINDOW_MARGIN_MS
    first_kill = min((kill for kill in kill_times_ms if kill >= op.ack_ms), default=None)
    return first_kill is None or first_kill - op.ack_ms > window_ms


def check_store(
    entries: dict[str, StoredEntry], ops: dict[str, list[Op]], mode: str, kill_times_ms: list[int]
) -> None:
    for key in set(entries) | set(ops):
        entry = entries.get(key)
        state_seq = None if entry is None else check_entry_whole(key, entry)
        history = ops.get(key, [])
        required = [op for op in history if must_survive(op, mode, kill_times_ms)]
        floor = required[-1].seq if required else 0
        allowed = {op.seq if op.kind == "put" else None for op in history if op.seq >= floor}
        if not required:
            allowed.add(None)
            allowed.update(op.seq for op in history if op.kind == "put")
        assert state_seq in allowed, (
            f"{key}: state seq {state_seq}, must reflect op {floor} or later "
            f"({[op for op in history if op.seq >= floor]})"
        )


@contextmanager
def writers(daemon: DaemonProcess, log_dir: Path) -> Iterator[list[Path]]:
    logs = [log_dir / f"writer{index}.log" for index in range(WRITERS)]
    for log in logs:
        log.touch()  # a kill may come before a writer has started
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.crash_writer",
                daemon.socket_path,
                str(log),
                str(index),
            ],
            cwd=ROOT,
        )
        for index, log in enumerate(logs)
    ]
    try:
        yield logs
    finally:
        for process in processes:
            process.send_signal(signal.SIGKILL)
        for process in processes:
            process.wait(30)


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "rounds"), [("journal", 20), ("debounced", 8)])
def test_sigkill_under_load_loses_nothing_it_promised(
    make_daemon: Callable[..., DaemonProcess], mode: str, rounds: int
) -> None:
    rounds = int(os.environ.get("SESSIOND_CRASH_ROUNDS", rounds))
    seed = int(os.environ.get("SESSIOND_CRASH_SEED", random.randrange(1 << 30)))
    print(f"crash harness: mode={mode} rounds={rounds} SESSIOND_CRASH_SEED={seed}")
    rng = random.Random(seed)
    daemon = make_daemon(
        {
            "persistence": {
                "durability": mode,
                "flush_delay_s": 0.1,
                "flush_max_delay_s": FLUSH_MAX_DELAY_S,
            }
        }
    )
    daemon.start()
    kills_ms: list[int] = []
    with writers(daemon, daemon.root) as logs:
        for _ in range(rounds):
            time.sleep(rng.uniform(0.15, 0.9))
            daemon.kill()  # returns once the process is gone: every ack came before now
            kills_ms.append(time.time_ns() // 1_000_000)
            time.sleep(0.05)  # let acknowledgements that arrived before the kill be logged
            loaded = load_store(daemon.store_path, store_id=None, repair=False)
            assert loaded.report.corrupt_error is None
            assert loaded.report.journal_corruption is None
            check_store(loaded.entries, read_ops(logs), mode, kills_ms)
            daemon.start()
        acknowledged = sum(op.acked for key_ops in read_ops(logs).values() for op in key_ops)
        assert acknowledged > rounds * 20, "the writers made too little progress to mean much"
    assert daemon.stop() == 0
    final = load_store(daemon.store_path, store_id=None, repair=False)
    # The graceful stop lost nothing, but what the last kills were allowed to lose stays lost.
    check_store(final.entries, read_ops(logs), mode, [*kills_ms, time.time_ns() // 1_000_000])
