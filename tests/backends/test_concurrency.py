"""Many callers at once, on every backend: threads and coroutines sharing one client,
``update_with`` counters from 8 processes (no update lost), and 16 resolves of one new
chat from 4 processes (one session id: ``resolve`` is atomic across processes).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.backends.conftest import Backend

ROOT = Path(__file__).resolve().parents[2]


async def test_two_hundred_coroutines_share_one_async_client(backend: Backend) -> None:
    async with backend.async_client() as client:

        async def write_then_read(index: int) -> tuple[int, int, int]:
            written = await client.patch(f"k{index}", {"inputTokens": index})
            read = await client.get(f"k{index}")
            assert read is not None
            return index, written.data["inputTokens"], read.data["inputTokens"]

        results = await asyncio.gather(*(write_then_read(i) for i in range(200)))
        assert all(index == written == read for index, written, read in results)
        assert (await client.stats())["stores"]["main"]["entries"] == 200


def test_eight_threads_share_one_sync_client(backend: Backend) -> None:
    errors: list[BaseException] = []
    with backend.client() as client:

        def worker(thread_index: int) -> None:
            try:
                for step in range(50):
                    key = f"t{thread_index}-{step % 5}"
                    written = client.patch(key, {"label": f"{thread_index}:{step}"})
                    assert written.data["label"] == f"{thread_index}:{step}"
                    read = client.get(key)
                    assert read is not None and read.data["label"] == f"{thread_index}:{step}"
            except BaseException as error:  # reported to the main thread below
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert client.stats()["stores"]["main"]["seq"] == 400


INCREMENTER = """
import sys
from sessiond_client import Client
target, count = sys.argv[1], int(sys.argv[2])
with Client(target) as client:
    for _ in range(count):
        client.update_with("counter", lambda s: {"inputTokens": s.data["inputTokens"] + 1})
"""


@pytest.mark.timeout(180)
def test_eight_processes_incrementing_one_counter_lose_nothing(backend: Backend) -> None:
    with backend.client() as client:
        client.patch("counter", {"inputTokens": 0})
    workers = [
        subprocess.Popen([sys.executable, "-c", INCREMENTER, backend.target, "150"], cwd=ROOT)
        for _ in range(8)
    ]
    try:
        assert [worker.wait(150) for worker in workers] == [0] * 8
    finally:
        for worker in workers:
            worker.kill()
    with backend.client() as client:
        counter = client.get("counter")
        assert counter is not None
        assert counter.data["inputTokens"] == 1200


RESOLVER = """
import json, os, sys, threading, time
from sessiond_client import Client
target, go_file = sys.argv[1], sys.argv[2]
ctx = {"From": "discord:channel:race", "GroupSubject": "#race", "Body": "hello"}
results = []
with Client(target) as client:
    client.hello()
    print("ready", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.001)
    barrier = threading.Barrier(4)
    def worker():
        barrier.wait()
        resolution = client.resolve(ctx)
        results.append([resolution.session_id, resolution.is_new])
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
print(json.dumps(results), flush=True)
"""


@pytest.mark.timeout(120)
def test_sixteen_resolves_of_one_new_chat_from_four_processes_agree(
    backend: Backend, tmp_path: Path
) -> None:
    go_file = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", RESOLVER, backend.target, str(go_file)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results: list[list[Any]] = []
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        go_file.touch()
        for worker in workers:
            output, _ = worker.communicate(timeout=60)
            assert worker.returncode == 0
            results.extend(json.loads(output.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            worker.kill()
    assert len(results) == 16
    assert len({session_id for session_id, _ in results}) == 1
    assert sum(1 for _, is_new in results if is_new) == 1
    with backend.client() as client:
        stored = client.get("agent:main:discord:channel:race")
        assert stored is not None and stored.data["sessionId"] == results[0][0]
