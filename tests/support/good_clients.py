"""Well-behaved clients that keep working while a test attacks the daemon. Does I/O.

Each of the threads owns one key and loops: patch it with a counter, read it back, and
check the reply is the one it asked for (so a reply routed to the wrong request, or a
lost write, is caught). :meth:`GoodClients.check` asserts they all made progress and saw
no error.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from sessiond_client import Client, RetryPolicy

__all__ = ["GoodClients"]


class GoodClients:
    def __init__(self, socket_path: str, count: int = 4) -> None:
        self.socket_path = socket_path
        self.stop_event = threading.Event()
        self.errors: list[str] = []
        self.rounds = [0] * count
        self.clients = [
            Client(socket_path, timeout_s=10.0, retry=RetryPolicy(reconnect_timeout_s=10.0))
            for _ in range(count)
        ]
        for client in self.clients:
            client.hello()  # connect now, before any connection limit is reached
        self.threads = [
            threading.Thread(target=self._run, args=(index,), daemon=True) for index in range(count)
        ]

    def __enter__(self) -> GoodClients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(30)
        for client in self.clients:
            client.close()

    def _run(self, index: int) -> None:
        client, key = self.clients[index], f"agent:main:good{index}"
        while not self.stop_event.is_set():
            value = self.rounds[index]
            try:
                written = client.patch(key, {"inputTokens": value})
                read = client.get(key)
                if written.key != key or written.data.get("inputTokens") != value:
                    self.errors.append(f"{key}: wrong patch reply {written!r}")
                elif read is None or read.data.get("inputTokens") != value:
                    self.errors.append(f"{key}: read back {read!r}, expected {value}")
            except Exception as error:  # collected and asserted by check()
                self.errors.append(f"{key}: {type(error).__name__}: {error}")
                time.sleep(0.05)
            self.rounds[index] += 1

    def check(self, min_rounds: int = 20) -> None:
        assert self.errors == []
        assert min(self.rounds) >= min_rounds, f"good clients starved: {self.rounds}"
