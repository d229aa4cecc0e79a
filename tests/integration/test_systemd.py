"""sessiond as a systemd service, with real processes and systemd's own tools.

- The units in systemd/ pass `systemd-analyze verify` (ExecStart pointed at this environment's
  installed `sessiond` script) without a single warning, and `systemd-analyze security
  --offline=true` rates the service below 2.0, also with the documented ~/.clawdbot drop-in.
  The sysusers.d and tmpfiles.d snippets are applied to a scratch root and create exactly the
  accounts and directory the units name.
- Socket activation, for real: `systemd-socket-activate -l PATH python -m sessiond serve ...`
  creates the socket, a client connects while no daemon exists yet, the tool execs the daemon
  (same pid, LISTEN_PID/LISTEN_FDS, fd 3) and the client gets its answer; on SIGTERM the
  daemon leaves the socket file it was handed alone.
- Restarts behind a held socket. systemd-socket-activate cannot respawn: it execs the daemon
  in its own process, so once the daemon dies nobody holds the socket. The test therefore
  plays PID 1 with sessiond.socket: it binds and holds the listening socket itself and starts
  each daemon generation through systemd-socket-activate in its pass-through mode (it forwards
  the descriptors it received via LISTEN_FDS and still waits for the first pending
  connection). A client that connects after the first daemon was SIGKILLed is queued by the
  kernel and answered by the next generation.
- sd_notify against a datagram socket owned by the test (a path socket and an abstract `@`
  one): READY=1 only once the preloaded store is served (its STATUS= counts the entries),
  WATCHDOG=1 about every WATCHDOG_USEC/2, STOPPING=1 on SIGTERM, all from the daemon's pid.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sessiond.cli_common import EXIT_CONFIG
from sessiond.config import Config
from sessiond.systemd import EXIT_CONFIG_ERROR
from sessiond_client import RetryPolicy
from sessiond_client.protocol import PROTOCOL_VERSION
from tests.support.daemon import DaemonProcess
from tests.support.rawsocket import RawPeer

UNITS = Path(__file__).resolve().parents[2] / "systemd"
README = UNITS.parent / "README.md"
SERVICE, SOCKET = "sessiond.service", "sessiond.socket"
CLAWDBOT_DROP_IN = UNITS / "examples" / "clawdbot-state-dir.conf"
UNIT_EXEC_START = "/opt/sessiond/bin/sessiond"
MAX_EXPOSURE = 2.0
# Generous: starting Python, importing the daemon and loading stores on a loaded CI machine.
START_TIMEOUT_S = 30.0


def tool(name: str) -> str:
    """Path of a systemd tool; missing is a failure, not a skip (.ci/run installs them)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the distribution's systemd package")
    return path


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def directives(path: Path) -> dict[str, list[str]]:
    """`Key=value` lines of a unit file (all sections), values in order."""
    found: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


# --- the unit files ---------------------------------------------------------------------


def installed_script() -> Path:
    script = Path(sysconfig.get_path("scripts")) / "sessiond"
    if not os.access(script, os.X_OK):
        pytest.fail(f"{script} is not installed; pip install the project first")
    return script


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """The units as an admin installs them, ExecStart pointing at the installed script."""
    service = (UNITS / SERVICE).read_text(encoding="utf-8")
    service, count = re.subn(
        rf"^ExecStart={re.escape(UNIT_EXEC_START)} ",
        f"ExecStart={installed_script()} ",
        service,
        flags=re.MULTILINE,
    )
    assert count == 1, "the service's ExecStart moved; update the test"
    (tmp_path / SERVICE).write_text(service, encoding="utf-8")
    shutil.copy(UNITS / SOCKET, tmp_path / SOCKET)
    return tmp_path


def install_clawdbot_drop_in(unit_dir: Path) -> None:
    drop_in_dir = unit_dir / f"{SERVICE}.d"
    drop_in_dir.mkdir()
    text = CLAWDBOT_DROP_IN.read_text(encoding="utf-8")
    text = text.replace(UNIT_EXEC_START, str(installed_script()))
    (drop_in_dir / "clawdbot.conf").write_text(text, encoding="utf-8")


def verify_complaints(*units: Path) -> list[str]:
    """What `systemd-analyze verify` says about our units.

    It exits 0 on unknown keys and unparsable values ("..., ignoring"), so every line that
    names one of our files counts, not just the exit status.
    """
    result = run(tool("systemd-analyze"), "verify", "--man=no", *map(str, units))
    lines = (result.stdout + result.stderr).splitlines()
    ours = [line for line in lines if "sessiond" in line]
    if result.returncode != 0:
        ours.append(f"exit status {result.returncode}: {result.stdout}{result.stderr}")
    return ours


