"""Who may use a running daemon: peer credentials checked end to end, with clients run as
other users by setpriv (root only; CI runs as root).

Two gates stand between a bot and the store, and both are exercised:

- the filesystem: the socket file is 0660 and, like sessiond.socket's
  `SocketGroup=sessiond-clients`, belongs to the bots' group (here the daemon's directory is
  setgid, so the socket bound inside gets SOCKET_GID). A user outside that group cannot even
  connect(); the client reports ForbiddenError and the daemon never sees it;
- the daemon: with the socket file opened up to everyone (0666, as a socket inherited or bound
  elsewhere might be), the daemon still checks SO_PEERCRED against its policy (its own uid,
  root, the socket file's group; or the configured `[access]` lists) and answers a stranger
  with one `forbidden` reply carrying id null, disconnects it, and logs its uid and pid.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run other uids")
pytestmark = [pytest.mark.root, needs_root]

NOBODY = 65534
SOCKET_GID = 4242  # the socket file's group: sessiond-clients on a real host
CONFIGURED_GID = 4343
CONFIGURED_UID = 4444
AS_NOBODY = ("--reuid=65534", "--regid=65534", "--clear-groups")

# Run as the other user: one sessiond_client call sequence, the outcome as JSON.
CLIENT = """
import json, sys
from sessiond_client import Client, RetryPolicy, SessiondError
try:
    with Client(sys.argv[1], timeout_s=10, retry=RetryPolicy(reconnect_timeout_s=0)) as client:
        client.hello()
        session = client.patch("agent:main:bot", {"label": sys.argv[2]})
    outcome = {"served": True, "label": session.data["label"]}
except SessiondError as error:
    outcome = {"served": False, "error": type(error).__name__, "message": str(error)}
