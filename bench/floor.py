"""The floor: the fastest a Python server can answer sessiond's wire protocol. Does I/O.

``python -m bench.floor serve --socket PATH`` runs a bare uvloop server (an
``asyncio.Protocol``, no streams) that answers every length-prefixed request frame (4-byte
big-endian length + msgpack payload) with a fixed reply ``{"id": <request id>, "ok": true,
"result": {key, entry, revision}}`` of about 1 KB. It decodes each request only far enough
to read its ``id``, keeps no state and pre-encodes the result, so its numbers bound from
above what any Python server speaking this protocol can do on this machine.

The clients are just as bare: :class:`FloorClient` (blocking: one ``sendall`` and a
``recv_into`` loop per call, reply decoded fully to Python objects as a real client must) and
:class:`AsyncFloorClient` (asyncio protocol, requests matched by id, frames written once per
event-loop turn).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import msgspec

from bench.contender import Contender, PatchFn, Unsupported
from bench.entries import make_entry, session_key
from bench.procs import REPO_ROOT, ServerProcess

__all__ = ["AsyncFloorClient", "FloorClient", "FloorContender", "FloorFactory", "serve"]

HEADER: Final = struct.Struct(">I")
RECV_BUFFER_BYTES: Final = 1 << 20


class _RequestId(msgspec.Struct):
    id: int


class _Reply(msgspec.Struct):
    id: int
    ok: bool
    result: msgspec.Raw


def fixed_result() -> bytes:
    """The msgpack ``result`` every reply carries: one ~1 KB benchmark entry."""
    entry = make_entry(0, random.Random(1))
    return msgspec.msgpack.encode({"key": session_key(0), "entry": entry, "revision": "r" * 16})


class FloorServerProtocol(asyncio.Protocol):
    """Answer every complete frame in a chunk; all replies of a chunk in one write."""

    _decoder = msgspec.msgpack.Decoder(_RequestId)
    _encoder = msgspec.msgpack.Encoder()
    _result = msgspec.Raw(fixed_result())

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        frames, consumed = self._answer_frames()
        if consumed:
            del self._buffer[:consumed]
        if frames and self._transport is not None:
            self._transport.write(b"".join(frames))

    def _answer_frames(self) -> tuple[list[bytes], int]:
        frames: list[bytes] = []
        offset = 0
        with memoryview(self._buffer) as view:
            while len(view) - offset >= HEADER.size:
                (length,) = HEADER.unpack_from(view, offset)
                end = offset + HEADER.size + length
                if len(view) < end:
                    break
                request = self._decoder.decode(view[offset + HEADER.size : end])
                body = self._encoder.encode(_Reply(request.id, True, self._result))
                frames.append(HEADER.pack(len(body)) + body)
                offset = end
        return frames, offset


async def serve(socket_path: Path) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_unix_server(FloorServerProtocol, os.fspath(socket_path))
    async with server:
        await stop.wait()


class FloorClient:
    """Blocking client: sendall, then recv_into until the one reply is complete (SyncOps)."""

    def __init__(self, socket_path: Path) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(os.fspath(socket_path))
        self._buffer = bytearray(RECV_BUFFER_BYTES)
        self._view = memoryview(self._buffer)
        self._encoder = msgspec.msgpack.Encoder()
        self._next_id = 0

    def _call(self, request: dict[str, Any]) -> Any:
        self._next_id += 1
        request["id"] = self._next_id
        payload = self._encoder.encode(request)
        self._socket.sendall(HEADER.pack(len(payload)) + payload)
        received = 0
        needed = HEADER.size
        while received < needed:
            count = self._socket.recv_into(self._view[received:])
            if count == 0:
                raise ConnectionResetError("floor server closed the connection")
            received += count
            if received >= HEADER.size:
                needed = HEADER.size + HEADER.unpack_from(self._buffer)[0]
        reply = msgspec.msgpack.decode(self._view[HEADER.size : needed])
        if reply["id"] != self._next_id:
            raise RuntimeError("reply id mismatch")
        return reply["result"]

    def get(self, key: str) -> Any:
        return self._call({"op": "get", "key": key})

    def patch(self, key: str, patch: dict[str, Any]) -> Any:
        return self._call({"op": "patch", "key": key, "patch": patch})

    def update_with(self, key: str, fn: PatchFn) -> Any:
        raise Unsupported("the floor keeps no state")

    def read_entry(self, key: str) -> dict[str, Any] | None:
        return None

    def counters(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self._view.release()
        self._socket.close()


class _FloorClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        offset = 0
        while len(self._buffer) - offset >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer, offset)
            end = offset + HEADER.size + length
            if len(self._buffer) < end:
                break
            reply = msgspec.msgpack.decode(self._buffer[offset + HEADER.size : end])
            future = self.pending.pop(reply["id"], None)
            if future is not None and not future.done():
                future.set_result(reply["result"])
            offset = end
        del self._buffer[:offset]

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionResetError("floor connection lost"))
        self.pending.clear()


class AsyncFloorClient:
    """Pipelined asyncio client on one connection (AsyncOps)."""

    def __init__(self, transport: asyncio.Transport, protocol: _FloorClientProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._encoder = msgspec.msgpack.Encoder()
        self._outgoing: list[bytes] = []
        self._next_id = 0

    @classmethod
    async def connect(cls, socket_path: Path) -> AsyncFloorClient:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_unix_connection(
            _FloorClientProtocol, os.fspath(socket_path)
        )
        return cls(transport, protocol)

    def _call(self, request: dict[str, Any]) -> asyncio.Future[Any]:
        self._next_id += 1
        request["id"] = self._next_id
        payload = self._encoder.encode(request)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._protocol.pending[self._next_id] = future
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(HEADER.pack(len(payload)) + payload)
        return future

    def _flush(self) -> None:
        self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    async def get(self, key: str) -> Any:
        return await self._call({"op": "get", "key": key})

    async def patch(self, key: str, patch: dict[str, Any]) -> Any:
        return await self._call({"op": "patch", "key": key, "patch": patch})

    async def aclose(self) -> None:
        self._transport.close()


@dataclass(frozen=True)
class FloorFactory:
    socket_path: Path

    def open_sync(self) -> FloorClient:
        return FloorClient(self.socket_path)

    async def open_async(self) -> AsyncFloorClient:
        return await AsyncFloorClient.connect(self.socket_path)


class FloorContender(Contender):
    """The floor server as a separate process; its numbers do not depend on the store size."""

    name = "floor"
    family = "floor"
    description = "bare uvloop length-prefixed msgpack server answering a fixed ~1 KB reply"
    workloads = frozenset({"get_seq", "patch_seq", "get_async64", "patch_async64", "patch_8proc"})
    size_independent = True

    def __init__(self) -> None:
        self._server: ServerProcess | None = None

    def setup(self, store_size: int, work_dir: Path) -> FloorFactory:
        socket_path = work_dir / "floor.sock"
        argv = [sys.executable, "-m", "bench.floor", "serve", "--socket", str(socket_path)]
        self._server = ServerProcess(argv, work_dir / "floor.log", cwd=REPO_ROOT)
        self._server.wait_for_socket(socket_path, timeout_s=30.0)
        return FloorFactory(socket_path)

    def teardown(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def server_pids(self) -> list[int]:
        return [] if self._server is None else [self._server.pid]

    def info(self) -> dict[str, Any]:
        return {"description": self.description, "reply_result_bytes": len(fixed_result())}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--socket", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.socket))
    else:
        uvloop.run(serve(args.socket))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
