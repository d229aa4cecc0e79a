"""The ``sessiond`` admin commands against a running daemon, and ``check`` offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.daemon import DaemonProcess


def sessiond(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessiond", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_get_ls_stats_flush_resolve(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        written = client.patch("agent:main:main", {"displayName": "Ops room"})
    target = ("--socket", daemon.socket_path)
    got = sessiond("get", "agent:main:main", "--json", *target)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["entry"] == written.data
    human = sessiond("get", "agent:main:main", *target)
    assert "agent:main:main" in human.stdout and "Ops room" in human.stdout
    assert sessiond("get", "agent:main:none", *target).returncode == 1
    listed = json.loads(sessiond("ls", "--json", *target).stdout)
    assert [row["key"] for row in listed] == ["agent:main:main"]
    assert "Ops room" in sessiond("ls", *target).stdout
    stats = json.loads(sessiond("stats", "--json", *target).stdout)
    assert stats["stores"]["main"]["entries"] == 1
    assert sessiond("flush", *target).returncode == 0
    assert json.loads(daemon.store_path.read_text()) == {"agent:main:main": written.data}
    resolved = sessiond("resolve", "--from", "+15550001", "--body", "/new hi", "--json", *target)
    assert resolved.returncode == 0, resolved.stderr
    assert json.loads(resolved.stdout)["reset_triggered"] is True


def test_admin_command_without_a_daemon_exits_69(short_tmp: Path) -> None:
    result = sessiond("stats", "--socket", str(short_tmp / "none.sock"))
    assert result.returncode == 69
    assert "cannot connect" in result.stderr


def test_check_reports_valid_and_corrupt_files(short_tmp: Path) -> None:
    good = short_tmp / "sessions.json"
    good.write_text(json.dumps({"a": {"sessionId": "s", "updatedAt": 1}, "b": "odd"}))
    report = sessiond("check", str(good), "--json")
    assert report.returncode == 0
    parsed = json.loads(report.stdout)
    assert parsed["ok"] is True and parsed["entries"] == 2
    assert any("'b'" in warning for warning in parsed["warnings"])
    bad = short_tmp / "bad.json"
    bad.write_text("[1, 2")
    result = sessiond("check", str(bad))
    assert result.returncode == 1
    assert "INVALID" in result.stdout


def test_invalid_config_exits_78(short_tmp: Path) -> None:
    config = short_tmp / "bad.toml"
    config.write_text("[limits]\nmax_conections = 3\n")
    result = sessiond("serve", "--config", str(config), "--state-dir", str(short_tmp / "s"))
    assert result.returncode == 78
    assert "max_conections" in result.stderr
