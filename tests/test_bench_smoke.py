"""``python -m bench --quick`` end to end, as a smoke test: every contender (sessiond, the
original file store, Redis, the floor) runs every workload it supports and the JSON report
is complete. Nothing here asserts on speed — the machines are shared and noisy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTENDERS = {"sessiond", "sessiond-durable", "original", "redis-everysec", "redis-always", "floor"}


@pytest.mark.slow
def test_bench_quick_runs_every_contender(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["failures"] == {}
    ran = {cell["contender"] for cell in data["cells"]}
    assert ran >= CONTENDERS, f"missing contenders: {CONTENDERS - ran}"
    sessiond_cells = [cell for cell in data["cells"] if cell["contender"] == "sessiond"]
    assert all(cell["ops_per_s"] > 0 for cell in sessiond_cells)
    assert any(load["contender"] == "sessiond" for load in data["loads"])
    assert "ops/s" in result.stdout  # the table was printed
