"""``sessiond migrate`` between a daemon's state dir and Redis/Valkey, both ways: every
store, every entry exactly (unknown fields, unicode, floats, entries without
``updatedAt``), the same revisions, and idempotent. Real daemons, real servers, the
real command line.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sessiond_client import Client
from tests.backends.conftest import _shared_server
from tests.support.daemon import DaemonProcess
from tests.support.redis_server import SERVER_KINDS, RedisServer

ROOT = Path(__file__).resolve().parents[2]


def everything(target: str) -> dict[tuple[str, str], tuple[Any, str]]:
    """Every entry of every store: (agent, key) → (entry, revision)."""
    with Client(target) as client:
        stats = client.stats()
        agents = sorted({*stats.get("stores", {}), *stats.get("stores_on_disk", [])})
        found: dict[tuple[str, str], tuple[Any, str]] = {}
        for agent in agents:
            cursor = None
            while True:
                page = client.export(agent=agent, cursor=cursor, limit=7)
                for session in page.items:
                    found[(agent, session.key)] = (session.data, session.revision)
                cursor = page.cursor
                if cursor is None:
                    break
        return found


def migrate(socket_path: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "sessiond", "migrate", "--socket", socket_path, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_migrate_to_redis_and_back_loses_nothing(
    kind: str,
    shared_servers: dict[str, RedisServer],
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    server = _shared_server(shared_servers, kind)
    with server.raw() as raw:
        raw.flushall()
    source = make_daemon().start()
    with Client(source.socket_path) as client:
        for index in range(30):
            client.patch(f"agent:main:k{index}", {"label": f"n{index}", "ratio": 1.0})
        client.patch("agent:ops:main", {"displayName": "Grüße ✓ 日本", "future": {"x": [1, None]}})
        client.import_entries({"bare": {"sessionId": "b", "n": -0.5}}, agent="ops", commit=True)
    before = everything(source.socket_path)
    assert len(before) == 32
    output = migrate(source.socket_path, "--to", server.url())
    assert "migrated 32 session(s) from 2 store(s)" in output
    assert everything(server.url()) == before
    migrate(source.socket_path, "--to", server.url())  # again: nothing changes
    assert everything(server.url()) == before
    back = make_daemon().start()
    migrate(back.socket_path, "--from", server.url())
    assert everything(back.socket_path) == before
