"""The operator's side of the command line against a real daemon: agents, stats (health of
every store), prune, metrics (Prometheus text, and the textfile the daemon rewrites),
config (origins, --check), check of a whole state dir, --help, finding the socket,
log formats, the start-up line, load progress and reload."""

from __future__ import annotations

import json
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_cli import ok_json, sessiond
from tests.support.daemon import DaemonProcess

ADMIN_COMMANDS = [
    "get",
    "ls",
    "patch",
    "delete",
    "resolve",
    "watch",
    "stats",
    "agents",
    "flush",
    "prune",
    "metrics",
    "export",
    "import",
    "backup",
]


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_every_help_shows_defaults_environment_example_and_exit_codes() -> None:
    for command in ["serve", "config", "check", *ADMIN_COMMANDS]:
        result = sessiond(command, "--help")
        assert result.returncode == 0, command
        text = result.stdout
        assert "example:\n  sessiond " in text, command
        assert "exit status:" in text and "69  the daemon cannot be reached" in text, command
        for variable in ("SESSIOND_STATE_DIR", "SESSIOND_SOCKET", "SESSIOND_CONFIG"):
            assert variable in text, (command, variable)
        assert "see README" not in text and "(default: None)" not in text, command
    ls_help = sessiond("ls", "--help").stdout
    assert "(default: 50)" in ls_help and "/run/sessiond/sessiond.sock" in ls_help
    serve_help = sessiond("serve", "--help", env={"SESSIOND_STATE_DIR": "/srv/sd"}).stdout
    serve_help = " ".join(serve_help.split())
    assert "default here: /srv/sd)" in serve_help and "any case" in serve_help


