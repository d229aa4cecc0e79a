"""Conformance-suite hooks: a per-function pass count at the end of the run.

Tests tag themselves with ``record_property(CONFORMANCE_FN_PROPERTY, "<original fn>")``;
the terminal summary then prints ``conformance: <fn>: N passed / M`` per function.
"""

from __future__ import annotations

from collections import Counter

import pytest

from .vectorfile import CONFORMANCE_FN_PROPERTY

_totals: Counter[str] = Counter()
_passed: Counter[str] = Counter()


def _conformance_fn(report: pytest.TestReport) -> str | None:
    for name, value in report.user_properties:
        if name == CONFORMANCE_FN_PROPERTY:
            return str(value)
    return None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    fn = _conformance_fn(report)
    if fn is not None:
        _totals[fn] += 1
        _passed[fn] += int(report.passed)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _totals:
        return
    terminalreporter.section("conformance vectors")
    for fn in sorted(_totals):
        terminalreporter.write_line(f"conformance: {fn}: {_passed[fn]} passed / {_totals[fn]}")
    total, passed = sum(_totals.values()), sum(_passed.values())
    terminalreporter.write_line(f"conformance: all: {passed} passed / {total}")
