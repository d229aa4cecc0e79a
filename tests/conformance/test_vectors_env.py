"""Proves the runners read the vector file named by ``SESSIOND_VECTORS``.

Does I/O: writes a small vector file (records copied from the public file under new ids,
plus one deliberately wrong record) and runs both runners on it in a pytest subprocess.
The subprocess must report exactly those tests, pass the copies, fail the wrong one,
and print the per-function summary, so the variable is honoured end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .vectorfile import DEFAULT_VECTORS_PATH, VECTORS_ENV

ROOT = Path(__file__).resolve().parents[2]
RUNNERS = ("tests/conformance/test_pure_vectors.py", "tests/conformance/test_file_vectors.py")


def _public_records() -> list[dict[str, object]]:
    with DEFAULT_VECTORS_PATH.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _small_vector_file(path: Path) -> None:
    records = _public_records()
    pure = next(r for r in records if r["fn"] == "normalizeAgentId")
    file_based = next(r for r in records if r["fn"] == "updateLastRoute")
    wrong = dict(pure, result="not what the original returned")
    chosen = [
        dict(pure, id="env-pure"),
        dict(file_based, id="env-file"),
        dict(wrong, id="env-wrong"),
    ]
    path.write_text("".join(json.dumps(record) + "\n" for record in chosen), encoding="utf-8")


def test_runners_read_the_file_named_by_sessiond_vectors(tmp_path: Path) -> None:
    vectors = tmp_path / "other.jsonl"
    _small_vector_file(vectors)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *RUNNERS, "-rA"],
        cwd=ROOT,
        env={**os.environ, VECTORS_ENV: str(vectors)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "2 passed" in output and "1 failed" in output, output
    assert f"PASSED {RUNNERS[0]}::test_pure_vector[env-pure-normalizeAgentId]" in output
    assert f"PASSED {RUNNERS[1]}::test_file_vector[env-file-updateLastRoute]" in output
    assert f"FAILED {RUNNERS[0]}::test_pure_vector[env-wrong-normalizeAgentId]" in output
    assert "conformance: updateLastRoute: 1 passed / 1" in output, output
    assert "conformance: all: 2 passed / 3" in output, output
