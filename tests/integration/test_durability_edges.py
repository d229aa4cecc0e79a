"""What the journal and the snapshot promise at their edges, on a real daemon: a snapshot is
never overwritten by journal records it already holds (whatever the timing of segment
deletion), changes replayed at start are unsaved changes (``flush`` and shutdown write
them), a clean stop leaves no record the snapshot holds, and the store's ``seq`` survives
restarts."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sessiond.loader import load_store
from sessiond_client import Client
from tests.support.daemon import DaemonProcess
from tests.support.diskfault import DiskFault

KEY = "agent:main:k"
BLOB = "x" * 20_000  # more than the free room left in the last allocated page of a file
NO_TIMED_SNAPSHOTS = {
    "persistence": {
        "flush_delay_s": 600.0,
        "flush_max_delay_s": 600.0,
        "journal_snapshot_interval_s": 600.0,
        "retry_initial_s": 0.1,
        "retry_max_s": 0.2,
    }
}


def label(client: Client, key: str = KEY) -> Any:
    session = client.get(key)
    return None if session is None else session.data.get("label")


def file_labels(daemon: DaemonProcess) -> dict[str, Any]:
    """What sessions.json itself holds (what the gateway would read)."""
    return {
        key: entry.get("label") for key, entry in json.loads(daemon.store_path.read_text()).items()
    }


def segments(daemon: DaemonProcess) -> list[Path]:
    return sorted(daemon.store_path.parent.glob("sessions.json.journal.*"))


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_old_segments_never_overwrite_a_newer_snapshot(
    make_daemon: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    # k=v1 is journaled; the disk fills, so k=v2 and k=v3 are accepted in memory only; the
    # disk is freed and a snapshot holds v3; the daemon dies before the old segment is
    # deleted (put back here, as a kill -9 between the rename and the unlink leaves it).
    daemon = make_daemon(NO_TIMED_SNAPSHOTS)
    fault = DiskFault(daemon.state_dir)
    daemon.wrapper = fault.wrapper
    daemon.start()
    fault.attach(daemon.pid)
    kept = short_tmp / "kept"
    kept.mkdir()
    try:
        with daemon.client() as client:
            client.patch(KEY, {"label": "v1"}, durable=True)
            fault.break_disk()
            client.patch(KEY, {"label": "v2", "blob": BLOB})  # its journal append fails
            wait_for(lambda: client.stats()["stores"]["main"]["failing"])
            for segment in segments(daemon):
                shutil.copy2(segment, kept / segment.name)
            fault.repair_disk()
            client.patch(KEY, {"label": "v3"})
            assert client.flush()
            assert file_labels(daemon)[KEY] == "v3"
        daemon.kill()
        for copy in kept.iterdir():
            if not (daemon.store_path.parent / copy.name).exists():
                shutil.copy2(copy, daemon.store_path.parent / copy.name)
        daemon.start()
        with daemon.client() as client:
            assert label(client) == "v3"
    finally:
        daemon.ensure_stopped()
        fault.close()


def test_replayed_changes_are_written_by_flush(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(NO_TIMED_SNAPSHOTS).start()
    with daemon.client() as client:
        client.patch(KEY, {"label": "old"})
        assert client.flush()
        client.patch(KEY, {"label": "new"}, durable=True)  # journal only
    daemon.kill()
    daemon.start()
    assert file_labels(daemon)[KEY] == "old"
    with daemon.client() as client:
        assert client.stats()["stores"]["main"]["dirty"] == 1
        assert client.flush()
    assert file_labels(daemon)[KEY] == "new"


def test_replayed_changes_are_written_at_shutdown(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon(NO_TIMED_SNAPSHOTS).start()
    with daemon.client() as client:
        client.patch(KEY, {"label": "old"})
        assert client.flush()
        client.patch(KEY, {"label": "new"}, durable=True)
    daemon.kill()
    daemon.start()
    assert daemon.stop() == 0
    assert file_labels(daemon)[KEY] == "new"


def test_a_clean_stop_leaves_nothing_pending_and_keeps_seq(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon(NO_TIMED_SNAPSHOTS).start()
    with daemon.client() as client:
        for n in range(5):
            client.patch(f"agent:main:k{n}", {"label": f"v{n}"})
        seq = client.stats()["stores"]["main"]["seq"]
    assert seq == 5
    assert daemon.stop() == 0
    loaded = load_store(
        daemon.store_path, store_id="agents/main/sessions/sessions.json", repair=False
    )
    assert loaded.report.journal_records_replayed == 0  # the file holds every change
    assert loaded.report.journal_records_covered == 0  # and no record it holds is left
    assert len(file_labels(daemon)) == 5
    daemon.start()
    with daemon.client() as client:
        assert client.stats()["stores"]["main"]["seq"] == seq
        written = client.patch(KEY, {"label": "after"})
    assert written.seq == seq + 1


def test_seq_survives_a_kill(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon().start()
    with daemon.client() as client:
        last = [client.patch(KEY, {"label": f"v{n}"}).seq for n in range(10)][-1]
    daemon.kill()
    daemon.start()
    with daemon.client() as client:
        assert client.list().seq == last
        assert client.patch(KEY, {"label": "next"}).seq == last + 1


def test_plain_writes_are_fsynced_within_the_interval(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # Power loss may take at most journal_fsync_interval_s of plain writes.
    daemon = make_daemon({"persistence": {"journal_fsync_interval_s": 0.2}}).start()
    with daemon.client() as client:
        client.patch(KEY, {"label": "plain"})
        wait_for(lambda: client.stats()["stores"]["main"]["journal_fsyncs"] >= 1, timeout_s=5.0)
        before = client.stats()["stores"]["main"]["journal_fsyncs"]
        time.sleep(0.5)
        client.patch(KEY, {"label": "plain again"})
        wait_for(lambda: client.stats()["stores"]["main"]["journal_fsyncs"] > before, timeout_s=5.0)
