"""sessiond.peercred against real sockets: the credentials the kernel reports for a peer
(SO_PEERCRED, SO_PEERGROUPS, the /proc fallback) and the group of a socket file.

The sockets are socketpairs and listeners owned by the test. The tests marked `root` start a
client under other uids/gids with setpriv and read its credentials from the accepted
connection, as the daemon does.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessiond.access import AccessPolicy, PeerCredentials
from sessiond.peercred import (
    _groups_from_proc,
    parse_status_groups,
    peer_credentials,
    socket_file_gid,
)

DAEMON_UID = 990


def test_proc_fallback_reads_the_status_file(tmp_path: Path) -> None:
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "status").write_text("Name:\tx\nGroups:\t5 7\n", encoding="ascii")
    assert _groups_from_proc(77, proc_root=tmp_path) == (5, 7)
    assert _groups_from_proc(78, proc_root=tmp_path) == ()
    assert _groups_from_proc(0, proc_root=tmp_path) == ()


# --- reading credentials from real sockets -----------------------------------------------


def own_supplementary_groups() -> tuple[int, ...]:
    return parse_status_groups(Path("/proc/self/status").read_text(encoding="ascii"))


def test_peer_credentials_of_a_socketpair_are_our_own() -> None:
    left, right = socket.socketpair()
    with left, right:
        peer = peer_credentials(left)
    assert (peer.pid, peer.uid, peer.gid) == (os.getpid(), os.geteuid(), os.getegid())
    assert sorted(peer.groups) == sorted(own_supplementary_groups())


async def test_peer_credentials_of_an_asyncio_transport_socket(short_dir: Path) -> None:
    # The server reads credentials from transport.get_extra_info("socket"), which is a
    # TransportSocket wrapper (uvloop: PseudoSocket), not a socket.socket.
    path = str(short_dir / "s")
    seen: asyncio.Future[PeerCredentials] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.set_result(peer_credentials(writer.get_extra_info("socket")))
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_unix_server(on_connect, path)
    async with server:
        _, writer = await asyncio.open_unix_connection(path)
        peer = await asyncio.wait_for(seen, 5)
        writer.close()
        await writer.wait_closed()
    assert (peer.pid, peer.uid, peer.gid) == (os.getpid(), os.geteuid(), os.getegid())


def test_peer_credentials_on_an_unconnected_socket_are_unknown() -> None:
    # Linux reports pid 0 and the overflow ids for a socket without a peer.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        peer = peer_credentials(sock)
    assert peer.pid == 0
    assert not AccessPolicy.default_for(None, own_uid=DAEMON_UID).allows(peer)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    base = Path("/tmp") / f"acc-{uuid.uuid4().hex[:8]}"
    base.mkdir(mode=0o700)
    yield base
    for child in base.iterdir():
        child.unlink()
    base.rmdir()


def test_socket_file_gid(short_dir: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        assert socket_file_gid(sock) is None  # unbound
        sock.bind(str(short_dir / "s"))
        assert socket_file_gid(sock) == os.stat(short_dir / "s").st_gid
        os.unlink(short_dir / "s")
        assert socket_file_gid(sock) is None  # file gone
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as abstract:
        abstract.bind(f"\0sessiond-test-{uuid.uuid4().hex}")
        assert socket_file_gid(abstract) is None


# --- other users, via setpriv (root only) ------------------------------------------------

# Skipped only when not root (CI runs as root). A missing setpriv is a failure, not a skip:
# .ci/run installs util-linux.
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run other uids")


def setpriv() -> str:
    path = shutil.which("setpriv")
    if path is None:
        pytest.fail("setpriv not found: install util-linux (.ci/run does)")
    return path


CLIENT_SCRIPT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "s.connect('\\0' + sys.argv[1])\n"
    "s.recv(1)\n"
)


def credentials_of_client(*setpriv_args: str) -> PeerCredentials:
    """Accept one connection from a Python client run under `setpriv <args>`; its creds."""
    name = f"sessiond-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind("\0" + name)  # abstract: no file permissions in the way
        listener.listen()
        listener.settimeout(10)
        command = [setpriv(), *setpriv_args, sys.executable, "-c", CLIENT_SCRIPT, name]
        with subprocess.Popen(command) as client:
            conn, _ = listener.accept()
            with conn:
                peer = peer_credentials(conn)
                conn.sendall(b"x")
            assert client.wait(timeout=10) == 0
    assert peer.pid == client.pid
    return peer


@pytest.mark.root
@needs_root
def test_other_users_credentials_and_supplementary_groups() -> None:
    peer = credentials_of_client("--reuid=4242", "--regid=4343", "--groups=5000,991,27")
    assert (peer.uid, peer.gid) == (4242, 4343)
    assert sorted(peer.groups) == [27, 991, 5000]
    policy = AccessPolicy.default_for(991, own_uid=DAEMON_UID)
    assert policy.allows(peer)
    assert not AccessPolicy.default_for(992, own_uid=DAEMON_UID).allows(peer)


@pytest.mark.root
@needs_root
def test_more_groups_than_so_peergroups_returns_fall_back_to_proc() -> None:
    # Python caps getsockopt() buffers at 1024 bytes (256 gids); 300 groups get ERANGE.
    many = list(range(6000, 6300))
    peer = credentials_of_client(
        "--reuid=4242", "--regid=4343", "--groups=" + ",".join(map(str, many))
    )
    assert sorted(peer.groups) == many
