"""Requests on one connection apply in the order they were sent, always — proven in-process
(the daemon's server, registry and persistence in the test's loop, a transport the test
drives), so no subprocess timing luck decides the outcome.

The case that broke: the first request to a store that is still loading waits; meanwhile
the store finishes loading for someone else, and a later request on the same connection
must not overtake the waiting one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.inprocess import InProcessDaemon, frame_of

KEY = "agent:ops:k"


@pytest.fixture
async def daemon(short_tmp: Path) -> AsyncIterator[InProcessDaemon]:
    running = InProcessDaemon(short_tmp / "state")
    yield running
    await running.close()


def gate_first_load(daemon: InProcessDaemon) -> asyncio.Event:
    """Hold the first store load the server asks for until the event is set."""
    gate = asyncio.Event()
    prepare = daemon.registry.prepare
    calls = 0

    async def gated(agents: Any, *, for_write: bool) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await gate.wait()
        await prepare(agents, for_write=for_write)

    daemon.registry.prepare = gated  # type: ignore[method-assign,assignment]
    return gate


def patch(request_id: int, n: int, **extra: Any) -> bytes:
    return frame_of({"op": "patch", "id": request_id, "key": KEY, "patch": {"n": n}, **extra})


async def final_n(daemon: InProcessDaemon) -> Any:
    connection, transport = daemon.connect()
    connection.data_received(frame_of({"op": "get", "id": 99, "key": KEY}))
    await daemon.settle()
    return transport.replies()[-1]["result"]["entry"]["n"]


async def test_a_request_never_overtakes_one_waiting_for_its_store(
    daemon: InProcessDaemon,
) -> None:
    gate = gate_first_load(daemon)
    connection, transport = daemon.connect()
    connection.data_received(patch(1, 1))  # the store of "ops" must load first: it waits
    await asyncio.sleep(0)
    await daemon.registry.load("ops")  # meanwhile the store gets loaded (another client)
    connection.data_received(patch(2, 2))  # a later request: it must wait its turn
    await asyncio.sleep(0)
    assert transport.replies() == []  # nothing answered ahead of request 1
    gate.set()
    await daemon.settle()
    assert [reply["id"] for reply in transport.replies()] == [1, 2]
    assert await final_n(daemon) == 2


async def test_requests_behind_a_load_of_any_kind_wait_in_order(daemon: InProcessDaemon) -> None:
    gate = gate_first_load(daemon)
    connection, transport = daemon.connect()
    connection.data_received(
        patch(1, 1)
        + frame_of({"op": "get", "id": 2, "key": KEY})
        + patch(3, 3, durable=True)
        + frame_of({"op": "hello", "id": 4})
        + patch(5, 5)
    )
    await asyncio.sleep(0)
    assert transport.replies() == []
    gate.set()
    await daemon.settle()
    replies = {reply["id"]: reply for reply in transport.replies()}
    assert replies[2]["result"]["entry"]["n"] == 1  # the get saw request 1, not later ones
    assert replies[3]["result"]["entry"]["n"] == 3
    assert await final_n(daemon) == 5


@pytest.mark.parametrize("first_use", ["write", "read"])
async def test_many_pipelined_writes_to_a_new_store_apply_in_order(
    daemon: InProcessDaemon, first_use: str
) -> None:
    connection, transport = daemon.connect()
    head = frame_of({"op": "get", "id": 0, "key": KEY}) if first_use == "read" else b""
    connection.data_received(head + b"".join(patch(n, n) for n in range(1, 201)))
    await daemon.settle()
    assert len(transport.replies()) == 200 + (first_use == "read")
    assert await final_n(daemon) == 200


async def test_an_unencodable_result_is_an_error_reply_and_the_connection_lives(
    daemon: InProcessDaemon,
) -> None:
    connection, transport = daemon.connect()
    connection._send_result(7, object(), None)  # what no reply encoder can carry
    connection.data_received(frame_of({"op": "hello", "id": 8}))
    await daemon.settle()
    first, second = transport.replies()
    assert (first["id"], first["ok"], first["error"]["code"]) == (7, False, "internal")
    assert (second["id"], second["ok"]) == (8, True)
    assert not transport.closed


async def test_a_reply_over_max_reply_bytes_is_replaced_by_an_error(short_tmp: Path) -> None:
    daemon = InProcessDaemon(
        short_tmp / "state",
        {"limits": {"max_reply_bytes": 4_000_000, "max_entry_bytes": 1_000_000}},
    )
    try:
        connection, transport = daemon.connect()
        connection._send_result(1, {"blob": "x" * 5_000_000}, None)
        connection.data_received(frame_of({"op": "hello", "id": 2}))
        await daemon.settle()
        first, second = transport.replies()
        assert first["error"]["code"] == "invalid_request"
        assert "max_reply_bytes" in first["error"]["message"]
        assert second["ok"]
    finally:
        await daemon.close()


async def test_requests_before_an_oversized_frame_are_answered_then_it_closes(
    daemon: InProcessDaemon,
) -> None:
    connection, transport = daemon.connect()
    huge_header = (daemon.config.limits.max_frame_bytes + 1).to_bytes(4, "big")
    connection.data_received(patch(1, 1) + patch(2, 2) + huge_header + b"ignored")
    await daemon.settle()
    replies = transport.replies()
    assert [reply["id"] for reply in replies] == [1, 2, None]
    assert replies[2]["error"]["code"] == "frame_too_large"
    assert transport.eof
