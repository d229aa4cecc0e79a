"""A journal damaged by a crash or the disk: everything before the damage loads, the
damage is reported, and the damaged segment is kept for inspection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sessiond.journal import ChangeRecord, encode_record
from tests.support.daemon import DaemonProcess

NO_SNAPSHOTS = {"persistence": {"flush_delay_s": 60.0, "flush_max_delay_s": 60.0}}


def crashed_daemon_with_journal(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    daemon = make_daemon(NO_SNAPSHOTS)
    daemon.start()
    with daemon.client() as client:
        for index in range(10):
            client.patch(f"agent:main:k{index}", {"label": f"v{index}"}, durable=True)
    daemon.kill()
    return daemon


def only_segment(daemon: DaemonProcess) -> Path:
    (segment,) = daemon.store_path.parent.glob("sessions.json.journal.*")
    return segment


def labels(daemon: DaemonProcess) -> dict[str, str]:
    with daemon.client() as client:
        return {s.key: s.data["label"] for s in client.list(limit=100).items}


def test_torn_last_record_is_dropped_and_reported(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = crashed_daemon_with_journal(make_daemon)
    record = encode_record(ChangeRecord("agent:main:torn", b'{"label":"never acked"}', seq=99))
    with only_segment(daemon).open("ab") as journal:
        journal.write(record[:-5])  # the crash hit in the middle of this append
    daemon.start()
    assert labels(daemon) == {f"agent:main:k{i}": f"v{i}" for i in range(10)}
    with daemon.client() as client:
        stats = client.stats()["stores"]["main"]
    assert stats["journal_dropped_bytes"] == len(record) - 5
    assert stats["journal_corruption"] is None
    assert "torn record" in daemon.log()


@pytest.mark.parametrize("offset_from_end", [1, 20])
def test_corrupt_last_record_keeps_everything_before_it(
    make_daemon: Callable[..., DaemonProcess], offset_from_end: int
) -> None:
    daemon = crashed_daemon_with_journal(make_daemon)
    segment = only_segment(daemon)
    data = bytearray(segment.read_bytes())
    data[-offset_from_end] ^= 0xFF
    segment.write_bytes(bytes(data))
    daemon.start()
    assert labels(daemon) == {f"agent:main:k{i}": f"v{i}" for i in range(9)}
    with daemon.client() as client:
        corruption = client.stats()["stores"]["main"]["journal_corruption"]
    assert "checksum mismatch" in corruption
    kept = list(segment.parent.glob(segment.name + ".corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == bytes(data)
