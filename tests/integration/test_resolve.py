"""``resolve`` against a real daemon: real socket, real config file, real processes.

DESIGN.md §4: a message context becomes a session key and a session, atomically in the
daemon. Idle expiry is tested with ``idle_minutes = 1`` and an entry ``replace``d with an
old ``updatedAt`` (the pure rules, with an injected clock, are in tests/unit). The last
test has 4 processes x 4 threads resolve one new key at once: one session id for all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sessiond_client import Client
from tests.support.daemon import DaemonProcess

ROOT = Path(__file__).resolve().parents[2]
DIRECT = {"From": "+15551234567", "Provider": "whatsapp"}
MAIN = "agent:main:main"
MINUTE_MS = 60_000


def now_ms() -> int:
    return int(time.time() * 1000)


def backdate(client: Client, key: str, minutes: float, **agent: Any) -> str:
    """Make ``key``'s last activity ``minutes`` old; returns its session id."""
    session = client.get(key, **agent)
    assert session is not None
    old = dict(session.data, updatedAt=now_ms() - int(minutes * MINUTE_MS))
    client.replace(key, old, **agent)
    return str(session.data["sessionId"])


@pytest.fixture
def idle_one_minute(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    return make_daemon({"session": {"idle_minutes": 1}}).start()


def test_a_new_session_is_created_and_stored(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        result = client.resolve({**DIRECT, "Body": "hello"})
        assert (result.session_key, result.is_new, result.reset_triggered) == (MAIN, True, False)
        assert result.body_stripped is None
        data = result.session.data
        assert data["sessionId"] == result.session_id
        assert (data["systemSent"], data["abortedLastRun"], data["chatType"]) == (
            False,
            False,
            "direct",
        )
        transcripts = daemon.store_path.parent
        assert data["sessionFile"] == f"{transcripts}/{result.session_id}.jsonl"
        stored = client.get(MAIN)
        assert stored is not None and stored.data == data
        assert stored.revision == result.session.revision
        client.flush()
    assert json.loads(daemon.store_path.read_text())[MAIN] == data


def test_a_session_is_reused_within_idle_and_expires_after(idle_one_minute: DaemonProcess) -> None:
    with idle_one_minute.client() as client:
        first = client.resolve(DIRECT)
        again = client.resolve(DIRECT)
        assert (again.session_id, again.is_new) == (first.session_id, False)
        client.patch(MAIN, {"thinkingLevel": "high", "label": "mine"})
        backdate(client, MAIN, minutes=2)
        expired = client.resolve(DIRECT)
        assert expired.is_new and expired.session_id != first.session_id
        assert not expired.reset_triggered
        assert "thinkingLevel" not in expired.session.data
        assert expired.session.data["label"] == "mine"


def test_a_request_can_override_idle_minutes(idle_one_minute: DaemonProcess) -> None:
    with idle_one_minute.client() as client:
        first = client.resolve(DIRECT)
        backdate(client, MAIN, minutes=2)
        kept = client.resolve(DIRECT, idle_minutes=10)
        assert (kept.session_id, kept.is_new) == (first.session_id, False)


@pytest.mark.parametrize(
    ("body", "stripped"),
    [
        ("/new", ""),
        ("/reset", ""),
        ("[Jan 1 10:00] Peter: /NEW Hello World", "hello world"),
        ("/reset what were we doing?", "what were we doing?"),
    ],
)
def test_reset_triggers_start_a_new_session(
    daemon: DaemonProcess, body: str, stripped: str
) -> None:
    with daemon.client() as client:
        first = client.resolve(DIRECT)
        client.patch(MAIN, {"modelOverride": "gpt", "label": "kept"})
        reset = client.resolve({**DIRECT, "Body": body})
        assert (reset.is_new, reset.reset_triggered, reset.body_stripped) == (True, True, stripped)
        assert reset.session_id != first.session_id
        assert "modelOverride" not in reset.session.data
        assert reset.session.data["label"] == "kept"


def test_an_unauthorized_reset_is_ignored(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        first = client.resolve(DIRECT)
        result = client.resolve({**DIRECT, "Body": "/new please"}, authorized=False)
        assert (result.session_id, result.is_new) == (first.session_id, False)
        assert (result.reset_triggered, result.body_stripped) == (False, None)


@pytest.mark.parametrize(
    ("ctx", "key", "expected"),
    [
        (
            {"From": "12036@g.us", "Provider": "whatsapp", "GroupSubject": "Family"},
            "agent:main:whatsapp:group:12036@g.us",
            {"chatType": "group", "subject": "Family", "displayName": "whatsapp:g-family"},
        ),
        (
            {"From": "discord:channel:123", "GroupSubject": "#general"},
            "agent:main:discord:channel:123",
            {"chatType": "room", "room": "#general", "displayName": "discord:#general"},
        ),
        (
            {"From": "slack:channel:C1", "GroupRoom": "#ops", "GroupSpace": "acme"},
            "agent:main:slack:channel:C1",
            {"chatType": "room", "room": "#ops", "displayName": "slack:acme#ops"},
        ),
        (
            {"From": "telegram:group:-100123", "GroupSubject": "Friends"},
            "agent:main:telegram:group:-100123",
            {"chatType": "group", "subject": "Friends", "displayName": "telegram:g-friends"},
        ),
    ],
)
def test_group_and_channel_keys_and_display_names(
    daemon: DaemonProcess, ctx: dict[str, str], key: str, expected: dict[str, str]
) -> None:
    with daemon.client() as client:
        result = client.resolve(ctx)
        assert result.session_key == key
        assert {name: result.session.data.get(name) for name in expected} == expected
        assert result.session.data["provider"] == key.split(":")[2]


def test_thread_label_and_thread_id(daemon: DaemonProcess) -> None:
    ctx = {"From": "slack:channel:C1", "ThreadLabel": "Release plan", "MessageThreadId": "1712.5"}
    with daemon.client() as client:
        result = client.resolve(ctx)
    data = result.session.data
    assert data["displayName"] == "Release plan"
    topic_file = f"{result.session_id}-topic-1712.5.jsonl"
    assert data["sessionFile"] == str(daemon.store_path.parent / topic_file)


def test_a_legacy_group_entry_is_migrated(daemon: DaemonProcess) -> None:
    legacy = {"sessionId": "legacy-1", "updatedAt": now_ms(), "label": "from the old gateway"}
    with daemon.client() as client:
        client.replace("group:12036@g.us", legacy)
        result = client.resolve({"From": "12036@g.us", "Provider": "whatsapp"})
        assert result.session_key == "agent:main:whatsapp:group:12036@g.us"
        assert (result.session_id, result.is_new) == ("legacy-1", False)
        assert result.session.data["label"] == "from the old gateway"
        assert client.get("group:12036@g.us") is None


def test_a_route_update_before_resolve_does_not_keep_a_session_alive(
    idle_one_minute: DaemonProcess,
) -> None:
    with idle_one_minute.client() as client:
        first = client.resolve(DIRECT)
        backdate(client, MAIN, minutes=2)
        # The original's updateLastRoute bumped updatedAt here, so the session never expired.
        client.update_last_route(MAIN, provider="whatsapp", to="+15551234567")
        result = client.resolve(DIRECT)
        assert result.is_new and result.session_id != first.session_id
        assert result.session.data["lastTo"] == "+15551234567"


def test_a_touching_route_update_is_activity(idle_one_minute: DaemonProcess) -> None:
    with idle_one_minute.client() as client:
        first = client.resolve(DIRECT)
        backdate(client, MAIN, minutes=2)
        client.update_last_route(MAIN, provider="whatsapp", to="+1", touch=True)
        assert client.resolve(DIRECT).session_id == first.session_id


def test_per_agent_settings_from_the_config_file(make_daemon: Callable[..., DaemonProcess]) -> None:
    config = {"agents.ops": {"idle_minutes": 1, "reset_triggers": ["/fresh"], "scope": "global"}}
    daemon = make_daemon(config).start()
    ops = "ops"
    with daemon.client() as client:
        first = client.resolve(DIRECT, agent=ops)
        # The key names its store: a bare "global" would be the main agent's.
        assert first.session_key == "agent:ops:global"
        assert client.get(first.session_key) == first.session
        assert client.resolve({**DIRECT, "Body": "/new"}, agent=ops).reset_triggered is False
        fresh = client.resolve({**DIRECT, "Body": "/fresh start"}, agent=ops)
        assert (fresh.reset_triggered, fresh.body_stripped) == (True, "start")
        backdate(client, "agent:ops:global", minutes=2)
        assert client.resolve(DIRECT, agent=ops).is_new  # ops idles out after 1 minute
        # Request overrides beat the agent's settings; the main agent keeps the defaults.
        per_sender = client.resolve(DIRECT, scope="per-sender", reset_triggers=["/x"], agent=ops)
        assert per_sender.session_key == "agent:ops:main"
        assert client.resolve({**DIRECT, "Body": "/new"}).reset_triggered is True
        assert client.get("global") is None
        assert client.get(MAIN) is not None


CONCURRENT_RESOLVER = """
import json, os, sys, threading, time
from sessiond_client import Client
socket_path, go_file = sys.argv[1], sys.argv[2]
ctx = {"From": "discord:channel:race", "Body": "first message"}
results, barrier = [], threading.Barrier(4)
with Client(socket_path) as client:
    client.hello()
    print("ready", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.001)
    def worker():
        barrier.wait()
        resolution = client.resolve(ctx)
        results.append([resolution.session_id, resolution.is_new])
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
print(json.dumps(results), flush=True)
"""


def test_sixteen_concurrent_resolves_from_four_processes_agree(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    go_file = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_RESOLVER, daemon.socket_path, str(go_file)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    go_file.touch()
    results: list[list[Any]] = []
    for worker in workers:
        output, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        results.extend(json.loads(output.strip().splitlines()[-1]))
    assert len(results) == 16
    assert len({session_id for session_id, _ in results}) == 1
    assert sum(1 for _, is_new in results if is_new) == 1
    with daemon.client() as client:
        stored = client.get("agent:main:discord:channel:race")
        assert stored is not None and stored.data["sessionId"] == results[0][0]