def test_an_admin_finds_the_daemon_through_the_environment_or_says_how(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    assert sessiond("stats", socket_path=daemon.socket_path).returncode == 0
    config = short_tmp / "admin.toml"
    config.write_text(f'socket_path = "{daemon.socket_path}"\n')
    assert sessiond("stats", env={"SESSIOND_CONFIG": str(config)}).returncode == 0
    absent = sessiond("stats", "--socket", str(short_tmp / "none.sock"))
    assert absent.returncode == 69
    assert "cannot connect" in absent.stderr and "SESSIOND_SOCKET" in absent.stderr


def test_agents_and_stats_show_every_store_and_its_health(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # One open store at a time: writing to "ops" closes "main" (it stays on disk).
    daemon = make_daemon({"persistence": {"on_corrupt": "refuse"}, "limits": {"max_stores": 1}})
    broken = daemon.state_dir / "agents" / "broken" / "sessions" / "sessions.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    daemon.start()
    sock = daemon.socket_path
    with daemon.client() as client:
        client.patch("agent:main:main", {"label": "a"})
        client.patch("agent:ops:x", {"label": "b"}, agent="ops")
    rows = {row["agent"]: row for row in ok_json("agents", socket_path=sock)}
    assert set(rows) == {"broken", "main", "ops"}
    assert rows["broken"]["health"].startswith("UNAVAILABLE") and not rows["broken"]["loaded"]
    assert rows["ops"]["entries"] == 1 and rows["ops"]["health"] == "ok"
    assert rows["ops"]["last_change_at"] == pytest.approx(time.time(), abs=60)
    assert rows["main"]["loaded"] is False and rows["main"]["entries"] is None
    table = sessiond("agents", socket_path=sock).stdout
    assert re.search(r"^main\s+-\s+-\s+-\s+-\s+not loaded", table, re.MULTILINE), table
    assert re.search(r"^ops\s+1\s+.*\s+ok$", table, re.MULTILINE), table
    human = sessiond("stats", socket_path=sock).stdout
    assert re.search(r"store broken: UNAVAILABLE: .*corrupt", human), human
    assert "store ops: 1 entries" in human


def test_stats_shows_a_quarantined_store(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon()
    daemon.store_path.parent.mkdir(parents=True)
    daemon.store_path.write_text("[1, 2")
    daemon.start()
    human = sessiond("stats", socket_path=daemon.socket_path).stdout
    assert "store main: 0 entries" in human and "QUARANTINED" in human, human
    agents = sessiond("agents", socket_path=daemon.socket_path).stdout
    assert "QUARANTINED" in agents


def test_prune_by_hand(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon({"retention": {"prune_after_days": 1}}).start()
    old_ms = int((time.time() - 10 * 86400) * 1000)
    with daemon.client() as client:
        client.import_entries(
            {"agent:main:old": {"sessionId": "s1", "updatedAt": old_ms}}, commit=True
        )
        client.patch("agent:main:new", {"label": "fresh"})
    sock = daemon.socket_path
    planned = ok_json("prune", "--dry-run", socket_path=sock)
    assert [p["key"] for p in planned["pruned"]] == ["agent:main:old"] and planned["dry_run"]
    assert sessiond("get", "agent:main:old", socket_path=sock).returncode == 0
    done = sessiond("prune", socket_path=sock)
    assert done.returncode == 0 and "pruned agent:main:old (age)" in done.stdout
    assert sessiond("get", "agent:main:old", socket_path=sock).returncode == 1
    archive = daemon.store_path.with_name("sessions.pruned.jsonl")
    assert "agent:main:old" in archive.read_text()


def metric_families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_metrics_are_prometheus_text(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        for number in range(5):
            client.patch(f"agent:main:k{number}", {"n": number}, durable=True)
        client.get("agent:main:k1")
        with pytest.raises(Exception, match="sessionId"):
            client.replace("agent:main:bad", {"label": "no session id"})
        client.flush()
    result = sessiond("metrics", socket_path=daemon.socket_path)
    assert result.returncode == 0, result.stderr
    families = metric_families(result.stdout)
    requests = {
        (labels["op"], labels["code"]): value
        for name, labels, value in families["sessiond_requests"]
        if name == "sessiond_requests_total"
    }
    assert requests[("patch", "ok")] == 5 and requests[("replace", "invalid_request")] == 1
    buckets = [
        (labels["le"], value)
        for name, labels, value in families["sessiond_request_duration_seconds"]
        if name.endswith("_bucket") and labels["op"] == "patch"
    ]
    assert buckets[-1][0] == "+Inf" and buckets[-1][1] == 5
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    gauges = families
    store_entries = {s[1]["agent"]: s[2] for s in gauges["sessiond_store_entries"]}
    assert store_entries == {"main": 5}
    assert any(s[2] > 0 for s in gauges["sessiond_journal_bytes"])
    assert any(s[2] >= 1 for s in gauges["sessiond_journal_fsyncs"])
    assert any(s[2] >= 1 for s in gauges["sessiond_snapshots"])
    assert "sessiond_snapshot_duration_seconds" in gauges
    assert "sessiond_connections" in gauges and "sessiond_connections_refused" in gauges


def test_the_daemon_rewrites_the_metrics_textfile(
    make_daemon: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    textfile = short_tmp / "sessiond.prom"
    daemon = make_daemon({"metrics_textfile": str(textfile), "metrics_interval_s": 0.2})
    daemon.wrapper = ["sh", "-c", 'umask 077; exec "$@"', "sh"]
    daemon.start()
    with daemon.client() as client:
        client.patch("agent:main:main", {"label": "x"})

    def shows_the_write() -> bool:
        try:
            families = metric_families(textfile.read_text())
        except FileNotFoundError:
            return False
        return any(s[2] == 1 for s in families.get("sessiond_store_entries", []))

    wait_until(shows_the_write, "the textfile to show the store")
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644  # node_exporter reads it
    assert [p.name for p in short_tmp.iterdir() if p.name.endswith(".tmp")] == []
    assert daemon.stop() == 0
    assert not textfile.exists()  # a stopped daemon leaves no stale "up" metrics


def test_config_prints_each_value_and_where_it_came_from(short_tmp: Path) -> None:
    config = short_tmp / "sessiond.toml"
    config.write_text("[limits]\nmax_connections = 7\n")
    result = sessiond(
        "config",
        "--config",
        str(config),
        "--socket",
        str(short_tmp / "flag.sock"),
        "--json",
        env={"SESSIOND_STATE_DIR": str(short_tmp / "envstate")},
    )
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["limits.max_connections"] == {
        "name": "limits.max_connections",
        "value": 7,
        "from": f"file {config}",
    }
    assert rows["state_dir"]["value"] == str(short_tmp / "envstate")
    assert rows["state_dir"]["from"] == "env SESSIOND_STATE_DIR"
    assert rows["socket_path"]["from"] == "flag --socket"
    assert rows["limits.max_frame_bytes"]["from"] == "default"
    human = sessiond("config", "--config", str(config)).stdout
    assert re.search(r"^persistence\.file_mode\s+0o600\s+\(default\)$", human, re.MULTILINE)


def test_config_check_validates_a_file_without_starting(short_tmp: Path) -> None:
    good = short_tmp / "good.toml"
    good.write_text('log_level = "debug"\n[agents.ops]\nidle_minutes = 30\n')
    checked = sessiond("config", "--check", str(good))
    assert checked.returncode == 0 and "OK" in checked.stdout
    bad = short_tmp / "bad.toml"
    bad.write_text("[agents.ops]\nidle_minuts = 30\n")
    refused = sessiond("config", "--check", str(bad))
    assert refused.returncode == 78
    assert f"{bad}: [agents.ops] idle_minuts: unknown key; did you mean 'idle_minutes'?" in (
        refused.stderr
    )
    not_toml = short_tmp / "broken.toml"
    not_toml.write_text("[limits\n")
    assert sessiond("config", "--check", str(not_toml)).returncode == 78


def test_check_a_whole_state_dir(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon().start()
    with daemon.client() as client:
        client.patch("agent:main:main", {"label": "a"})
        client.patch("agent:ops:x", {"label": "b"}, agent="ops")
    daemon.kill()  # the journal holds changes the store files do not
    pending = sessiond("check", str(daemon.state_dir), "--json")
    assert pending.returncode == 0, pending.stdout
    reports = {Path(r["path"]).parent.parent.name: r for r in json.loads(pending.stdout)}
    assert set(reports) == {"main", "ops"}
    assert reports["ops"]["entries"] == 1 and reports["ops"]["journal_records"] >= 1
    daemon.start()
    assert daemon.stop() == 0
    after_clean_stop = sessiond("check", str(daemon.state_dir))
    assert after_clean_stop.returncode == 0
    assert after_clean_stop.stdout.count("journal: nothing pending") == 2, after_clean_stop.stdout
    broken = daemon.state_dir / "agents" / "bad" / "sessions" / "sessions.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{oops")
    with_broken = sessiond("check", str(daemon.state_dir))
    assert with_broken.returncode == 1 and f"{broken}: INVALID" in with_broken.stdout


def test_json_logs_and_the_start_up_line(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon({"log_format": "json"})
    daemon.store_path.parent.mkdir(parents=True)
    daemon.store_path.write_text(json.dumps({"agent:main:a": {"sessionId": "s", "updatedAt": 1}}))
    daemon.start()
    assert daemon.stop() == 0
    lines = [json.loads(line) for line in daemon.log_path.read_text().splitlines()]
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    (start,) = [line["message"] for line in lines if "serving on" in line["message"]]
    assert f"pid {daemon.pid}" in start and "journal mode" in start
    assert str(daemon.state_dir) in start and daemon.socket_path in start
    assert re.search(r"1 stores, 1 entries loaded in \d+\.\d\d s", start), start


@pytest.mark.timeout(120)
def test_a_slow_load_reports_progress(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon()
    daemon.store_path.parent.mkdir(parents=True)
    entries = ",\n".join(
        f'  "agent:main:k{n}": {{sessionId: "s{n}", updatedAt: {n}, label: "{"x" * 60}"}}'
        for n in range(2500)
    )
    daemon.store_path.write_text("{\n" + entries + ",\n}\n")  # JSON5: slow to parse
    daemon.start(wait=False)
    daemon.wait_ready(timeout_s=100)
    assert re.search(
        r"loading stores: 0 of 1 loaded \(0 entries\) in \d+ s; reading ", daemon.log()
    )
    assert str(daemon.store_path) in daemon.log()


def test_help_of_the_root_lists_every_command() -> None:
    text = sessiond("--help").stdout
    for command in ["serve", "config", "check", *ADMIN_COMMANDS]:
        assert re.search(rf"^    {command}\s", text, re.MULTILINE), command
    # Any case: an invalid value would fail (exit 2) before --help is reached.
    assert sessiond("serve", "--log-level", "DEBUG", "--help").returncode == 0
    assert sessiond("serve", "--log-level", "LOUD", "--help").returncode == 2
