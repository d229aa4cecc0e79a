"""Server processes for the benchmarks: start, wait for the socket, measure, stop. Does I/O.

Servers (redis-server, the floor, sessiond) always run as their own processes, as in a real
deployment; their output goes to a log file in the contender's work directory, whose tail is
shown when a server fails to come up. They get SIGKILL when the bench process dies (Linux
``PR_SET_PDEATHSIG``): a bench killed by a timeout leaves no servers behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

__all__ = [
    "REPO_ROOT",
    "ServerProcess",
    "rss_bytes",
    "unix_socket_accepts",
]

POLL_S: Final = 0.01
PR_SET_PDEATHSIG: Final = 1
REPO_ROOT: Final = Path(__file__).resolve().parents[1]
"""The checkout: working directory of ``python -m bench.*`` helper processes."""


def unix_socket_accepts(socket_path: Path) -> bool:
    """True when a server accepts connections on ``socket_path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(os.fspath(socket_path))
        except OSError:
            return False
    return True


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def die_with_parent() -> None:
    """In the child, before exec: be killed when the process that started it exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


class ServerProcess:
    """A child server process with its log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 -- the bench starts servers from one thread
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for_socket(self, socket_path: Path, timeout_s: float) -> float:
        """Block until the socket accepts; returns the seconds waited."""
        started = time.perf_counter()
        while not unix_socket_accepts(socket_path):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.argv[0]} exited early:\n{self.log_tail()}")
            if time.perf_counter() - started > timeout_s:
                raise TimeoutError(f"{self.argv[0]} not ready in {timeout_s} s:\n{self.log_tail()}")
            time.sleep(POLL_S)
        return time.perf_counter() - started

    def log_tail(self, max_bytes: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[-max_bytes:].decode(errors="replace")
        return ""

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed. Idempotent; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
