"""Crash tests time out with pytest-timeout's ``thread`` method. The default (``signal``)
raises inside whatever runs at that moment: in the event loop, a task can swallow it, or
the loop turns it into one task's exception and spins on. The thread method dumps every
thread's stack and ends the run, so a hung mutant fails instead of stalling the suite
(within the ini ``timeout``; each workload run also has its own, much shorter, deadline)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.timeout(method="thread"))
