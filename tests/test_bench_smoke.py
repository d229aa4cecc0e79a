"""``python -m bench --quick`` end to end, as a smoke test: every contender (sessiond, the
original file store, Redis, the floor) runs every workload it supports and the JSON report
is complete. Nothing here asserts on speed — the machines are shared and noisy.

The smoke run is shortened (one repetition of 0.2 s on a 1k store): it proves that every
cell runs, not how fast. It has its own timeout, and on timeout the whole process group
of the bench (its clients, daemons and redis-servers) is killed, and its work files live
under the test's own temp directory, so nothing is left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTENDERS = {
    "sessiond",
    "sessiond-durable",
    "sessiond-redis",
    "original",
    "redis-everysec",
    "redis-always",
    "floor",
}
SMOKE_TIMEOUT_S = 400
SMOKE_ARGS = ["--quick", "--sizes", "1000", "--duration-s", "0.2", "--repetitions", "1"]


@pytest.mark.slow
@pytest.mark.timeout(SMOKE_TIMEOUT_S + 60)
def test_bench_quick_runs_every_contender(short_tmp: Path) -> None:
    report = short_tmp / "bench.json"
    command = [sys.executable, "-m", "bench", *SMOKE_ARGS, "--json", str(report)]
    with subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(short_tmp)},  # its work files go with short_tmp
        start_new_session=True,  # its own process group, killed as a whole on timeout
    ) as bench:
        try:
            stdout, stderr = bench.communicate(timeout=SMOKE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(bench.pid, signal.SIGKILL)
            stdout, stderr = bench.communicate()
            pytest.fail(f"bench did not finish in {SMOKE_TIMEOUT_S} s:\n{stdout[-3000:]}")
        finally:
            if bench.poll() is None:
                os.killpg(bench.pid, signal.SIGKILL)
    assert bench.returncode == 0, stdout[-3000:] + stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["failures"] == {}
    ran = {cell["contender"] for cell in data["cells"]}
    assert ran >= CONTENDERS, f"missing contenders: {CONTENDERS - ran}"
    sessiond_cells = [cell for cell in data["cells"] if cell["contender"] == "sessiond"]
    assert all(cell["ops_per_s"] > 0 for cell in sessiond_cells)
    assert any(load["contender"] == "sessiond" for load in data["loads"])
    assert "ops/s" in stdout  # the table was printed
