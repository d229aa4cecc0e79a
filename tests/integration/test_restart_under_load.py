"""Restarts under load: 4 client processes keep reading, writing and incrementing a shared
counter while the daemon is stopped with SIGTERM and started again, and once killed with
SIGKILL. Idempotent calls succeed through every restart (reconnect + retry); no write is
applied twice (request tokens); the counter equals the number of increments the clients
were told succeeded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess
from tests.support.load_worker import COUNTER_KEY

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_clients_ride_through_restarts_without_double_writes(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon()
    daemon.start()
    with daemon.client() as client:
        client.patch(COUNTER_KEY, {"inputTokens": 0}, durable=True)
    stop_file = daemon.root / "stop"
    results = [daemon.root / f"worker{index}.json" for index in range(4)]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.load_worker",
                daemon.socket_path,
                str(result),
                str(index),
                str(stop_file),
            ],
            cwd=ROOT,
        )
        for index, result in enumerate(results)
    ]
    try:
        for how in ("term", "kill", "term", "kill", "term"):
            time.sleep(0.8)
            if how == "term":
                assert daemon.stop() == 0
            else:
                daemon.kill()
            daemon.start()
        time.sleep(0.8)
    finally:
        stop_file.touch()
        exit_codes = [worker.wait(120) for worker in workers]
    assert exit_codes == [0, 0, 0, 0]
    summaries = [json.loads(result.read_text()) for result in results]
    assert [summary["errors"] for summary in summaries] == [[], [], [], []]
    reported = sum(summary["done"].get("increment", 0) for summary in summaries)
    assert reported > 50, "too little load to mean anything"
    with daemon.client() as client:
        counter = client.get(COUNTER_KEY)
        assert counter is not None
        assert counter.data["inputTokens"] == reported
        assert client.stats()["ops"].get("update", 0) > 0
