"""A raw-socket client for the protocol conformance tests (``tests/integration/
test_protocol_spec*.py``): frames built by hand with struct + msgpack, replies matched by
id, nothing taken from the daemon or the Python client. Does I/O.

:class:`SpecPeer` extends :class:`~tests.support.rawsocket.RawPeer` with request ids,
a stash of replies read while waiting for another one (pipelining, watch events), and
reading every reply up to the daemon's end of the connection.
"""

from __future__ import annotations

import itertools
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.daemon import DaemonProcess, short_temp_dir
from tests.support.rawsocket import RawPeer

__all__ = [
    "HEX16",
    "UUID4",
    "SpecPeer",
    "fresh_agent",
    "fresh_key",
    "now_ms",
    "running_daemon",
    "seed_store",
    "store_file",
]

HEX16 = re.compile(r"^[0-9a-fA-F]{16}$")
"""A revision (§4): "a 16-character hex string"."""

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def fresh_agent(prefix: str = "t") -> str:
    """A valid agent id (§5) never used before: one store per test on a shared daemon."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def fresh_key(prefix: str = "k") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def store_file(daemon: DaemonProcess, agent: str) -> Path:
    """README "Where things live": ``<state dir>/agents/A/sessions/sessions.json``."""
    return daemon.state_dir / "agents" / agent / "sessions" / "sessions.json"


def seed_store(daemon: DaemonProcess, agent: str, text: str) -> Path:
    """Write an agent's store file before the daemon starts (the gateway's layout)."""
    path = store_file(daemon, agent)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@contextmanager
def running_daemon(
    config: dict[str, Any] | None = None, store_files: dict[str, str] | None = None
) -> Iterator[DaemonProcess]:
    """A daemon for a whole test module (module-scoped fixtures cannot use ``make_daemon``);
    ``store_files``: agent -> the text of its ``sessions.json``, written before the start."""
    root = short_temp_dir()
    daemon = DaemonProcess(root, config)
    try:
        for agent, text in (store_files or {}).items():
            seed_store(daemon, agent, text)
        daemon.start()
        yield daemon
    finally:
        daemon.ensure_stopped()
        shutil.rmtree(root, ignore_errors=True)


class SpecPeer(RawPeer):
    """One raw connection; ``send_op`` numbers requests, ``reply_to`` finds a reply by id."""

    def __init__(self, socket_path: str, timeout_s: float = 5.0) -> None:
        super().__init__(socket_path, timeout_s)
        self._ids = itertools.count(1)
        self.stash: list[dict[str, Any]] = []

    def __enter__(self) -> SpecPeer:
        return self

    def send_op(self, op: str, rid: int | None = None, **fields: Any) -> int:
        """Send ``{"op", "id", **fields}``; the id used (a fresh one unless given)."""
        request_id = next(self._ids) if rid is None else rid
        self.send({"op": op, "id": request_id, **fields})
        return request_id

    def next_reply(self) -> dict[str, Any]:
        if self.stash:
            return self.stash.pop(0)
        return self.read_reply()

    def reply_matching(self, accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first reply (stashed or new) ``accept`` takes; the others stay stashed."""
        for index, reply in enumerate(self.stash):
            if accept(reply):
                return self.stash.pop(index)
        while True:
            reply = self.read_reply()
            if accept(reply):
                return reply
            self.stash.append(reply)

    def reply_to(self, request_id: int | None) -> dict[str, Any]:
        return self.reply_matching(lambda reply: reply.get("id") == request_id)

    def call_op(self, op: str, **fields: Any) -> dict[str, Any]:
        return self.reply_to(self.send_op(op, **fields))

    def result(self, op: str, **fields: Any) -> Any:
        reply = self.call_op(op, **fields)
        assert reply.get("ok") is True, f"{op} {fields!r} -> {reply!r}"
        return reply["result"]

    def error(self, op: str, **fields: Any) -> dict[str, Any]:
        """The ``error`` map of a reply that must be an error."""
        reply = self.call_op(op, **fields)
        assert reply.get("ok") is False, f"{op} {fields!r} -> {reply!r}"
        error: dict[str, Any] = reply["error"]
        return error

    def read_until_eof(self) -> list[dict[str, Any]]:
        """Every reply until the daemon ends the connection (stashed ones first)."""
        replies, self.stash = self.stash, []
        while True:
            try:
                replies.append(self.read_reply())
            except (ConnectionError, OSError):
                return replies

    def quiet_for(self, seconds: float) -> bool:
        """True if no byte arrives (and the connection stays open) for ``seconds``."""
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(5.0)
        self.buffer += chunk
        return False

    def wait_eof(self, timeout_s: float) -> tuple[float, bytes]:
        """Seconds until EOF from the daemon, and every byte received before it."""
        start = time.monotonic()
        received = self.buffer
        self.buffer = b""
        self.sock.settimeout(timeout_s)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return time.monotonic() - start, received
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start, received
        finally:
            self.sock.settimeout(5.0)

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)
