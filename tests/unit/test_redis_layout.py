"""Unit tests for the Redis backend's pure parts: the index order equals the daemon's
``list`` order, stored values keep revision and ``updatedAt``, targets parse, limits
match the daemon's defaults, and the generated blocking twins are up to date.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond.config import Limits
from sessiond_client.entry_json import revision_of
from sessiond_client.limits import DEFAULT_LIMITS
from sessiond_client.listing import encode_cursor
from sessiond_client.redis_backend.layout import (
    AgentKeys,
    StoredValue,
    index_member,
    sort_key_of_member,
    stored_value,
)
from sessiond_client.redis_backend.lua import FUNCTION_NAMES, LIBRARY_NAME, library_source
from sessiond_client.targets import RedisTarget, SocketTarget, parse_target

ROOT = Path(__file__).resolve().parents[2]
updated_ats = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53).map(float),
    st.floats(allow_nan=False, allow_infinity=False),
)
positions = st.tuples(updated_ats.map(lambda u: -u + 0.0), st.text())


@given(st.lists(positions, min_size=2, max_size=20))
def test_index_members_sort_in_the_daemons_list_order(items: list[tuple[float, str]]) -> None:
    by_member = sorted(items, key=index_member)
    assert [(n + 0.0, k) for n, k in by_member] == sorted((n + 0.0, k) for n, k in items)


@given(positions)
def test_a_member_gives_back_its_position(position: tuple[float, str]) -> None:
    assert sort_key_of_member(index_member(position)) == (position[0] + 0.0, position[1])


def test_a_stored_value_keeps_its_revision_and_updated_at() -> None:
    raw, json_bytes, exact = stored_value({"sessionId": "s", "updatedAt": 1700000000123})
    value = StoredValue(raw)
    assert exact and json_bytes == b'{"sessionId":"s","updatedAt":1700000000123}'
    assert value.revision == revision_of(json_bytes)
    assert value.updated_at_ms == 1700000000123.0
    assert value.value() == {"sessionId": "s", "updatedAt": 1700000000123}
    assert StoredValue(stored_value({"sessionId": "s"})[0]).updated_at_ms == 0.0
    assert not StoredValue(stored_value(0)[0]).is_truthy


def test_every_key_of_an_agent_shares_its_hash_tag() -> None:
    keys = AgentKeys("ops")
    names = [keys.entries, keys.index, keys.seq, keys.stream, keys.token("t1"), keys.staged("x")]
    names += list(keys.export_keys("e1"))
    assert all(name.startswith("{sessiond:ops}:") for name in names)
    assert AgentKeys.agent_of_seq_key(b"{sessiond:ops}:s") == "ops"
    assert AgentKeys.agent_of_seq_key(b"{sessiond:ops}:e") is None


def test_the_list_cursor_is_the_daemons() -> None:
    cursor = encode_cursor((-5.0, "k"))
    assert index_member((-5.0, "k")).endswith(b"k")
    assert isinstance(cursor, str)


def test_function_names_carry_the_code_version() -> None:
    assert library_source().startswith(f"#!lua name={LIBRARY_NAME}\n")
    assert all(name.startswith(f"{LIBRARY_NAME}_") for name in FUNCTION_NAMES.values())


def test_targets() -> None:
    env = {"SESSIOND_STATE_DIR": "/state"}
    assert parse_target("/run/s.sock", env, "/home/u") == SocketTarget("/run/s.sock")
    assert parse_target("unix:///run/s.sock", env, "/home/u") == SocketTarget("/run/s.sock")
    assert parse_target(None, {"SESSIOND_SOCKET": "/x.sock"}, "/h") == SocketTarget("/x.sock")
    unix = parse_target("redis+unix:///r/redis.sock?db=2&allow_eviction=yes", env, "/h")
    assert isinstance(unix, RedisTarget)
    assert (unix.url, unix.allow_eviction, unix.state_dir) == (
        "unix:///r/redis.sock?db=2",
        True,
        "/state",
    )
    tcp = parse_target("valkeys://user:secret@h:6380/1?state_dir=/s&max_connections=4", env, "/h")
    assert isinstance(tcp, RedisTarget)
    assert tcp.url == "rediss://user:secret@h:6380/1"
    assert "secret" not in tcp.shown
    assert (tcp.state_dir, tcp.max_connections) == ("/s", 4)
    from_env = parse_target(None, {"SESSIOND_SOCKET": "redis://h/0"}, "/h")
    assert isinstance(from_env, RedisTarget)
    with pytest.raises(ValueError, match="scheme"):
        parse_target("http://h", env, "/h")
    with pytest.raises(ValueError, match="allow_eviction"):
        parse_target("redis://h/0?allow_eviction=maybe", env, "/h")


def test_the_backend_enforces_the_daemons_default_limits() -> None:
    daemon = Limits()
    for name in type(DEFAULT_LIMITS).__struct_fields__:
        assert getattr(DEFAULT_LIMITS, name) == getattr(daemon, name), name


def test_the_generated_blocking_twins_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "unasync_ops.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
