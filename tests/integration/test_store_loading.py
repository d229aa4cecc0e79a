"""Store files the original gateway may leave behind, loaded by a real daemon.

A directory where ``sessions.json`` belongs is refused, untouched (a store file must be a
regular file: the daemon never reads, moves or writes through anything else); a lone
surrogate the original wrote as ``"\\ud83d"`` survives a patch and a flush (replies
show it as U+FFFD: msgpack strings are UTF-8); a ``null`` entry is not a session.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from sessiond_client import UnavailableError
from tests.support.daemon import DaemonProcess


def test_a_directory_at_the_store_path_is_refused_untouched(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon()
    (daemon.store_path / "inside").mkdir(parents=True)
    daemon.start()
    with daemon.client() as client:
        for call in (client.list, lambda: client.patch("agent:main:new", {"label": "x"})):
            with pytest.raises(UnavailableError, match="is a directory, not a regular file"):
                call()
        assert "main" in client.stats()["unavailable_stores"]
    assert (daemon.store_path / "inside").is_dir()
    assert sorted(p.name for p in daemon.store_path.parent.iterdir()) == ["sessions.json"]


def test_a_lone_surrogate_written_by_the_original_survives(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon()
    daemon.store_path.parent.mkdir(parents=True)
    original = {"k": {"sessionId": "s", "updatedAt": 1, "subject": "cut \ud83d"}}
    daemon.store_path.write_text(json.dumps(original, indent=2, ensure_ascii=True))
    daemon.start()
    with daemon.client() as client:
        session = client.get("k")
        assert session is not None and session.data["subject"] == "cut \ufffd"
        client.patch("k", {"label": "new"})
        client.flush()
    text = daemon.store_path.read_text()
    assert '"cut \\ud83d"' in text
    assert json.loads(text)["k"]["subject"] == "cut \ud83d"


def test_a_null_entry_is_not_a_session(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon()
    daemon.store_path.parent.mkdir(parents=True)
    daemon.store_path.write_text('{"k": null}')
    daemon.start()
    with daemon.client() as client:
        assert client.get("k") is None
        assert client.update("k", {"label": "x"}) is None
        assert client.patch("k", {"label": "x"}).data["label"] == "x"
