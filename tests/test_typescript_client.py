"""The TypeScript client's own suite (``clients/typescript``: ``node --test`` against real
daemons started with this interpreter), run from pytest so that the one test command of
the README covers both clients.

``npm ci`` installs the package's locked dependencies from the npm registry when
``node_modules`` is missing (a fresh checkout, as in CI); ``npm test`` builds it with
``tsc`` and runs every test file. Without Node and npm on the machine the suite cannot
run and is reported as skipped (CI installs them: ``.ci/run``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clients" / "typescript"
INSTALL_TIMEOUT_S = 300
SUITE_TIMEOUT_S = 420


def run_in_group(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in its own process group; on timeout kill the whole group (npm,
    node and the daemons the tests started)."""
    environ = {**os.environ, "SESSIOND_PYTHON": sys.executable, "NO_COLOR": "1"}
    with subprocess.Popen(
        command,
        cwd=PACKAGE,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            message = f"{' '.join(command)} took over {timeout_s} s:\n{output[-6000:]}"
            raise AssertionError(message) from None
        return subprocess.CompletedProcess(command, process.returncode, output)


@pytest.mark.timeout(INSTALL_TIMEOUT_S + SUITE_TIMEOUT_S + 60)
def test_the_typescript_client_suite_passes() -> None:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed; the TypeScript client is not tested here")
    if not (PACKAGE / "node_modules").is_dir():
        installed = run_in_group([npm, "ci", "--no-audit", "--no-fund"], INSTALL_TIMEOUT_S)
        assert installed.returncode == 0, installed.stdout[-6000:]
    suite = run_in_group([npm, "test"], SUITE_TIMEOUT_S)
    assert suite.returncode == 0, suite.stdout[-12000:]
    assert "# fail 0" in suite.stdout and "# pass " in suite.stdout, suite.stdout[-3000:]
