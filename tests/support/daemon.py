"""Run real ``sessiond serve`` processes for integration tests. Does I/O.

:class:`DaemonProcess` starts the daemon as a subprocess on a short temp directory
(AF_UNIX paths are limited to ~107 bytes), waits until it answers ``hello`` on its
socket, and stops it with SIGTERM (graceful) or SIGKILL (crash). Its stderr goes to a
file that failing tests print.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sessiond_client import Client, RetryPolicy, SessiondError

__all__ = ["DaemonProcess", "short_temp_dir", "toml_of"]

START_TIMEOUT_S = 20.0


def short_temp_dir() -> Path:
    """A fresh directory with a short path, so socket paths stay under the AF_UNIX limit."""
    return Path(tempfile.mkdtemp(prefix="sd", dir="/tmp"))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_of(config: Mapping[str, Any]) -> str:
    """A TOML document for a config dict of scalars and one level of tables."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for table, values in config.items():
        if isinstance(values, dict):
            lines.append(f"[{table}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
    return "\n".join(lines) + "\n"


class DaemonProcess:
    """One sessiond instance on ``root`` (state in ``root/state``, socket ``root/s.sock``).

    ``wrapper``: a command prefix the daemon is started under (it must ``exec`` it).
    """

    def __init__(
        self,
        root: Path,
        config: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.socket_path = str(root / "s.sock")
        self.config_path = root / "sessiond.toml"
        self.config_path.write_text(toml_of(config or {}))
        self.log_path = root / "daemon.log"
        self.env = {**os.environ, **(env or {})}
        self.wrapper = list(wrapper)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def store_path(self) -> Path:
        return self.state_dir / "agents" / "main" / "sessions" / "sessions.json"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "sessiond",
            "serve",
            "--state-dir",
            str(self.state_dir),
            "--socket",
            self.socket_path,
            "--config",
            str(self.config_path),
        ]

    def start(self, *, wait: bool = True) -> DaemonProcess:
        log = self.log_path.open("ab")
        # The wrapper (``prlimit ...``, ``sh -c 'umask 000; exec "$@"' sh``) must exec the
        # daemon, so that ``pid`` is the daemon's own.
        self.process = subprocess.Popen(
            [*self.wrapper, *self.command()], stdout=log, stderr=log, env=self.env
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"sessiond exited with {self.process.returncode}:\n{self.log()}")
            try:
                with self.client(timeout_s=1.0, retry=RetryPolicy(reconnect_timeout_s=0)) as client:
                    client.hello()
                return
            except SessiondError:
                time.sleep(0.02)
        raise TimeoutError(f"sessiond did not become ready:\n{self.log()}")

    def client(self, **kwargs: Any) -> Client:
        return Client(self.socket_path, **kwargs)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL: a crash, no final flush."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def restart(self) -> DaemonProcess:
        self.stop()
        return self.start()

    def ensure_stopped(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def wait_for_log(self, text: str, timeout_s: float = 10.0) -> None:
        """Until ``text`` appears in the daemon's log (its whole file, not only the tail)."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except FileNotFoundError:
            return ""
