"""The admin commands that read and change sessions, run as an operator runs them (the
``sessiond`` command in a subprocess) against a real daemon: get, ls (paging), patch,
delete, resolve, watch, export, import (atomic, line numbers) and backup (restorable)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess

CLI_TIMEOUT_S = 60


def sessiond(
    *args: str, socket_path: str | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``sessiond ARGS`` with the daemon's socket given through SESSIOND_SOCKET, as an
    administrator's shell profile would."""
    environ = {**os.environ, **(env or {})}
    if socket_path is not None:
        environ["SESSIOND_SOCKET"] = socket_path
    return subprocess.run(
        [sys.executable, "-m", "sessiond", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=CLI_TIMEOUT_S,
        env=environ,
    )


def ok_json(*args: str, socket_path: str) -> Any:
    result = sessiond(*args, "--json", socket_path=socket_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_patch_get_and_delete_by_hand(daemon: DaemonProcess) -> None:
    sock = daemon.socket_path
    written = ok_json("patch", "agent:main:main", '{"label": "ops", "n": 1}', socket_path=sock)
    assert written["entry"]["label"] == "ops" and isinstance(written["entry"]["sessionId"], str)
    removed = ok_json("patch", "agent:main:main", '{"n": null}', socket_path=sock)
    assert "n" not in removed["entry"]
    got = ok_json("get", "agent:main:main", socket_path=sock)
    assert got == removed
    with daemon.client() as client:
        session = client.get("agent:main:main")
        assert session is not None and session.data == got["entry"]
    human = sessiond("get", "agent:main:main", socket_path=sock)
    assert '"label": "ops"' in human.stdout and removed["revision"] in human.stdout

    not_json = sessiond("patch", "agent:main:main", "{label: ops", socket_path=sock)
    assert not_json.returncode == 2 and "not valid JSON" in not_json.stderr
    not_object = sessiond("patch", "agent:main:main", "[1]", socket_path=sock)
    assert not_object.returncode == 2 and "JSON object" in not_object.stderr
    wrong_type = sessiond("patch", "agent:main:main", '{"updatedAt": "soon"}', socket_path=sock)
    assert wrong_type.returncode == 1 and "updatedAt" in wrong_type.stderr

    stale = sessiond(
        "delete", "agent:main:main", "--if-revision", written["revision"], socket_path=sock
    )
    assert stale.returncode == 1 and "ConflictError" in stale.stderr
    assert sessiond("get", "agent:main:main", socket_path=sock).returncode == 0
    deleted = sessiond(
        "delete", "agent:main:main", "--if-revision", removed["revision"], socket_path=sock
    )
    assert deleted.returncode == 0, deleted.stderr
    missing = sessiond("get", "agent:main:main", socket_path=sock)
    assert missing.returncode == 1 and "no session" in missing.stderr
    again = sessiond("delete", "agent:main:main", "--json", socket_path=sock)
    assert again.returncode == 1 and json.loads(again.stdout)["deleted"] is False


def test_ls_pages_and_says_how_to_get_the_rest(daemon: DaemonProcess) -> None:
    sock = daemon.socket_path
    with daemon.client() as client:
        for number in range(7):
            client.replace(
                f"agent:main:k{number}", {"sessionId": f"s{number}", "updatedAt": number}
            )
    first = sessiond("ls", "--limit", "3", socket_path=sock)
    assert first.returncode == 0, first.stderr
    assert [line.split()[2] for line in first.stdout.splitlines()] == [
        "agent:main:k6",
        "agent:main:k5",
        "agent:main:k4",
    ]
    assert "more exist" in first.stderr and "--cursor" in first.stderr
    cursor = first.stderr.split("--cursor ")[1].split()[0]
    second = sessiond("ls", "--limit", "3", "--cursor", cursor, socket_path=sock)
    assert "agent:main:k3" in second.stdout.splitlines()[0]
    page = ok_json("ls", "--limit", "3", socket_path=sock)
    assert len(page["sessions"]) == 3 and page["next_cursor"] is not None
    everything = ok_json("ls", "--all", socket_path=sock)
    assert len(everything["sessions"]) == 7 and everything["next_cursor"] is None
    assert "more exist" not in sessiond("ls", "--all", socket_path=sock).stderr
    for bad in ("0", "-1", "x"):
        refused = sessiond("ls", "--limit", bad, socket_path=sock)
        assert refused.returncode == 2 and "--limit" in refused.stderr


def test_resolve_and_watch(daemon: DaemonProcess) -> None:
    sock = daemon.socket_path
    resolved = ok_json("resolve", "--from", "+15550001", "--body", "/new hi", socket_path=sock)
    assert resolved["reset_triggered"] is True and resolved["is_new"] is True
    environ = {**os.environ, "SESSIOND_SOCKET": sock}
    with subprocess.Popen(
        [sys.executable, "-m", "sessiond", "watch", "agent:main:w", "--json", "--progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    ) as watcher:
        try:
            assert watcher.stdout is not None
            start = json.loads(watcher.stdout.readline())  # the starting position
            assert start["type"] == "progress"
            with daemon.client() as client:
                client.patch("agent:main:other", {"label": "unwatched"})
                written = client.patch("agent:main:w1", {"label": "seen"})
            event = json.loads(watcher.stdout.readline())
            assert event["type"] == "put" and event["key"] == "agent:main:w1"
            assert event["entry"] == written.data and event["seq"] == written.seq
        finally:
            watcher.send_signal(signal.SIGINT)
            watcher.wait(CLI_TIMEOUT_S)
    assert watcher.returncode == 0


AWKWARD_ENTRIES: dict[str, dict[str, Any]] = {
    "agent:main:main": {
        "sessionId": "s-main",
        "updatedAt": 1700000000123,
        "displayName": "Équipe 🚀 运维",
        "unknownField": {"nested": [1, 2.5, None, True, "x"], "deep": {"a": {"b": {}}}},
        "big": 123456789012345678,
        "negative": -9007199254740993,
        "float": 1.0,
        "tiny": 1e-7,
        "third": 0.1,
        "nullField": None,
    },
    "agent:main:telegram:group:-100123": {"sessionId": "s-g", "updatedAt": 5, "chatType": "group"},
}


def export_lines(socket_path: str, *args: str) -> list[dict[str, Any]]:
    result = sessiond("export", *args, socket_path=socket_path)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_export_then_import_round_trip_loses_nothing(
    make_daemon: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    source = make_daemon().start()
    source.store_path.parent.mkdir(parents=True, exist_ok=True)
    with source.client() as client:
        client.import_entries(AWKWARD_ENTRIES, commit=True)
        client.replace("agent:ops:x", {"sessionId": "s-ops", "updatedAt": 7}, agent="ops")
    exported = sessiond("export", socket_path=source.socket_path)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert {(line["agent"], line["key"]) for line in lines} == {
        ("main", "agent:main:main"),
        ("main", "agent:main:telegram:group:-100123"),
        ("ops", "agent:ops:x"),
    }
    by_key = {line["key"]: line["entry"] for line in lines}
    for key, entry in AWKWARD_ENTRIES.items():
        assert by_key[key] == entry
        assert json.dumps(by_key[key]) == json.dumps(entry)  # 1.0 stays 1.0, order kept
    assert export_lines(source.socket_path, "--agent", "ops") == [
        {"agent": "ops", "key": "agent:ops:x", "entry": {"sessionId": "s-ops", "updatedAt": 7}}
    ]

    dump = short_tmp / "sessions.jsonl"
    dump.write_text(exported.stdout, encoding="utf-8")
    target = make_daemon().start()
    imported = sessiond("import", str(dump), "--json", socket_path=target.socket_path)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout) == {"imported": {"main": 2, "ops": 1}}
    again = sessiond("export", socket_path=target.socket_path)
    assert sorted(again.stdout.splitlines()) == sorted(exported.stdout.splitlines())
    # The import is durable: a kill right after it loses nothing.
    target.kill()
    target.start()
    assert sorted(export_lines(target.socket_path), key=str) == sorted(lines, key=str)


def test_import_refuses_a_bad_file_with_its_line_number_and_imports_nothing(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    sock = daemon.socket_path
    good = [
        json.dumps({"agent": "main", "key": f"agent:main:k{n}", "entry": {"sessionId": f"s{n}"}})
        for n in range(3)
    ]
    other_store = json.dumps({"agent": "ops", "key": "agent:ops:a", "entry": {"sessionId": "o"}})
    cases = {
        "not JSON": ([*good, "{oops", other_store], ":4:"),
        "no entry": ([*good, '{"agent": "main", "key": "k9"}', other_store], ":4:"),
        "entry not an object": ([*good, '{"agent":"main","key":"k9","entry":[1]}'], ":4:"),
        "a key twice": ([*good, other_store, good[1]], "first on line 2"),
        # Refused by the daemon while staging store "ops", after store "main" was
        # staged: "main" is not committed either.
        "empty key": ([*good, '{"agent":"ops","key":"","entry":{}}'], "line 4"),
    }
    for name, (lines, where) in cases.items():
        path = short_tmp / "bad.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = sessiond("import", str(path), socket_path=sock)
        assert result.returncode == 1, (name, result.stderr)
        assert where in result.stderr and "nothing imported" in result.stderr, (name, result)
        assert ok_json("ls", "--all", socket_path=sock)["sessions"] == [], name
        assert ok_json("ls", "--all", "--agent", "ops", socket_path=sock)["sessions"] == [], name
    missing = sessiond("import", str(short_tmp / "none.jsonl"), socket_path=sock)
    assert missing.returncode == 1 and "none.jsonl" in missing.stderr


def test_import_over_many_frames_is_one_step(
    make_daemon: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    # A small frame limit makes the import stage in many requests.
    daemon = make_daemon({"limits": {"max_frame_bytes": 65536}}).start()
    entries = {
        f"agent:main:k{n:04d}": {"sessionId": f"s{n}", "updatedAt": n, "pad": "x" * 400}
        for n in range(600)
    }
    lines = [json.dumps({"agent": "main", "key": k, "entry": e}) for k, e in entries.items()]
    path = short_tmp / "many.jsonl"
    oversized = {"sessionId": "s", "pad": "y" * 2_000_000}
    path.write_text(
        "\n".join([*lines, json.dumps({"agent": "main", "key": "z", "entry": oversized})])
    )
    refused = sessiond("import", str(path), socket_path=daemon.socket_path)
    assert refused.returncode == 1 and "exceeds" in refused.stderr and ":601:" in refused.stderr
    # Refused by the daemon in the last of many staging requests.
    bad_key = json.dumps({"agent": "main", "key": "", "entry": {"sessionId": "s"}})
    path.write_text("\n".join([*lines, bad_key]))
    refused = sessiond("import", str(path), socket_path=daemon.socket_path)
    assert refused.returncode == 1 and "line 601" in refused.stderr, refused.stderr
    with daemon.client() as client:
        assert client.list().items == []
        path.write_text("\n".join(lines))
        with client.watch("agent:main:") as watch:
            imported = sessiond("import", str(path), socket_path=daemon.socket_path)
            assert imported.returncode == 0, imported.stderr
            seqs = [next(iter(watch)).seq for _ in range(601)][1:]
        assert seqs == list(range(seqs[0], seqs[0] + 600))  # one change each, in one run
        page = client.list(limit=1000)
        assert {s.key: s.data for s in page.items} == entries


def test_backup_while_serving_is_restorable(
    make_daemon: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    source = make_daemon().start()
    with source.client() as client:
        for number in range(200):
            client.patch(f"agent:main:k{number}", {"label": f"l{number}"})
        client.patch("agent:ops:x", {"label": "ops"}, agent="ops")
        before = {s.key: s.data for s in client.list(limit=1000).items}
    stop = threading.Event()

    def keep_writing() -> None:
        with source.client() as writer:
            number = 0
            while not stop.is_set():
                writer.patch(f"agent:main:live{number % 50}", {"n": number})
                number += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        restored = make_daemon()
        result = sessiond("backup", str(restored.state_dir), socket_path=source.socket_path)
    finally:
        stop.set()
        writer.join(CLI_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    assert f"sessiond serve --state-dir {restored.state_dir}" in result.stdout
    manifest = json.loads((restored.state_dir / "sessiond-backup.json").read_text())
    assert set(manifest["stores"]) == {"main", "ops"}
    checked = sessiond("check", str(restored.state_dir), "--json")
    assert checked.returncode == 0, checked.stdout
    restored.start()
    with restored.client() as client:
        served = {s.key: s.data for s in client.list(limit=1000).items}
        assert manifest["stores"]["main"]["entries"] == len(served)
        ops = client.get("agent:ops:x", agent="ops")
        assert ops is not None and ops.data["label"] == "ops"
    assert {key: served[key] for key in before} == before
    live = [key for key in served if key.startswith("agent:main:live")]
    assert all(isinstance(served[key]["n"], int) for key in live)

    occupied = sessiond("backup", str(restored.state_dir), socket_path=source.socket_path)
    assert occupied.returncode == 1 and "not an empty directory" in occupied.stderr


def wait_until_watched(daemon: DaemonProcess) -> None:
    """Until the daemon has answered a watch request (the watcher is listening)."""
    deadline = time.monotonic() + CLI_TIMEOUT_S
    with daemon.client() as client:
        while client.stats()["requests"].get("watch", {}).get("ok", 0) == 0:
            assert time.monotonic() < deadline, "the watcher never started"
            time.sleep(0.05)


@pytest.mark.timeout(120)
def test_watch_outlasts_a_daemon_restart(daemon: DaemonProcess) -> None:
    environ = {**os.environ, "SESSIOND_SOCKET": daemon.socket_path}
    with subprocess.Popen(
        [sys.executable, "-m", "sessiond", "watch", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    ) as watcher:
        try:
            assert watcher.stdout is not None
            wait_until_watched(daemon)
            with daemon.client() as client:
                before = client.patch("agent:main:a", {"label": "before"})
            assert json.loads(watcher.stdout.readline())["seq"] == before.seq
            assert daemon.stop() == 0
            time.sleep(3)  # down longer than a one-shot command's reconnect budget
            daemon.start()
            with daemon.client() as client:
                after = client.patch("agent:main:b", {"label": "after"})
            event = json.loads(watcher.stdout.readline())
            assert (event["key"], event["seq"]) == ("agent:main:b", after.seq)
        finally:
            watcher.send_signal(signal.SIGINT)
            watcher.wait(CLI_TIMEOUT_S)
