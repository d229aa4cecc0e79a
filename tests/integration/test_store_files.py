"""Loading existing store files: corrupt ones are moved aside (never overwritten), JSON5
loads, and fields this version does not know survive a patch and a flush."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.support.daemon import DaemonProcess

CORRUPT_FILES = {
    "truncated": b'{"agent:main:a": {"sessionId": "s", "updatedAt": 1',
    "array": b'[{"sessionId": "s", "updatedAt": 1}]',
    "number": b"42",
    "garbage": b"\x00\xffnot json at all",
}


def place_store(daemon: DaemonProcess, data: bytes) -> None:
    daemon.store_path.parent.mkdir(parents=True)
    daemon.store_path.write_bytes(data)


@pytest.mark.parametrize("kind", sorted(CORRUPT_FILES))
def test_corrupt_store_is_moved_aside_with_its_bytes(
    make_daemon: Callable[..., DaemonProcess], kind: str
) -> None:
    daemon = make_daemon()
    place_store(daemon, CORRUPT_FILES[kind])
    daemon.start()
    with daemon.client() as client:
        assert client.list().items == []
        stats = client.stats()["stores"]["main"]
        assert stats["corrupt_moved_to"]
        client.patch("agent:main:new", {"label": "fresh"})
        client.flush()
    aside = list(daemon.store_path.parent.glob("sessions.json.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == CORRUPT_FILES[kind]
    assert list(json.loads(daemon.store_path.read_text())) == ["agent:main:new"]
    assert "is corrupt" in daemon.log()


def test_refuse_mode_keeps_the_corrupt_file_and_answers_unavailable(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon({"persistence": {"on_corrupt": "refuse"}})
    place_store(daemon, CORRUPT_FILES["truncated"])
    daemon.start()
    from sessiond_client import UnavailableError

    with daemon.client() as client, pytest.raises(UnavailableError, match="corrupt"):
        client.get("agent:main:a")
    assert daemon.store_path.read_bytes() == CORRUPT_FILES["truncated"]
    assert daemon.stop() == 0
    assert daemon.store_path.read_bytes() == CORRUPT_FILES["truncated"]


def test_json5_store_with_comments_loads(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon()
    place_store(
        daemon,
        b"""// written by hand
{
  'agent:main:a': {sessionId: 's-a', updatedAt: 1700000000000, label: 'hand',},  /* trailing */
}
""",
    )
    daemon.start()
    with daemon.client() as client:
        session = client.get("agent:main:a")
        assert session is not None
        assert session.data == {"sessionId": "s-a", "updatedAt": 1700000000000, "label": "hand"}
        assert client.stats()["stores"]["main"]["loaded_syntax"] == "json5"


def test_empty_file_is_an_empty_store(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon()
    place_store(daemon, b"  \n")
    daemon.start()
    with daemon.client() as client:
        assert client.list().items == []
        assert client.stats()["stores"]["main"]["corrupt_moved_to"] is None


def test_unknown_fields_survive_patch_and_flush(make_daemon: Callable[..., DaemonProcess]) -> None:
    unknown = {
        "futureField": {"nested": [1, 2.5, None, True, "é"]},
        "bigNumber": 12345678901,
        "emptyThing": {},
    }
    original = {
        "agent:main:a": {"sessionId": "s", "updatedAt": 1700000000000, **unknown},
        "agent:main:b": {"sessionId": "t", "updatedAt": 1, "other": [{"x": "y"}]},
    }
    daemon = make_daemon()
    place_store(daemon, json.dumps(original, indent=2).encode())
    daemon.start()
    with daemon.client() as client:
        patched = client.patch("agent:main:a", {"label": "touched"})
        assert {name: patched.data[name] for name in unknown} == unknown
        client.flush()
    on_disk = json.loads(daemon.store_path.read_text())
    assert {name: on_disk["agent:main:a"][name] for name in unknown} == unknown
    assert on_disk["agent:main:a"]["label"] == "touched"
    assert on_disk["agent:main:b"] == original["agent:main:b"]


def test_leftover_temp_files_are_removed_and_lock_files_ignored(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon()
    place_store(daemon, b'{"agent:main:a": {"sessionId": "s", "updatedAt": 1}}')
    leftover = daemon.store_path.with_name("sessions.json.sessiond-deadbeef.tmp")
    leftover.write_bytes(b"partial")
    foreign = daemon.store_path.with_name("sessions.json.1234.abcd.tmp")
    foreign.write_bytes(b"someone else's")
    lock = daemon.store_path.with_name("sessions.json.lock")
    lock.write_text("held by a dead gateway")
    daemon.start()
    with daemon.client() as client:
        client.patch("agent:main:a", {"label": "x"}, durable=True)
        client.flush()
    assert not leftover.exists()
    assert foreign.exists()
    assert lock.read_text() == "held by a dead gateway"
