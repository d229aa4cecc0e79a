"""A 100k-entry store (~100 MB of JSON): load, serve, change, flush, restart, and compare a
digest of every entry before and after (Redis's ``DEBUG RELOAD`` test)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from sessiond_client import Client
from tests.support.daemon import DaemonProcess

ENTRIES = 100_000


def make_entry(index: int) -> dict[str, Any]:
    return {
        "sessionId": f"{index:08x}-0000-4000-8000-{index:012x}",
        "updatedAt": 1_700_000_000_000 + index * 1000,
        "sessionFile": f"/home/bot/.clawdbot/agents/main/sessions/{index:08x}.jsonl",
        "chatType": "group" if index % 3 else "direct",
        "displayName": f"whatsapp:g-team-{index}",
        "inputTokens": index * 7,
        "lastProvider": "whatsapp",
        "lastTo": f"+1555{index:07d}",
        "skillsSnapshot": {"prompt": "p" * 600, "skills": [{"name": "weather"}]},
        "futureField": {"n": index, "tags": ["a", "b"]},
    }


def digest(client: Client) -> tuple[int, str]:
    """(count, sha256 over key + canonical JSON of every entry, in key order)."""
    rows: dict[str, Any] = {}
    cursor = None
    while True:
        page = client.list(limit=1000, cursor=cursor)
        rows.update((session.key, session.data) for session in page.items)
        cursor = page.cursor
        if cursor is None:
            break
    hasher = hashlib.sha256()
    for key in sorted(rows):
        hasher.update(key.encode() + b"\0" + json.dumps(rows[key], sort_keys=True).encode())
    return len(rows), hasher.hexdigest()


@pytest.mark.slow
def test_hundred_thousand_entries_survive_flush_and_restart(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon()
    daemon.store_path.parent.mkdir(parents=True)
    store = {f"agent:main:whatsapp:group:{i}@g.us": make_entry(i) for i in range(ENTRIES)}
    daemon.store_path.write_bytes(msgspec.json.format(msgspec.json.encode(store), indent=2))
    daemon.start()
    with daemon.client(timeout_s=60.0) as client:
        assert client.stats()["stores"]["main"]["entries"] == ENTRIES
        client.patch("agent:main:whatsapp:group:7@g.us", {"label": "changed"})
        client.delete("agent:main:whatsapp:group:8@g.us")
        client.patch("agent:main:new", {"label": "added"})
        before = digest(client)
        assert client.flush() is True
    assert before[0] == ENTRIES
    assert daemon.stop() == 0
    on_disk = json.loads(daemon.store_path.read_text())
    assert (
        len(on_disk) == ENTRIES
        and on_disk["agent:main:whatsapp:group:7@g.us"]["label"] == "changed"
    )
    daemon.start()
    with daemon.client(timeout_s=60.0) as client:
        after = digest(client)
    assert after == before
