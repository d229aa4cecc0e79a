"""sessiond.systemd with real sockets, in-process: sd_notify datagrams, watchdog pings, and
adopting passed listening sockets.

The sockets are owned by the test: a datagram receiver stands in for systemd's notify socket,
and listening sockets placed on free descriptor numbers stand in for LISTEN_FDS (fds 0-3 are
never touched). The environment and pid are injected instead of changing the process. The
pure environment parsing is in tests/unit/test_systemd_env.py; the real daemon under a
service-manager stand-in is in tests/integration/test_systemd.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessiond.systemd import (
    Notifier,
    SocketActivationError,
    activated_listener,
    listen_fds,
    listen_fds_with_names,
    run_watchdog,
)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the ~107-byte AF_UNIX path limit.
    base = Path("/tmp") / f"sdn-{uuid.uuid4().hex[:8]}"
    base.mkdir(mode=0o700)
    yield base
    for child in base.iterdir():
        child.unlink()
    base.rmdir()


@pytest.fixture
def receiver(short_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    """A path datagram socket standing in for systemd's notify socket."""
    path = str(short_dir / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def nothing_pending(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(2.0)
    return False


# --- what the Notifier sends --------------------------------------------------------------


def test_notifier_sends_state_changes_to_a_path_socket(
    receiver: tuple[socket.socket, str],
) -> None:
    sock, path = receiver
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    try:
        assert notifier.ready(status="serving 3 stores") is True
        assert received(sock) == ["READY=1", "STATUS=serving 3 stores"]
        notifier.status("flush failed: disk full")
        assert received(sock) == ["STATUS=flush failed: disk full"]
        notifier.watchdog()
        assert received(sock) == ["WATCHDOG=1"]
        notifier.stopping()
        assert received(sock) == ["STOPPING=1"]
        notifier.extend_timeout(1.5)
        assert received(sock) == ["EXTEND_TIMEOUT_USEC=1500000"]
    finally:
        notifier.close()


def test_status_newlines_cannot_inject_assignments(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier(path)
    try:
        notifier.status("bad key\nREADY=1")
        assert received(sock) == ["STATUS=bad key READY=1"]
    finally:
        notifier.close()


def test_notifier_sends_to_an_abstract_socket() -> None:
    name = f"sessiond-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
    try:
        assert notifier.ready() is True
        assert received(sock) == ["READY=1"]
    finally:
        notifier.close()
        sock.close()


def test_datagrams_carry_our_pid_for_notify_access_main(
    receiver: tuple[socket.socket, str],
) -> None:
    # systemd attributes messages by SCM_CREDENTIALS; NotifyAccess=main accepts the main pid.
    sock, path = receiver
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    notifier = Notifier(path)
    try:
        notifier.ready()
        _, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
        creds = [data for level, kind, data in ancillary if kind == socket.SCM_CREDENTIALS]
        assert len(creds) == 1
        assert struct.unpack("3i", creds[0])[0] == os.getpid()
    finally:
        notifier.close()


def test_send_failure_never_raises_and_warns_once(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(short_dir / "nobody-listens"))
    try:
        with caplog.at_level(logging.DEBUG, logger="sessiond.systemd"):
            assert notifier.ready() is False
            assert notifier.status("still down") is False
            assert notifier.watchdog() is False
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "sd_notify" in warnings[0].getMessage()
    finally:
        notifier.close()


def test_warning_repeats_after_recovery(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = str(short_dir / "flaky")
    notifier = Notifier(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        with caplog.at_level(logging.WARNING, logger="sessiond.systemd"):
            notifier.watchdog()
            sock.bind(path)
            assert notifier.watchdog() is True
            sock.close()
            os.unlink(path)
            notifier.watchdog()
        assert len(caplog.records) == 2
    finally:
        notifier.close()
        sock.close()


# --- watchdog -----------------------------------------------------------------------------


async def test_run_watchdog_pings_from_the_loop(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier(path)
    task = asyncio.create_task(run_watchdog(notifier, 0.01))
    try:
        await asyncio.sleep(0.1)
        assert received(sock) == ["WATCHDOG=1"]
        assert received(sock) == ["WATCHDOG=1"]
        # A blocked loop must stop the pings: that is what the watchdog detects.
        while not nothing_pending(sock):
            pass
        time.sleep(0.1)  # noqa: ASYNC251 -- blocking the loop on purpose, like a stuck daemon
        assert nothing_pending(sock)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        notifier.close()


# --- socket activation --------------------------------------------------------------------


def free_fd_range(count: int, start: int = 700) -> int:
    """The first of `count` consecutive descriptor numbers nobody uses."""
    first = start
    while True:
        busy = [fd for fd in range(first, first + count) if fd_is_open(fd)]
        if not busy:
            return first
        first = busy[-1] + 1


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def passed_fds() -> Iterator[list[int]]:
    """Descriptor numbers the test places sockets on; any still open at the end are closed."""
    placed: list[int] = []
    yield placed
    for fd in placed:
        if fd_is_open(fd):
            os.close(fd)


def place(passed: list[int], socks: list[socket.socket]) -> int:
    """dup2 each socket onto consecutive free fds, like systemd does from fd 3; return first."""
    first = free_fd_range(len(socks))
    for offset, sock in enumerate(socks):
        os.dup2(sock.fileno(), first + offset, inheritable=True)
        passed.append(first + offset)
        sock.close()
    return first


def unix_listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    return sock


def activation_env(pid: int, count: int, names: str | None = None) -> dict[str, str]:
    env = {"LISTEN_PID": str(pid), "LISTEN_FDS": str(count), "OTHER": "kept"}
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    return env


def test_adopts_passed_listening_sockets_and_unsets_the_variables(
    short_dir: Path, passed_fds: list[int]
) -> None:
    first = place(passed_fds, [unix_listener(short_dir / "a"), unix_listener(short_dir / "b")])
    env = activation_env(4242, 2, names="sessiond.socket:admin")
    adopted = listen_fds_with_names(env, pid=4242, fd_start=first)
    try:
        assert env == {"OTHER": "kept"}
        assert [name for name, _ in adopted] == ["sessiond.socket", "admin"]
        assert [sock.fileno() for _, sock in adopted] == passed_fds
        assert [sock.getsockname() for _, sock in adopted] == [
            str(short_dir / "a"),
            str(short_dir / "b"),
        ]
        assert not any(os.get_inheritable(fd) for fd in passed_fds)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(short_dir / "a"))
            conn, _ = adopted[0][1].accept()
            conn.close()
    finally:
        for _, sock in adopted:
            sock.close()


def test_names_default_to_unknown(short_dir: Path, passed_fds: list[int]) -> None:
    first = place(passed_fds, [unix_listener(short_dir / "a")])
    adopted = listen_fds_with_names(activation_env(4242, 1), pid=4242, fd_start=first)
    assert [name for name, _ in adopted] == ["unknown"]
    adopted[0][1].close()


def test_unset_environment_false_keeps_the_variables(
    short_dir: Path, passed_fds: list[int]
) -> None:
    first = place(passed_fds, [unix_listener(short_dir / "a")])
    env = activation_env(4242, 1)
    socks = listen_fds(env, pid=4242, fd_start=first, unset_environment=False)
    assert env == activation_env(4242, 1)
    socks[0].close()


def test_default_environment_is_os_environ(
    short_dir: Path, passed_fds: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = place(passed_fds, [unix_listener(short_dir / "a")])
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "1")
    socks = listen_fds(fd_start=first)
    assert len(socks) == 1
    assert "LISTEN_PID" not in os.environ
    assert "LISTEN_FDS" not in os.environ
    socks[0].close()


def not_listening(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


def datagram(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    return sock


@pytest.mark.parametrize("make_bad", [not_listening, datagram], ids=["unlistened", "dgram"])
def test_rejects_sockets_it_cannot_serve_and_leaves_fds_open(
    short_dir: Path, passed_fds: list[int], make_bad: object
) -> None:
    assert callable(make_bad)
    first = place(passed_fds, [unix_listener(short_dir / "ok"), make_bad(short_dir / "bad")])
    env = activation_env(4242, 2)
    with pytest.raises(SocketActivationError, match=f"fd {first + 1}"):
        listen_fds(env, pid=4242, fd_start=first)
    assert env == {"OTHER": "kept"}
    assert all(fd_is_open(fd) for fd in passed_fds)


def test_rejects_a_connected_socket_and_a_closed_fd(passed_fds: list[int]) -> None:
    left, right = socket.socketpair()
    right.close()
    first = place(passed_fds, [left])
    with pytest.raises(SocketActivationError, match="not a listening"):
        listen_fds(activation_env(4242, 1), pid=4242, fd_start=first)
    os.close(first)
    with pytest.raises(SocketActivationError, match="not a socket"):
        listen_fds(activation_env(4242, 1), pid=4242, fd_start=first)


def test_rejects_a_file_descriptor_that_is_not_a_socket(
    short_dir: Path, passed_fds: list[int]
) -> None:
    first = free_fd_range(1)
    file_fd = os.open(short_dir, os.O_RDONLY | os.O_DIRECTORY)
    os.dup2(file_fd, first)
    os.close(file_fd)
    passed_fds.append(first)
    with pytest.raises(SocketActivationError, match="not a socket"):
        listen_fds(activation_env(4242, 1), pid=4242, fd_start=first)


def test_activated_listener_returns_the_one_socket(short_dir: Path, passed_fds: list[int]) -> None:
    first = place(passed_fds, [unix_listener(short_dir / "a")])
    sock = activated_listener(activation_env(4242, 1), pid=4242, fd_start=first)
    assert sock is not None
    assert sock.getsockname() == str(short_dir / "a")
    sock.close()


def test_activated_listener_refuses_two_without_closing_them(
    short_dir: Path, passed_fds: list[int]
) -> None:
    first = place(passed_fds, [unix_listener(short_dir / "a"), unix_listener(short_dir / "b")])
    with pytest.raises(SocketActivationError, match="expected 1"):
        activated_listener(activation_env(4242, 2), pid=4242, fd_start=first)
    assert all(fd_is_open(fd) for fd in passed_fds)
