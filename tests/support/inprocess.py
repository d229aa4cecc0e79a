"""The daemon's server, registry and persistence in the test's own event loop, with a
transport the test drives. Does I/O (real store files under a temp directory).

:class:`FakeTransport` stands in for the socket only: it records what the server writes
and lets the test feed bytes with ``connection.data_received``. Everything behind it is
the daemon's own code (dispatch, registry, persistence on real files), so ordering and
encoding are tested without subprocess timing luck.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import msgspec

from sessiond.config import Config, build_config
from sessiond.dispatch import Dispatcher
from sessiond.registry import StoreRegistry
from sessiond.server import Connection, Server
from sessiond_client.protocol import FRAME_HEADER, FrameDecoder, encode_frame

__all__ = ["FakeTransport", "InProcessDaemon", "frame_of"]


def frame_of(request: dict[str, Any]) -> bytes:
    return encode_frame(msgspec.msgpack.encode(request))


class FakeTransport(asyncio.Transport):
    """Records writes; reading can be paused; closing is remembered."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.eof = False
        self.reading = True
        self.protocol: Connection | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.eof, "write after write_eof"
        self.written += data

    def replies(self) -> list[dict[str, Any]]:
        """Every reply written so far, decoded, in the order written."""
        decoder = FrameDecoder(1 << 30)
        return [msgspec.msgpack.decode(p) for p in decoder.feed(bytes(self.written))]

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:
                asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class InProcessDaemon:
    """A server over a real registry on ``state_dir``; connections on fake transports."""

    def __init__(self, state_dir: Path, config: dict[str, Any] | None = None) -> None:
        data = {"persistence": {"durability": "journal"}, **(config or {})}
        self.config: Config = build_config(
            data, environ={}, home=str(state_dir), state_dir_flag=str(state_dir)
        )
        clock = itertools.count(1_700_000_000_000)
        ids = itertools.count(1)
        self.registry = StoreRegistry(
            self.config, clock_ms=lambda: next(clock), new_session_id=lambda: f"s-{next(ids)}"
        )
        self.dispatcher = Dispatcher(
            self.config, self.registry, stats=self.registry.stats, clock_ms=lambda: next(clock)
        )
        self.server = Server(self.dispatcher, self.registry, self.config.limits, access=None)

    def connect(self) -> tuple[Connection, FakeTransport]:
        connection = self.server.protocol_factory()
        transport = FakeTransport()
        transport.protocol = connection
        connection.connection_made(transport)
        return connection, transport

    async def settle(self) -> None:
        """Let every task the server spawned run to completion."""
        for _ in range(100):
            await asyncio.sleep(0)
            pending = [task for task in self.server.tasks if not task.done()]
            if not pending:
                await asyncio.sleep(0)
                return
            await asyncio.wait(pending, timeout=5.0)

    async def close(self) -> None:
        await self.settle()
        await self.registry.close()


def header_length(frame: bytes) -> int:
    (length,) = FRAME_HEADER.unpack_from(frame, 0)
    return int(length)
