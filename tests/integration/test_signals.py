"""No signal a terminal or systemd may send kills the daemon without its final flush:
stop signals stop it gracefully (final snapshot, socket removed, exit 0), SIGHUP reloads
the configuration file (run-time settings applied, the rest reported), and the other
signals whose default action would terminate it are ignored with a log line."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from sessiond_client import InvalidRequestError
from tests.support.daemon import DaemonProcess, toml_of

DEBOUNCED_SLOW = {
    "persistence": {"durability": "debounced", "flush_delay_s": 30.0, "flush_max_delay_s": 60.0}
}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT], ids=str)
def test_stop_signals_flush_and_exit_cleanly(
    make_daemon: Callable[..., DaemonProcess], signum: signal.Signals
) -> None:
    daemon = make_daemon(DEBOUNCED_SLOW).start()
    with daemon.client() as client:
        client.patch("agent:main:k", {"label": "acknowledged"})
    assert daemon.process is not None
    daemon.process.send_signal(signum)
    assert daemon.process.wait(30) == 0
    assert json.loads(daemon.store_path.read_text())["agent:main:k"]["label"] == "acknowledged"
    assert not Path(daemon.socket_path).exists()
    assert f"received {signum.name}" in daemon.log()


@pytest.mark.parametrize(
    "signum", [signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGVTALRM], ids=str
)
def test_other_signals_are_ignored(
    make_daemon: Callable[..., DaemonProcess], signum: signal.Signals
) -> None:
    daemon = make_daemon(DEBOUNCED_SLOW).start()
    with daemon.client() as client:
        client.patch("agent:main:k", {"label": "kept"})
        os.kill(daemon.pid, signum)
        daemon.wait_for_log(f"received {signum.name}: ignored")
        session = client.get("agent:main:k")
        assert session is not None and session.data["label"] == "kept"
    assert daemon.stop() == 0


def test_sighup_reloads_what_can_change_and_reports_the_rest(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon(DEBOUNCED_SLOW).start()
    keys = ["agent:main:a", "agent:main:b", "agent:main:c"]
    with daemon.client() as client:
        for key in keys:
            client.patch(key, {"label": key})
        assert len(client.get_many(keys)) == 3
        changed = {
            "log_level": "debug",
            "limits": {"max_keys_per_request": 2},
            "persistence": {"durability": "journal"},
        }
        daemon.config_path.write_text(toml_of(changed))
        os.kill(daemon.pid, signal.SIGHUP)
        daemon.wait_for_log("reloaded:")
        with pytest.raises(InvalidRequestError, match="at most 2 keys"):
            client.get_many(keys)
        assert client.hello().max_keys_per_request == 2
    log = daemon.log()
    assert "limits.max_keys_per_request" in log and "log_level" in log
    assert "next restart: persistence.durability" in log
    assert daemon.stop() == 0


def test_a_reload_with_an_invalid_file_keeps_the_running_configuration(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon({"limits": {"max_keys_per_request": 5}}).start()
    daemon.config_path.write_text("[limits]\nmax_keys_per_request = -1\n")
    os.kill(daemon.pid, signal.SIGHUP)
    daemon.wait_for_log("reload refused")
    with daemon.client() as client:
        assert client.hello().max_keys_per_request == 5
    assert daemon.stop() == 0


def test_a_reload_switches_the_log_format(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon().start()
    daemon.config_path.write_text('log_format = "json"\n')
    os.kill(daemon.pid, signal.SIGHUP)
    daemon.wait_for_log('"message": "reloaded: log_format"')
    assert daemon.stop() == 0
    lines = daemon.log_path.read_text().splitlines()
    switched = next(i for i, line in enumerate(lines) if line.startswith("{"))
    assert "serving on" in " ".join(lines[:switched])  # text before the reload
    after = [json.loads(line) for line in lines[switched:]]  # one JSON object per line after
    assert any(line["message"] == "sessiond stopped" for line in after)
