"""systemd integration without a dependency: sd_notify, the watchdog, socket activation. Does I/O.

Owns the three host protocols a `Type=notify`, socket-activated service speaks:

- `Notifier` sends sd_notify datagrams (`READY=1`, `STATUS=...`, `STOPPING=1`,
  `RELOADING=1`, `WATCHDOG=1`, `EXTEND_TIMEOUT_USEC=...`) to `$NOTIFY_SOCKET` (a path, or an
  abstract socket written with a leading `@`). Without `$NOTIFY_SOCKET` it does nothing, so
  the daemon calls it unconditionally. Sending never raises and never blocks the event loop:
  a failure is logged at warning once (until a send succeeds again) and the message dropped.
- `watchdog_interval_s` / `run_watchdog`: `WATCHDOG=1` at half of `$WATCHDOG_USEC`, sent from
  the event loop itself so a stuck loop stops the pings and systemd restarts the daemon.
- `listen_fds` adopts the listening sockets passed by a `.socket` unit (`$LISTEN_PID`,
  `$LISTEN_FDS`, `$LISTEN_FDNAMES`, descriptors from 3), checks each is a listening AF_UNIX
  stream socket, and unsets the variables as `sd_listen_fds(1)` does.

The environment and pid are parameters (default: `os.environ`, `os.getpid()`) so tests need
no real service manager.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping

__all__ = [
    "EXIT_CONFIG_ERROR",
    "LISTEN_FDS_START",
    "Notifier",
    "SocketActivationError",
    "activated_listener",
    "listen_fds",
    "listen_fds_with_names",
    "notify_address",
    "run_watchdog",
    "watchdog_interval_s",
]

log = logging.getLogger(__name__)

# sysexits.h EX_CONFIG: the unit's RestartPreventExitStatus= stops restart loops on bad config.
EXIT_CONFIG_ERROR = 78
LISTEN_FDS_START = 3
_LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
_UNKNOWN_FD_NAME = "unknown"


def notify_address(value: str | None) -> str | None:
    """The AF_UNIX address for a `$NOTIFY_SOCKET` value; None if unset or unsupported."""
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    # e.g. "vsock:CID:PORT" (systemd >= 253, for VMs); not something a service is given.
    log.warning("ignoring unsupported NOTIFY_SOCKET=%r", value)
    return None


class Notifier:
    """Sends sd_notify state changes; a no-op when the address is None."""

    def __init__(self, address: str | None) -> None:
        self._address = address
        self._sock: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(notify_address(env.get("NOTIFY_SOCKET")))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) finished; the service is serving."""
        return self.notify("READY=1", *_status_field(status))

    def reloading(self) -> bool:
        """A reload began (``READY=1`` ends it); ``MONOTONIC_USEC`` is what systemd's
        ``Type=notify-reload`` asks to accompany it."""
        monotonic_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_us}")

    def status(self, text: str) -> bool:
        """Free-form one-line status shown by `systemctl status`."""
        return self.notify(*_status_field(text))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown began; systemd stops waiting for readiness and starts TimeoutStopSec."""
        return self.notify("STOPPING=1", *_status_field(status))

    def watchdog(self) -> bool:
        """Keep-alive ping; must arrive within WatchdogSec."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, timeout_s: float) -> bool:
        """Ask for `timeout_s` more before the current start/stop timeout fires."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, round(timeout_s * 1_000_000))}")

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` lines in one datagram; True if it was handed to the kernel."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", errors="replace")
        try:
            self._socket().sendto(payload, self._address)
        except OSError as exc:
            self._report_failure(exc)
            return False
        self._failing = False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            # A full manager queue must drop one message, not stall the event loop.
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    def _report_failure(self, exc: OSError) -> None:
        if self._failing:
            log.debug("sd_notify to %r failed again: %s", self._address, exc)
            return
        self._failing = True
        log.warning("sd_notify to %r failed (logged once until it works): %s", self._address, exc)


def _status_field(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    # One datagram line per assignment: a newline would start a bogus assignment.
    return ("STATUS=" + " ".join(text.splitlines()),)


def watchdog_interval_s(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Half of `$WATCHDOG_USEC` in seconds, or None if no watchdog applies to `pid`.

    `$WATCHDOG_PID`, when set, names the process the watchdog is for; a forked child that
    inherited the variables must not ping on the parent's behalf.
    """
    env = os.environ if environ is None else environ
    usec = _positive_int(env.get("WATCHDOG_USEC"))
    if usec is None:
        return None
    watchdog_pid = env.get("WATCHDOG_PID")
    if watchdog_pid is not None:
        own_pid = os.getpid() if pid is None else pid
        if _positive_int(watchdog_pid) != own_pid:
            return None
    return usec / 2 / 1_000_000


