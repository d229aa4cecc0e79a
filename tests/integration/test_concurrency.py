"""Pipelining and concurrency: many callers on one connection, many processes on one key.

The original lost updates because each process read the file outside its lock; these
tests prove that every reply reaches the request that asked for it and that
compare-and-set increments from separate processes are never lost.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

from sessiond_client import AsyncClient
from tests.support.daemon import DaemonProcess

ROOT = Path(__file__).resolve().parents[2]


async def test_a_thousand_coroutines_share_one_async_connection(daemon: DaemonProcess) -> None:
    async with AsyncClient(daemon.socket_path) as client:

        async def write_then_read(index: int) -> tuple[int, int, int]:
            written = await client.patch(f"k{index}", {"inputTokens": index})
            read = await client.get(f"k{index}")
            assert read is not None
            return index, written.data["inputTokens"], read.data["inputTokens"]

        results = await asyncio.gather(*(write_then_read(i) for i in range(1000)))
        assert all(index == written == read for index, written, read in results)
        stats = await client.stats()
        assert stats["connections"] == 1
        assert stats["stores"]["main"]["entries"] == 1000


def test_eight_threads_share_one_sync_client(daemon: DaemonProcess) -> None:
    errors: list[BaseException] = []
    with daemon.client() as client:

        def worker(thread_index: int) -> None:
            try:
                for step in range(200):
                    key = f"t{thread_index}-{step % 10}"
                    written = client.patch(key, {"label": f"{thread_index}:{step}"})
                    assert written.key == key
                    assert written.data["label"] == f"{thread_index}:{step}"
                    read = client.get(key)
                    assert read is not None
                    assert read.data["label"] == f"{thread_index}:{step}"
            except BaseException as error:  # reported to the main thread below
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert client.stats()["connections"] == 1


INCREMENTER = """
import sys
from sessiond_client import Client
socket_path, count = sys.argv[1], int(sys.argv[2])
with Client(socket_path) as client:
    for _ in range(count):
        client.update_with("counter", lambda s: {"inputTokens": s.data["inputTokens"] + 1})
"""


def test_eight_processes_incrementing_one_counter_lose_nothing(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        client.patch("counter", {"inputTokens": 0})
    workers = [
        subprocess.Popen([sys.executable, "-c", INCREMENTER, daemon.socket_path, "500"], cwd=ROOT)
        for _ in range(8)
    ]
    assert [worker.wait(120) for worker in workers] == [0] * 8
    with daemon.client() as client:
        counter = client.get("counter")
        assert counter is not None
        assert counter.data["inputTokens"] == 4000
