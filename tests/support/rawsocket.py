"""A raw Unix-socket peer that speaks (or breaks) the frame protocol byte by byte. Does I/O."""

from __future__ import annotations

import socket
import struct
from typing import Any

import msgspec

__all__ = ["RawPeer"]


class RawPeer:
    def __init__(self, socket_path: str, timeout_s: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(socket_path)  # blocking: waits while the accept queue is full
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(timeout_s)
        self.buffer = b""

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_payload(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def send(self, message: Any) -> None:
        self.send_payload(msgspec.msgpack.encode(message))

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the daemon")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_payload(self) -> bytes:
        """The payload of the next frame, undecoded (its length is the frame's size)."""
        (length,) = struct.unpack(">I", self._read_exactly(4))
        return self._read_exactly(length)

    def read_reply(self) -> dict[str, Any]:
        reply: dict[str, Any] = msgspec.msgpack.decode(self.read_payload())
        return reply

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send(message)
        return self.read_reply()

    def is_closed_by_peer(self) -> bool:
        """True once the daemon has closed its end (EOF after any pending data)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
