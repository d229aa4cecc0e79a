"""Pure tests for sessiond.systemd: reading the environment systemd hands a service.

`$NOTIFY_SOCKET` addresses, the watchdog interval from `$WATCHDOG_USEC`/`$WATCHDOG_PID`, and
the `$LISTEN_PID`/`$LISTEN_FDS`/`$LISTEN_FDNAMES` checks that happen before any descriptor is
touched. The environment and pid are injected; no sockets are created. The same module with
real sockets is tested in tests/integration/test_systemd_notify.py, and the daemon under a
real service manager stand-in in tests/integration/test_systemd.py.
"""

from __future__ import annotations

import pytest

from sessiond.systemd import (
    Notifier,
    SocketActivationError,
    activated_listener,
    listen_fds,
    notify_address,
    run_watchdog,
    watchdog_interval_s,
)

OUR_PID = 4242
OTHER_PID = 1
# A descriptor number these tests never reach: every case fails or stops before adoption.
UNUSED_FD = 900


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@sd-notify/1", "\0sd-notify/1"),
        (None, None),
        ("", None),
        ("@", None),
        ("vsock:2:1234", None),
        ("relative/path", None),
    ],
)
def test_notify_address(value: str | None, expected: str | None) -> None:
    assert notify_address(value) == expected


def test_notifier_without_notify_socket_is_a_noop() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    notifier.close()


@pytest.mark.parametrize(
    ("environ", "expected_s"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(OUR_PID)}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(OUR_PID + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "junk"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "30s"}, None),
        ({"WATCHDOG_PID": str(OUR_PID)}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_for_our_pid(
    environ: dict[str, str], expected_s: float | None
) -> None:
    assert watchdog_interval_s(environ, pid=OUR_PID) == expected_s


async def test_run_watchdog_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        await run_watchdog(Notifier(None), 0)


def test_no_activation_gives_no_sockets() -> None:
    env = {"PATH": "/bin"}
    assert listen_fds(env, pid=OUR_PID, fd_start=UNUSED_FD) == []
    assert env == {"PATH": "/bin"}


def test_variables_for_another_pid_are_removed_but_not_used() -> None:
    env = {"LISTEN_PID": str(OTHER_PID), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x", "OTHER": "kept"}
    assert listen_fds(env, pid=OUR_PID, fd_start=UNUSED_FD) == []
    assert env == {"OTHER": "kept"}


@pytest.mark.parametrize(
    "environ",
    [
        {"LISTEN_PID": "x", "LISTEN_FDS": "1"},
        {"LISTEN_PID": str(OUR_PID), "LISTEN_FDS": "one"},
        {"LISTEN_PID": str(OUR_PID), "LISTEN_FDS": "-1"},
        {"LISTEN_PID": str(OUR_PID), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b"},
    ],
)
def test_malformed_variables_are_errors_and_still_unset(environ: dict[str, str]) -> None:
    env = dict(environ)
    with pytest.raises(SocketActivationError):
        listen_fds(env, pid=OUR_PID, fd_start=UNUSED_FD)
    assert env == {}


def test_activated_listener_without_activation_is_none() -> None:
    assert activated_listener({}, pid=OUR_PID, fd_start=UNUSED_FD) is None
