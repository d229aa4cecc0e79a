"""A client keeps its writes in order across daemon restarts: the calls in flight when the
connection ends are resent in their original order, before newer ones, so a later write
to a key is never applied before an earlier one from the same client — and every call is
answered (each write applied once, thanks to its request token).

The daemon is stopped (SIGSTOP) while the client pipelines its writes, so they are
certainly in flight when the daemon dies or shuts down, then let run for a moment so that
some of them were applied and some not.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from sessiond_client import AsyncClient, Client
from tests.support.daemon import DaemonProcess

KEY = "agent:main:counter"
WRITES = 500


def interrupt(daemon: DaemonProcess, how: str, run_s: float) -> None:
    """Let a stopped daemon run ``run_s``, then kill it or stop it, and start a new one."""
    os.kill(daemon.pid, signal.SIGCONT)
    time.sleep(run_s)
    if how == "kill":
        daemon.kill()
    else:
        daemon.stop()
    daemon.start()


@pytest.mark.parametrize("how", ["kill", "term"])
@pytest.mark.parametrize("run_s", [0.0, 0.02])
async def test_async_writes_in_flight_across_a_restart_end_at_the_last_value(
    make_daemon: Callable[..., DaemonProcess], how: str, run_s: float
) -> None:
    daemon = make_daemon().start()
    async with AsyncClient(daemon.socket_path, timeout_s=30.0) as client:
        await client.patch(KEY, {"n": -1})
        os.kill(daemon.pid, signal.SIGSTOP)
        calls = [asyncio.ensure_future(client.patch(KEY, {"n": n})) for n in range(WRITES)]
        await asyncio.sleep(0.05)  # every request is written to the socket
        await asyncio.to_thread(interrupt, daemon, how, run_s)
        results = await asyncio.gather(*calls)
        assert [r.data["n"] for r in results] == list(range(WRITES))
        final = await client.get(KEY)
    assert final is not None and final.data["n"] == WRITES - 1
    seqs = [r.seq or 0 for r in results]
    assert all(seqs) and seqs == sorted(seqs)  # applied in the order sent


@pytest.mark.parametrize("how", ["kill", "term"])
def test_sync_writes_from_threads_in_flight_across_a_restart_keep_each_threads_order(
    make_daemon: Callable[..., DaemonProcess], how: str
) -> None:
    daemon = make_daemon().start()
    with Client(daemon.socket_path, timeout_s=30.0) as client:
        client.hello()
        os.kill(daemon.pid, signal.SIGSTOP)
        seqs: dict[int, list[int]] = {}

        def writer(thread: int) -> None:
            seqs[thread] = []
            for n in range(50):
                written = client.patch(f"agent:main:t{thread}", {"n": n})
                assert written.seq is not None
                seqs[thread].append(written.seq)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        interrupt(daemon, how, 0.01)
        for thread in threads:
            thread.join(60)
        for t in range(4):
            session = client.get(f"agent:main:t{t}")
            assert session is not None and session.data["n"] == 49
            assert seqs[t] == sorted(seqs[t])
