"""PROTOCOL.md §7 (durable replies) and §8 (retries and request tokens), statement by
statement, against real daemons over a raw Unix socket, with kill -9 where the document
speaks of crashes. Expectations come from PROTOCOL.md and README.md only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess
from tests.support.spec_peer import SpecPeer, fresh_agent, fresh_key, running_daemon, store_file


@pytest.fixture(scope="module")
def tokens() -> Iterator[DaemonProcess]:
    with running_daemon() as daemon:
        yield daemon


@pytest.fixture
def peer(tokens: DaemonProcess) -> Iterator[SpecPeer]:
    with SpecPeer(tokens.socket_path) as connection:
        yield connection


# -- §7 Durability ----------------------------------------------------------------------


def test_writes_survive_a_kill_in_journal_mode(make_daemon: Callable[..., DaemonProcess]) -> None:
    # §7: "A plain (non-durable) write is answered once its journal record reached the
    # kernel: a killed daemon loses nothing"; a durable one "once the change is durable"
    daemon = make_daemon().start()
    with SpecPeer(daemon.socket_path) as peer:
        plain = peer.result("patch", key="agent:main:plain", patch={"n": 1})
        durable = peer.result("patch", key="agent:main:durable", patch={"n": 2}, durable=True)
        assert peer.result("stats", agent="main")["stores"]["main"]["journal_fsyncs"] >= 1
    daemon.kill()
    daemon.start()
    with SpecPeer(daemon.socket_path) as peer:
        assert peer.result("get", key="agent:main:plain") == plain
        assert peer.result("get", key="agent:main:durable") == durable


def test_a_durable_reply_in_debounced_mode_means_a_snapshot_holds_every_earlier_change(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # §7: "in debounced mode a snapshot holding it is written. Durability is a prefix: a
    # durable reply means every earlier change of that store is durable too"
    persistence = {"durability": "debounced", "flush_delay_s": 30.0, "flush_max_delay_s": 60.0}
    daemon = make_daemon({"persistence": persistence}).start()
    with SpecPeer(daemon.socket_path) as peer:
        earlier = peer.result("patch", key="agent:main:earlier", patch={"n": 1})
        durable = peer.result("patch", key="agent:main:durable", patch={"n": 2}, durable=True)
        on_disk = json.loads(store_file(daemon, "main").read_text())
        assert on_disk == {
            "agent:main:earlier": earlier["entry"],
            "agent:main:durable": durable["entry"],
        }
        assert peer.result("stats", agent="main")["stores"]["main"]["mode"] == "debounced"
    daemon.kill()
    daemon.start()
    with SpecPeer(daemon.socket_path) as peer:
        assert peer.result("get", key="agent:main:earlier") == earlier
        assert peer.result("get", key="agent:main:durable") == durable


def test_durable_is_accepted_and_means_nothing_in_memory_mode(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # §7: "In memory mode durable is accepted and means nothing" (README: memory keeps
    # nothing on disk)
    daemon = make_daemon({"persistence": {"durability": "memory"}}).start()
    with SpecPeer(daemon.socket_path) as peer:
        reply = peer.call_op("patch", key="agent:main:k", patch={"n": 1}, durable=True)
        assert reply["ok"] is True and reply["seq"] == 1
        assert peer.result("flush") is True
    assert not store_file(daemon, "main").exists()


@pytest.mark.parametrize("durable", ["yes", 1, None])
def test_durable_must_be_a_boolean(peer: SpecPeer, durable: Any) -> None:
    # §6: durable "boolean (false)"
    assert (
        peer.error("patch", key=fresh_key(), patch={}, durable=durable)["code"] == "invalid_request"
    )


# -- §8 Request tokens ------------------------------------------------------------------


def test_a_remembered_token_is_answered_with_the_first_result_and_seq(peer: SpecPeer) -> None:
    # §8: "A write whose token it remembers is not applied again: it is answered with the
    # first result (and its seq)"
    agent = fresh_agent()
    replayed_before = peer.result("stats")["replayed_writes"]
    first = peer.call_op("patch", agent=agent, key="k", patch={"n": 1}, request_token="tok-1")
    peer.call_op("patch", agent=agent, key="k", patch={"n": 2})
    again = peer.call_op("patch", agent=agent, key="k", patch={"n": 1}, request_token="tok-1")
    assert again["id"] != first["id"]
    assert again["result"] == first["result"] and again["seq"] == first["seq"] == 1
    different = peer.call_op("patch", agent=agent, key="k", patch={"n": 9}, request_token="tok-1")
    assert different["result"] == first["result"] and different["seq"] == 1
    assert peer.result("get", agent=agent, key="k")["entry"]["n"] == 2
    assert peer.result("list", agent=agent)["seq"] == 2
    assert peer.result("stats")["replayed_writes"] >= replayed_before + 2


@pytest.mark.parametrize(
    ("op", "fields"),
    [
        ("delete", {"key": "k"}),
        ("replace", {"key": "k", "entry": {"sessionId": "s"}}),
        ("update_last_route", {"key": "k", "to": "x"}),
        ("update", {"key": "k", "patch": {"m": 1}}),
        ("resolve", {"ctx": {"From": "+1555", "Body": "/new"}}),
    ],
)
def test_every_write_op_replays_its_first_result(
    peer: SpecPeer, op: str, fields: dict[str, Any]
) -> None:
    # §8: tokens for every write (§6: all write ops take request_token)
    agent = fresh_agent()
    peer.result("patch", agent=agent, key="k", patch={})
    first = peer.call_op(op, agent=agent, request_token="tok", **fields)
    assert first["ok"] is True and first["seq"] == 2
    again = peer.call_op(op, agent=agent, request_token="tok", **fields)
    assert again["result"] == first["result"] and again["seq"] == first["seq"]
    assert peer.result("list", agent=agent)["seq"] == 2


@pytest.mark.parametrize(
    ("op", "fields"),
    [
        ("patch", {"key": "other", "patch": {"n": 1}}),
        ("update", {"key": "k", "patch": {"n": 1}}),
        ("delete", {"key": "k"}),
        ("replace", {"key": "k", "entry": {"sessionId": "s"}}),
    ],
    ids=["other-key", "other-op-update", "other-op-delete", "other-op-replace"],
)
def test_a_token_reused_for_another_op_or_key_is_invalid_request(
    peer: SpecPeer, op: str, fields: dict[str, Any]
) -> None:
    # §8: "A token reused for a different op or key is invalid_request"
    agent = fresh_agent()
    peer.result("patch", agent=agent, key="k", patch={"n": 0}, request_token="shared")
    reply = peer.call_op(op, agent=agent, request_token="shared", **fields)
    assert reply["ok"] is False and reply["error"]["code"] == "invalid_request", reply
    assert peer.result("list", agent=agent)["seq"] == 1


def test_tokens_are_remembered_per_store(peer: SpecPeer) -> None:
    # §8: "The daemon remembers the tokens of applied writes per store"
    one, two = fresh_agent(), fresh_agent()
    peer.result("patch", agent=one, key="k", patch={"n": 1}, request_token="same")
    applied = peer.call_op("patch", agent=two, key="k", patch={"n": 2}, request_token="same")
    assert applied["ok"] is True and applied["result"]["entry"]["n"] == 2 and applied["seq"] == 1


def test_a_failed_write_is_not_remembered(peer: SpecPeer) -> None:
    # §8: "A write that failed (an error reply) is not remembered: resending it runs it
    # again"
    agent = fresh_agent()
    peer.result("patch", agent=agent, key="k", patch={})
    call = {"agent": agent, "key": "k", "patch": {"n": 1}, "if_absent": True, "request_token": "t"}
    assert peer.error("patch", **call)["code"] == "conflict"
    peer.result("delete", agent=agent, key="k")
    created = peer.call_op("patch", **call)
    assert created["ok"] is True and created["result"]["entry"]["n"] == 1 and created["seq"] == 3


def test_tokens_are_forgotten_after_remember_requests_s(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # §8: remembered "for remember_requests_s"
    daemon = make_daemon({"limits": {"remember_requests_s": 0.5}}).start()
    with SpecPeer(daemon.socket_path) as peer:
        first = peer.call_op("patch", key="k", patch={"n": 1}, request_token="t")
        time.sleep(1.2)
        again = peer.call_op("patch", key="k", patch={"n": 1}, request_token="t")
    assert again["seq"] == first["seq"] + 1


def test_a_token_is_remembered_across_a_kill_in_journal_mode(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    # §8: "in journal mode across restarts and crashes"
    daemon = make_daemon().start()
    with SpecPeer(daemon.socket_path) as peer:
        first = peer.call_op("patch", key="agent:main:k", patch={"n": 1}, request_token="crash")
        peer.result("patch", key="agent:main:d", patch={})
        gone = peer.call_op("delete", key="agent:main:d", request_token="del")
        assert gone["result"] is True and gone["seq"] == 3
        peer.result("patch", key="agent:main:k", patch={"n": 2})
    daemon.kill()
    daemon.start()
    with SpecPeer(daemon.socket_path) as peer:
        again = peer.call_op("patch", key="agent:main:k", patch={"n": 1}, request_token="crash")
        assert again["result"] == first["result"] and again["seq"] == first["seq"] == 1
        deleted = peer.call_op("delete", key="agent:main:d", request_token="del")
        assert deleted["result"] is True and deleted["seq"] == 3
        assert peer.result("get", key="agent:main:k")["entry"]["n"] == 2
        assert peer.result("list")["seq"] == 4