print(json.dumps(outcome))
"""

# Run as the other user: the raw protocol, to see exactly what the daemon sends a stranger.
# It reads one frame without sending anything, then expects the end of the stream, and only
# then writes a request (whether that write still succeeds is reported as "sent").
RAW_PEER = """
import json, socket, struct, sys
import msgspec
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(10)
sock.connect(sys.argv[1])
def exactly(size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise SystemExit("closed before a whole frame")
        data += chunk
    return data
(length,) = struct.unpack(">I", exactly(4))
reply = msgspec.msgpack.decode(exactly(length))
try:
    closed = sock.recv(1) == b""
except ConnectionResetError:
    closed = True
try:
    sock.sendall(struct.pack(">I", 1) + msgspec.msgpack.encode({}))
    sent = "ok"
except OSError as error:
    sent = type(error).__name__
print(json.dumps({"reply": reply, "closed": closed, "sent": sent}))
"""


def setpriv() -> str:
    path = shutil.which("setpriv")
    if path is None:
        pytest.fail("setpriv not found: install util-linux (.ci/run does)")
    return path


def run_as(setpriv_args: tuple[str, ...], script: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Run `script` under `setpriv <setpriv_args>`; its pid and the JSON it printed."""
    command = [setpriv(), *setpriv_args, sys.executable, "-c", script, *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/", text=True
    ) as process:
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    outcome: dict[str, Any] = json.loads(stdout)
    return process.pid, outcome


def start_daemon(
    make_daemon: Callable[..., DaemonProcess], config: dict[str, Any] | None = None
) -> DaemonProcess:
    """A daemon run by root whose socket file is 0660 root:SOCKET_GID."""
    daemon = make_daemon(config)
    os.chmod(daemon.root.parent, 0o755)  # the temp dirs are 0700: let others reach the socket
    os.chown(daemon.root, 0, SOCKET_GID)
    os.chmod(daemon.root, 0o2755)  # setgid: files bound inside get the directory's group
    daemon.start()
    socket_stat = os.stat(daemon.socket_path)
    assert (stat.S_IMODE(socket_stat.st_mode), socket_stat.st_gid) == (0o660, SOCKET_GID)
    return daemon


def open_to_everyone(daemon: DaemonProcess) -> None:
    os.chmod(daemon.socket_path, 0o666)


def stats(daemon: DaemonProcess) -> dict[str, Any]:
    with daemon.client() as client:  # root: always allowed
        return client.stats()


def refusals_logged(daemon: DaemonProcess) -> list[str]:
    return [line for line in daemon.log().splitlines() if "refused connection" in line]


def test_a_user_outside_the_socket_group_cannot_open_the_socket_file(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = start_daemon(make_daemon)
    _, outcome = run_as(AS_NOBODY, CLIENT, daemon.socket_path, "x")
    assert outcome["served"] is False
    assert outcome["error"] == "ForbiddenError"
    assert "Permission denied" in outcome["message"]
    # The kernel refused the connect(); the daemon never saw this peer.
    assert stats(daemon)["connections_refused"] == 0
    assert refusals_logged(daemon) == []


def test_the_daemon_refuses_a_stranger_with_one_forbidden_reply_and_logs_it(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = start_daemon(make_daemon)
    open_to_everyone(daemon)
    pid, outcome = run_as(AS_NOBODY, RAW_PEER, daemon.socket_path)
    reply = outcome["reply"]
    assert (reply["id"], reply["ok"], reply["error"]["code"]) == (None, False, "forbidden")
    assert str(NOBODY) in reply["error"]["message"]
    assert outcome["closed"] is True
    (logged,) = refusals_logged(daemon)
    assert f"pid={pid} uid={NOBODY} gid={NOBODY}" in logged

    # The sync client reports that refusal as ForbiddenError, whichever of its first request
    # and the daemon's close comes first (it reads the waiting reply when its send fails).
    client_pid, refused = run_as(AS_NOBODY, CLIENT, daemon.socket_path, "x")
    assert (refused["served"], refused["error"]) == (False, "ForbiddenError")
    assert "not allowed" in refused["message"]
    assert f"pid={client_pid} uid={NOBODY}" in refusals_logged(daemon)[-1]
    counters = stats(daemon)
    assert counters["connections_refused"] == 2
    assert counters["errors"]["forbidden"] == 2
    with daemon.client() as client:
        assert client.get("agent:main:bot") is None  # nothing a stranger sent was applied


@pytest.mark.parametrize(
    "membership",
    [
        ("--reuid=65534", "--regid=65534", f"--groups={SOCKET_GID}"),
        ("--reuid=65534", f"--regid={SOCKET_GID}", "--clear-groups"),
    ],
    ids=["supplementary-group", "primary-group"],
)
def test_a_member_of_the_socket_group_is_served(
    make_daemon: Callable[..., DaemonProcess], membership: tuple[str, ...]
) -> None:
    daemon = start_daemon(make_daemon)  # 0660 stays: the group gets through the filesystem
    _, outcome = run_as(membership, CLIENT, daemon.socket_path, "from a bot")
    assert outcome == {"served": True, "label": "from a bot"}
    with daemon.client() as client:
        session = client.get("agent:main:bot")
        assert session is not None and session.data["label"] == "from a bot"
    assert refusals_logged(daemon) == []


def test_configured_uids_and_gids_replace_the_socket_group(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = start_daemon(
        make_daemon,
        {"access": {"allowed_uids": [CONFIGURED_UID], "allowed_gids": [CONFIGURED_GID]}},
    )
    open_to_everyone(daemon)
    in_group = ("--reuid=65534", "--regid=65534", f"--groups={CONFIGURED_GID}")
    assert run_as(in_group, CLIENT, daemon.socket_path, "g")[1]["served"] is True
    as_uid = (f"--reuid={CONFIGURED_UID}", "--regid=65534", "--clear-groups")
    assert run_as(as_uid, CLIENT, daemon.socket_path, "u")[1]["served"] is True
    # With allowed_gids configured, the socket file's group no longer grants anything.
    socket_group = ("--reuid=65534", "--regid=65534", f"--groups={SOCKET_GID}")
    pid, outcome = run_as(socket_group, RAW_PEER, daemon.socket_path)
    assert outcome["reply"]["error"]["code"] == "forbidden"
    (logged,) = refusals_logged(daemon)
    assert f"pid={pid} uid={NOBODY}" in logged


# A bot's first request races the refusal: the daemon refuses in connection_made. If it
# closed at once, a request written after that close would fail with EPIPE, and a client that
# does not then go and read the `forbidden` reply waiting in its socket would report a broken
# pipe instead. The daemon therefore closes lingeringly (reply, shut down its write side,
# discard input for a moment). RAW_PEER pins the losing order down: it writes only after it
# has read the reply and the end of the stream.
def test_a_refused_peer_can_still_send_its_request_and_read_why(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = start_daemon(make_daemon)
    open_to_everyone(daemon)
    _, outcome = run_as(AS_NOBODY, RAW_PEER, daemon.socket_path)
    assert outcome["reply"]["error"]["code"] == "forbidden"
    assert outcome["closed"] is True
    assert outcome["sent"] == "ok"  # today: BrokenPipeError