async def run_watchdog(notifier: Notifier, interval_s: float) -> None:
    """Ping `WATCHDOG=1` every `interval_s` until cancelled.

    Runs as a task on the daemon's loop on purpose: if the loop is blocked or wedged the
    pings stop and systemd kills and restarts the daemon (Restart=on-failure).
    """
    if interval_s <= 0:
        raise ValueError(f"watchdog interval must be positive, got {interval_s!r}")
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval_s)


def _positive_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value, 10)
    except ValueError:
        return None
    return number if number > 0 else None


class SocketActivationError(RuntimeError):
    """The passed descriptors do not match what the daemon can serve on (a unit mistake)."""


def listen_fds(
    environ: MutableMapping[str, str] | None = None,
    pid: int | None = None,
    *,
    fd_start: int = LISTEN_FDS_START,
    unset_environment: bool = True,
) -> list[socket.socket]:
    """The listening sockets systemd passed to this process (empty if none).

    Like `sd_listen_fds(unset_environment=1)`: the LISTEN_* variables are removed from
    `environ` whatever the outcome, so a child process never mistakes them for its own.
    The sockets are marked close-on-exec and owned by the caller.
    """
    named = listen_fds_with_names(
        environ, pid, fd_start=fd_start, unset_environment=unset_environment
    )
    return [sock for _, sock in named]


def listen_fds_with_names(
    environ: MutableMapping[str, str] | None = None,
    pid: int | None = None,
    *,
    fd_start: int = LISTEN_FDS_START,
    unset_environment: bool = True,
) -> list[tuple[str, socket.socket]]:
    """`listen_fds` with each socket's `FileDescriptorName=` ("unknown" if not given).

    Raises SocketActivationError if the variables are malformed or a descriptor is not a
    listening AF_UNIX stream socket; then no descriptor is closed or adopted.
    """
    env = os.environ if environ is None else environ
    try:
        count = _listen_fd_count(env, os.getpid() if pid is None else pid)
        names = _listen_fd_names(env, count)
    finally:
        if unset_environment:
            for variable in _LISTEN_VARIABLES:
                env.pop(variable, None)
    sockets = _adopt_listening_sockets(range(fd_start, fd_start + count))
    return list(zip(names, sockets, strict=True))


def activated_listener(
    environ: MutableMapping[str, str] | None = None,
    pid: int | None = None,
    *,
    fd_start: int = LISTEN_FDS_START,
) -> socket.socket | None:
    """The one socket sessiond.socket passes, or None when not socket-activated.

    More than one descriptor means the unit was changed into something this daemon does not
    serve: SocketActivationError (a configuration error, exit EXIT_CONFIG_ERROR).
    """
    sockets = listen_fds(environ, pid, fd_start=fd_start)
    if len(sockets) > 1:
        for sock in sockets:
            sock.detach()
        raise SocketActivationError(f"expected 1 activated socket, got {len(sockets)}")
    return sockets[0] if sockets else None


def _listen_fd_count(env: Mapping[str, str], pid: int) -> int:
    listen_pid = env.get("LISTEN_PID")
    if listen_pid is None:
        return 0
    if _strict_int("LISTEN_PID", listen_pid) != pid:
        return 0  # meant for another process (e.g. our parent); not ours to take
    listen_fds_value = env.get("LISTEN_FDS")
    if listen_fds_value is None:
        return 0
    count = _strict_int("LISTEN_FDS", listen_fds_value)
    if count < 0:
        raise SocketActivationError(f"LISTEN_FDS must not be negative, got {count}")
    return count


def _listen_fd_names(env: Mapping[str, str], count: int) -> list[str]:
    value = env.get("LISTEN_FDNAMES")
    if value is None:
        return [_UNKNOWN_FD_NAME] * count
    names = value.split(":") if count else []
    if len(names) != count:
        raise SocketActivationError(f"LISTEN_FDNAMES has {len(names)} names for {count} fds")
    return names


def _strict_int(variable: str, value: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise SocketActivationError(f"{variable}={value!r} is not an integer") from None


def _adopt_listening_sockets(fds: range) -> list[socket.socket]:
    adopted: list[socket.socket] = []
    try:
        for fd in fds:
            adopted.append(_adopt_listening_socket(fd))
    except SocketActivationError:
        for sock in adopted:
            sock.detach()
        raise
    return adopted


def _adopt_listening_socket(fd: int) -> socket.socket:
    try:
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise SocketActivationError(f"passed fd {fd} is not a socket: {exc}") from exc
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 0
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM or not listening:
        description = f"family={sock.family!r} type={sock.type!r} listening={listening}"
        sock.detach()
        raise SocketActivationError(
            f"passed fd {fd} is not a listening AF_UNIX stream socket ({description})"
        )
    return sock