def test_units_pass_systemd_analyze_verify(unit_dir: Path) -> None:
    assert verify_complaints(unit_dir / SERVICE, unit_dir / SOCKET) == []


def test_verify_check_catches_warnings(unit_dir: Path) -> None:
    # The check above must have teeth: verify only warns about an unknown key.
    with (unit_dir / SERVICE).open("a", encoding="utf-8") as service:
        service.write("\n[Service]\nProtectEverything=yes\n")
    assert any("ProtectEverything" in line for line in verify_complaints(unit_dir / SERVICE))


def exposure(unit_dir: Path, threshold: float) -> tuple[float, int]:
    """Overall exposure from `systemd-analyze security --offline=true`, and its exit status."""
    # --threshold is on systemd's internal 0-100 scale; the printed score is that / 10.
    result = run(
        tool("systemd-analyze"),
        "security",
        "--offline=true",
        f"--threshold={round(threshold * 10)}",
        str(unit_dir / SERVICE),
    )
    match = re.search(r"Overall exposure level for sessiond\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1)), result.returncode


def test_service_is_rated_below_2_by_systemd_analyze_security(unit_dir: Path) -> None:
    score, status = exposure(unit_dir, MAX_EXPOSURE)
    assert score < MAX_EXPOSURE
    assert status == 0
    if score > 0:  # and the threshold means what we think: just below the score fails
        assert exposure(unit_dir, score - 0.1)[1] != 0


def test_clawdbot_drop_in_verifies_and_keeps_the_rating(unit_dir: Path) -> None:
    install_clawdbot_drop_in(unit_dir)
    assert verify_complaints(unit_dir / SERVICE) == []
    score, status = exposure(unit_dir, MAX_EXPOSURE)
    assert (score < MAX_EXPOSURE, status) == (True, 0)
    drop_in = directives(CLAWDBOT_DROP_IN)
    assert drop_in["ProtectHome"] == ["tmpfs"]
    assert drop_in["ExecStart"][0] == ""  # resets the unit's ExecStart before replacing it
    # The README shows the same drop-in.
    readme = README.read_text(encoding="utf-8")
    for line in CLAWDBOT_DROP_IN.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            assert line in readme


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="sysusers/tmpfiles chown what they create")
def test_sysusers_and_tmpfiles_create_what_the_units_use(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    sysusers = run(
        tool("systemd-sysusers"), f"--root={tmp_path}", str(UNITS / "sysusers.d/sessiond.conf")
    )
    assert sysusers.returncode == 0, sysusers.stderr
    users = {line.split(":")[0]: line.split(":") for line in read_lines(tmp_path / "etc/passwd")}
    groups = {line.split(":")[0]: line.split(":") for line in read_lines(tmp_path / "etc/group")}
    service, socket_unit = directives(UNITS / SERVICE), directives(UNITS / SOCKET)
    user, group = service["User"][0], service["Group"][0]
    assert users[user][3] == groups[group][2]  # the user's primary group is Group=
    assert users[user][6].endswith("nologin")  # a system account nobody logs in as
    assert socket_unit["SocketUser"] == [user]
    assert socket_unit["SocketGroup"][0] in groups
    assert socket_unit["SocketMode"] == ["0660"]

    tmpfiles = run(
        tool("systemd-tmpfiles"),
        f"--root={tmp_path}",
        "--create",
        str(UNITS / "tmpfiles.d/sessiond.conf"),
    )
    assert tmpfiles.returncode == 0, tmpfiles.stderr
    (listen,) = socket_unit["ListenStream"]
    runtime_dir = tmp_path / Path(listen).parent.relative_to("/")
    assert stat.S_IMODE(runtime_dir.stat().st_mode) == int(socket_unit["DirectoryMode"][0], 8)


def read_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_unit_settings_match_the_daemon() -> None:
    service = directives(UNITS / SERVICE)
    assert service["RestartPreventExitStatus"] == [str(EXIT_CONFIG_ERROR)]
    assert EXIT_CONFIG == EXIT_CONFIG_ERROR
    assert service["Type"] == ["notify"]
    # `systemctl reload` sends what the daemon reloads on.
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # systemd must not SIGKILL the daemon while it still finishes requests and flushes.
    assert int(service["TimeoutStopSec"][0]) > 2 * Config().shutdown_timeout_s
    assert service["StateDirectory"] == ["sessiond"]
    assert "RuntimeDirectory" not in service  # see the comment in the unit
    socket_unit = directives(UNITS / SOCKET)
    assert socket_unit["Service"] == [SERVICE]
    assert socket_unit["Accept"] == ["no"]


# --- socket activation ------------------------------------------------------------------


def passed_environment() -> list[str]:
    """-E flags: systemd-socket-activate gives its child only PATH, TERM, USER and HOME."""
    return [f"-E{name}" for name in ("PYTHONPATH",) if name in os.environ]


def process_command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def connect_when_listening(path: str, process: subprocess.Popen[bytes]) -> RawPeer:
    """Connect as soon as the socket exists; raises if the launcher died first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "systemd-socket-activate exited"
        if os.path.exists(path):
            # Still only the launcher: no daemon exists before the first connection.
            assert Path(process_command_line(process.pid)[0]).name == "systemd-socket-activate"
            try:
                return RawPeer(path, timeout_s=START_TIMEOUT_S)
            except ConnectionRefusedError:  # bound but not yet listening
                pass
        time.sleep(0.01)
    raise TimeoutError(f"{path} never accepted a connection")


def hello(peer: RawPeer, request_id: int) -> dict[str, Any]:
    return peer.call({"op": "hello", "id": request_id, "protocol": PROTOCOL_VERSION})


def test_socket_activation_serves_a_client_that_came_before_the_daemon(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon()
    # --socket names the same path on purpose: a daemon that ignored LISTEN_FDS would find
    # it busy and exit 75, and one that unlinked its --socket at exit would remove it.
    command = [
        tool("systemd-socket-activate"),
        f"--listen={daemon.socket_path}",
        *passed_environment(),
        *daemon.command(),
    ]
    with daemon.log_path.open("ab") as log:
        daemon.process = subprocess.Popen(command, stdout=log, stderr=log)
    with connect_when_listening(daemon.socket_path, daemon.process) as peer:
        reply = hello(peer, 1)
        assert (reply["id"], reply["ok"]) == (1, True)
        # The tool exec'd the daemon in its own process: same pid, as LISTEN_PID requires.
        assert process_command_line(daemon.pid)[-8:] == daemon.command()[-8:]
        assert peer.call({"op": "get", "id": 2, "key": "agent:main:none"})["result"] is None
    handed = os.stat(daemon.socket_path)

    assert daemon.stop() == 0
    assert "socket-activated" in daemon.log()
    assert os.path.lexists(daemon.socket_path), "the daemon removed the socket it was handed"
    after = os.lstat(daemon.socket_path)
    assert stat.S_ISSOCK(after.st_mode)
    assert (after.st_ino, after.st_dev) == (handed.st_ino, handed.st_dev)


class HeldSocket:
    """What PID 1 does for sessiond.socket: own the listening socket across daemon lives."""

    # systemd-socket-activate forwards descriptors it received itself (LISTEN_FDS from 3),
    # and LISTEN_PID must name the process reading them. exec keeps the pid, so this shim
    # moves the socket to fd 3, names its own pid and execs the tool, which execs the daemon.
    SHIM = (
        "import os, sys\n"
        "fd = int(sys.argv[1])\n"
        "if fd != 3:\n"
        "    os.dup2(fd, 3)\n"
        "    os.close(fd)\n"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')\n"
        "os.execv(sys.argv[2], sys.argv[2:])\n"
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o660)
        self.sock.listen(128)

    def start_daemon(self, daemon: DaemonProcess) -> subprocess.Popen[bytes]:
        """A new daemon generation; it starts once a connection is pending."""
        fd = self.sock.fileno()
        command = [
            sys.executable,
            "-c",
            self.SHIM,
            str(fd),
            tool("systemd-socket-activate"),
            *passed_environment(),
            *daemon.command(),
        ]
        with daemon.log_path.open("ab") as log:
            daemon.process = subprocess.Popen(command, pass_fds=(fd,), stdout=log, stderr=log)
        return daemon.process

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def held_socket(
    make_daemon: Callable[..., DaemonProcess],
) -> Iterator[tuple[HeldSocket, DaemonProcess]]:
    daemon = make_daemon()
    held = HeldSocket(daemon.socket_path)
    yield held, daemon
    held.close()


def test_connections_wait_in_the_held_socket_while_the_daemon_restarts(
    held_socket: tuple[HeldSocket, DaemonProcess],
) -> None:
    held, daemon = held_socket
    first = held.start_daemon(daemon)
    with daemon.client(timeout_s=START_TIMEOUT_S) as client:
        written = client.patch("agent:main:k", {"label": "before the crash"}, durable=True)
    first.kill()  # SIGKILL: no cleanup at all
    first.wait(10)

    # No daemon now. A bot connecting meanwhile is queued by the kernel, not refused.
    with RawPeer(held.path, timeout_s=START_TIMEOUT_S) as queued:
        queued.send({"op": "get", "id": 7, "key": "agent:main:k"})
        second = held.start_daemon(daemon)
        reply = queued.read_reply()
    assert second.pid != first.pid
    assert (reply["id"], reply["ok"]) == (7, True)
    assert reply["result"]["entry"] == written.data

    assert daemon.stop() == 0
    assert stat.S_ISSOCK(os.lstat(held.path).st_mode)
    with RawPeer(held.path):  # the socket still takes connections for the next generation
        pass


# --- sd_notify --------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    fields: dict[str, str]
    sender_pid: int
    received_at: float


class NotifyReceiver:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # the NOTIFY_SOCKET value
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.seen: list[Notification] = []

    def next(self, timeout_s: float) -> Notification:
        self.sock.settimeout(timeout_s)
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        received_at = time.monotonic()
        (creds,) = [d for _, kind, d in ancillary if kind == socket.SCM_CREDENTIALS]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        notification = Notification(fields, int.from_bytes(creds[:4], sys.byteorder), received_at)
        self.seen.append(notification)
        return notification

    def wait_for(self, field: str, timeout_s: float = START_TIMEOUT_S) -> Notification:
        deadline = time.monotonic() + timeout_s
        while True:
            notification = self.next(max(0.01, deadline - time.monotonic()))
            if field in notification.fields:
                return notification


@pytest.fixture(params=["path", "abstract"])
def notify_receiver(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[NotifyReceiver]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(short_tmp / "notify")
        sock.bind(address)
    else:
        name = f"sessiond-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        address = "@" + name
    yield NotifyReceiver(sock, address)
    sock.close()


WATCHDOG_USEC = 200_000
PINGS = 10


def test_daemon_notifies_ready_status_watchdog_and_stopping(
    make_daemon: Callable[..., DaemonProcess], notify_receiver: NotifyReceiver
) -> None:
    daemon = make_daemon(
        env={"NOTIFY_SOCKET": notify_receiver.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    )
    stored = {f"agent:main:k{i}": {"sessionId": f"s{i}", "updatedAt": 1000 + i} for i in range(3)}
    daemon.store_path.parent.mkdir(parents=True)
    daemon.store_path.write_text(json.dumps(stored))
    daemon.start(wait=False)

    ready = notify_receiver.wait_for("READY")
    assert ready.fields["READY"] == "1"
    assert ready.sender_pid == daemon.pid  # NotifyAccess=main accepts only the main pid
    assert re.search(r"\b3 entries\b", ready.fields["STATUS"]), ready.fields
    # READY=1 means serving: the first attempt, without retries, is answered.
    with daemon.client(retry=RetryPolicy(reconnect_timeout_s=0)) as client:
        session = client.get("agent:main:k2")
        assert session is not None and session.data["sessionId"] == "s2"

    pings = [notify_receiver.wait_for("WATCHDOG").received_at for _ in range(PINGS)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
    # Expected every WATCHDOG_USEC/2 = 100 ms. A late wake-up only lengthens its own gap, so
    # the median shrugs off a few; the bounds (50 ms, 150 ms) only tell "half the timeout"
    # from "the whole timeout" (a ping every 200 ms) or a busy loop.
    median_gap_s = statistics.median(gaps)
    assert WATCHDOG_USEC * 0.25e-6 <= median_gap_s < WATCHDOG_USEC * 0.75e-6, gaps

    assert daemon.stop() == 0
    stopping = notify_receiver.wait_for("STOPPING", timeout_s=5)
    assert stopping.fields["STOPPING"] == "1"
    assert stopping.sender_pid == daemon.pid
    assert notify_receiver.seen.index(ready) < notify_receiver.seen.index(stopping)


def test_a_reload_is_bracketed_by_reloading_and_ready(
    make_daemon: Callable[..., DaemonProcess], notify_receiver: NotifyReceiver
) -> None:
    daemon = make_daemon(env={"NOTIFY_SOCKET": notify_receiver.address})
    daemon.start(wait=False)
    notify_receiver.wait_for("READY")
    daemon.config_path.write_text('log_level = "debug"\n')
    os.kill(daemon.pid, signal.SIGHUP)
    reloading = notify_receiver.wait_for("RELOADING", timeout_s=10)
    assert reloading.fields["RELOADING"] == "1" and int(reloading.fields["MONOTONIC_USEC"]) > 0
    ready = notify_receiver.wait_for("READY", timeout_s=10)
    assert ready.fields["READY"] == "1" and ready.sender_pid == daemon.pid
    daemon.wait_for_log("reloaded: log_level")
    assert daemon.stop() == 0


def test_without_notify_socket_nothing_is_sent_and_it_still_serves(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # An empty NOTIFY_SOCKET counts as unset (and hides one the test runner might have).
    daemon = make_daemon(env={"NOTIFY_SOCKET": "", "WATCHDOG_USEC": str(WATCHDOG_USEC)}).start()
    with daemon.client() as client:
        assert client.hello().protocol == PROTOCOL_VERSION
    assert daemon.stop() == 0
    assert "sd_notify" not in daemon.log()  # no failed sends, no warnings
