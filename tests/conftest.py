"""Shared fixtures: short temp dirs and real daemon processes (logs printed on failure)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess, short_temp_dir


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = short_temp_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_daemon(
    short_tmp: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., DaemonProcess]]:
    """Factory: ``make_daemon(config_dict)`` → an unstarted DaemonProcess in its own dir."""
    daemons: list[DaemonProcess] = []

    def factory(config: dict[str, Any] | None = None, **kwargs: Any) -> DaemonProcess:
        root = short_tmp / f"d{len(daemons)}"
        root.mkdir()
        daemon = DaemonProcess(root, config, **kwargs)
        daemons.append(daemon)
        return daemon

    yield factory
    for daemon in daemons:
        daemon.ensure_stopped()
    call_report = request.node.stash.get(_REPORTS, {}).get("call")
    if call_report is not None and call_report.failed:
        for index, daemon in enumerate(daemons):
            print(f"--- log of daemon {index} ---\n{daemon.log()}")


@pytest.fixture
def daemon(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    """A running daemon with default settings."""
    return make_daemon().start()
