"""The backup writer of ``sessiond backup`` on a file system that forgets what was never
synced (``tests/support/crashfs.py``): the power fails after every I/O step of a backup of
three stores, and what survived is checked, for every crash mode (drop, prefix, reorder):

- a manifest (``sessiond-backup.json``) that exists is whole, and every store it lists is
  there and complete: loading it (as ``sessiond serve --state-dir`` would) gives exactly
  the exported entries — a manifest never vouches for a store that is not on disk;
- once the backup has returned (the command reports success), the manifest and every store
  survive the crash.

In-process and deterministic: the real writer (:func:`sessiond.cli_transfer.write_backup`),
given the exported stores instead of a client, and the model file system.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sessiond.cli_transfer import MANIFEST_NAME, write_backup
from sessiond.loader import load_store
from sessiond_client import Session
from tests.support.crashfs import CrashFiles, CrashMode

BACKUP = Path("/backups/2026-11-30")


def _session(key: str, n: int) -> Session:
    data = {"sessionId": f"s-{key}", "updatedAt": 1_700_000_000_000 + n, "n": n, "text": "é€"}
    return Session(key, data, revision=f"r{n}")


EXPORTED: list[tuple[str, list[Session], int]] = [
    ("main", [_session(f"agent:main:k{n}", n) for n in range(4)], 17),
    ("ops", [_session(f"agent:ops:k{n}", n) for n in range(2)], 5),
    ("idle", [], 0),
]


def backup_until(crash_after: int | None) -> tuple[CrashFiles, bool]:
    """Back up ``EXPORTED`` until the machine goes down; whether the backup returned."""
    fs = CrashFiles(crash_after=crash_after)
    try:
        write_backup(BACKUP, iter(EXPORTED), fs=fs)
    except OSError:
        return fs, False
    return fs, True


def check_backup(survivor: CrashFiles, finished: bool, where: str) -> None:
    manifest_bytes = survivor.read_file(str(BACKUP / MANIFEST_NAME))
    if manifest_bytes is None:
        assert not finished, f"{where}: the backup returned, but its manifest is gone"
        return
    try:
        manifest: dict[str, Any] = json.loads(manifest_bytes)
    except ValueError:
        pytest.fail(f"{where}: the manifest is not whole: {manifest_bytes!r}")
    assert set(manifest["stores"]) == {agent for agent, _, _ in EXPORTED}, where
    for agent, sessions, seq in EXPORTED:
        listed = manifest["stores"][agent]
        assert (listed["entries"], listed["seq"]) == (len(sessions), seq), where
        path = Path(listed["path"])
        assert survivor.read_file(str(path)) is not None, f"{where}: {agent}'s store is missing"
        loaded = load_store(path, store_id=str(path.relative_to(BACKUP)), repair=False, fs=survivor)
        assert loaded.report.corrupt_error is None, f"{where}: {loaded.report.corrupt_error}"
        values = {key: entry.value() for key, entry in loaded.entries.items()}
        assert values == {session.key: session.data for session in sessions}, where


@pytest.mark.parametrize("crash", ["drop", "prefix", "reorder"])
def test_a_backup_manifest_only_lists_complete_stores(crash: CrashMode) -> None:
    """Crash after every I/O step of a backup: a surviving manifest lists only complete
    stores, and a backup that returned survives whole."""
    full, finished = backup_until(None)
    assert finished
    total = full.operations
    assert total > 30
    for crash_after in range(total + 1):
        fs, finished = backup_until(crash_after)
        assert finished == (crash_after == total)
        for seed in range(1 if crash == "drop" else 5):
            where = f"crash after {crash_after} of {total} operations ({crash}, seed {seed})"
            check_backup(fs.crash(crash, seed=seed * 1000 + crash_after), finished, where)
