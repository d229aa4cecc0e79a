"""The benchmark's server processes die with the bench: a bench killed by a timeout (or
by hand) must not leave redis-server or sessiond daemons running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STARTER = """
import sys, time
from pathlib import Path
from bench.procs import ServerProcess
server = ServerProcess(["sleep", "600"], Path(sys.argv[1]))
print(server.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_killed_bench_leaves_no_server_behind(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    with subprocess.Popen(
        [sys.executable, "-c", STARTER, str(tmp_path / "server.log")],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
    ) as bench:
        assert bench.stdout is not None
        server_pid = int(bench.stdout.readline())
        assert alive(server_pid)
        os.kill(bench.pid, signal.SIGKILL)
        bench.wait(10)
    deadline = time.monotonic() + 10
    while alive(server_pid):
        if time.monotonic() > deadline:
            os.kill(server_pid, signal.SIGKILL)
            raise AssertionError("the server outlived the bench that started it")
        time.sleep(0.05)
