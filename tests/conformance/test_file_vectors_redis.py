"""Runs the file-based reference vectors through the client's Redis backend.

The store operations of the vectors (``loadSessionStore``, ``updateLastRoute``,
``updateSessionStoreEntry``, ``sessionStoreSequence``) run through a real
:class:`~sessiond_client.Client` on a real ``redis-server`` (one agent per store file,
the vector's recorded clock and session ids injected into the backend), and are
compared with exactly what the daemon's runner expects (:mod:`.test_file_vectors`: the
record, or the reference model where a deviation rule applies): every call's return
value, whether it threw, what the update callback received, and the final store.

What a store file is has no Redis counterpart, so vectors are skipped (with the reason)
only where the vector is about the file itself — the original failed on file-system
I/O, or the file holds what no client can write (non-object entries, lone surrogates,
integers beyond 64 bits, nesting beyond ``max_depth``) — or where a call carries what
the wire refuses on every backend (an empty key, a non-finite number: PROTOCOL.md §4),
which the daemon's runner feeds to the store core directly. The initial store is the
daemon loader's reading of the file, imported as it is.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from sessiond_client import Client, InvalidRequestError
from sessiond_client.jscompat import UNDEFINED, js_truthy
from sessiond_client.limits import DEFAULT_LIMITS
from sessiond_client.values import MAX_WIRE_INT, MIN_WIRE_INT, check_json_value
from tests.support.daemon import short_temp_dir
from tests.support.redis_server import RedisServer, server_binary

from .fileexpect import (
    Context,
    _initial_store,
    model_expectation,
    recorded_expectation,
    steps_difference,
)
from .fileharness import (
    DEFAULT_STORE_NAME,
    RecordedClock,
    SessionIds,
    _as_object,
    _over_the_wire,
    operations_of,
    run_on_daemon,
    store_path_of,
)
from .test_file_vectors import RULES, _nulls_as_undefined, store_file_was_unusable
from .vectorfile import CONFORMANCE_FN_PROPERTY, FILE_BASED_FNS, first_difference, load_vectors


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    if server_binary("redis") is None:
        pytest.skip("no redis-server installed")
    root = short_temp_dir()
    server = RedisServer(root, "redis", appendfsync="always").start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def _carried_by_the_wire(value: object) -> bool:
    if isinstance(value, str):
        return not any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return MIN_WIRE_INT <= value <= MAX_WIRE_INT
    if isinstance(value, dict):
        return all(_carried_by_the_wire(k) and _carried_by_the_wire(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_carried_by_the_wire(item) for item in value)
    return True


def _refused_by_the_value_model(value: object) -> bool:
    limits = DEFAULT_LIMITS
    try:
        check_json_value(value, where="v", max_depth=limits.max_depth, max_fields=limits.max_fields)
    except InvalidRequestError:
        return True
    return False


def _why_not_on_redis(ctx: Context, unusable: bool, expected_steps: list[Any]) -> str | None:
    for step in expected_steps:
        if "throws" in step and step.get("errorName") not in (None, "TypeError"):
            return "the original failed on file-system I/O"
    for op in operations_of(ctx.vector):
        if op["op"] in ("updateLastRoute", "updateSessionStoreEntry") and not op.get("sessionKey"):
            return "an empty key is refused on the wire (every backend)"
        sent = [_over_the_wire(op.get(name)) for name in ("store", "patch")]
        if any(_refused_by_the_value_model(value) for value in sent):
            return "a value the wire's value model refuses (every backend)"
    for path in {store_path_of(ctx.root, op.get("storePath")) for op in operations_of(ctx.vector)}:
        initial = _initial_store(ctx, path, unusable=unusable)
        if not all(isinstance(entry, dict) for entry in initial.values()):
            return "the store file holds entries that are not objects"
        if not _carried_by_the_wire(initial) or _refused_by_the_value_model(initial):
            return "the store file holds values no client can write"
    return None


def _wire(value: object) -> Any:
    return None if value is UNDEFINED else value


class _RedisRun:
    """The vector's calls on one Redis database, one agent per store file."""

    def __init__(self, server: RedisServer, ctx: Context, unusable: bool) -> None:
        self.client = Client(server.url())
        transport: Any = self.client._transport
        transport.clock_ms = RecordedClock(ctx.vector.raw.get("now"))
        transport.new_session_id = SessionIds()
        self.agents: dict[Path, str] = {}
        self.ctx = ctx
        self.unusable = unusable

    def agent(self, op: Mapping[str, Any]) -> str:
        path = store_path_of(self.ctx.root, op.get("storePath"))
        if path not in self.agents:
            self.agents[path] = agent = f"s{len(self.agents)}"
            initial = _initial_store(self.ctx, path, unusable=self.unusable)
            if initial:  # every entry an object (checked before the run)
                entries = {k: v for k, v in initial.items() if isinstance(v, dict)}
                self.client.import_entries(entries, agent=agent, commit=True)
        return self.agents[path]

    def store(self, agent: str) -> dict[str, Any]:
        return {s.key: s.data for s in self.client.export(agent=agent).items}

    def apply(self, op: Mapping[str, Any]) -> dict[str, object]:
        agent = self.agent(op)
        key = str(op.get("sessionKey"))
        match op["op"]:
            case "loadSessionStore":
                return {"return": self.store(agent)}
            case "updateLastRoute":
                session = self.client.update_last_route(
                    key,
                    provider=_wire(op.get("provider", UNDEFINED)),
                    to=_wire(op.get("to", UNDEFINED)),
                    account_id=_wire(op.get("accountId", UNDEFINED)),
                    touch=True,
                    agent=agent,
                )
                return {"return": session.data}
            case "updateSessionStoreEntry":
                return self._update_with(agent, key, op.get("patch"))
            case "saveSessionStore":
                given = {
                    k: {n: v for n, v in entry.items() if v is not None and v is not UNDEFINED}
                    for k, entry in dict(op.get("store") or {}).items()
                }
                for stale in set(self.store(agent)) - set(given):
                    self.client.delete(stale, agent=agent)
                if given:
                    self.client.import_entries(given, agent=agent, commit=True)
                return {"return": UNDEFINED}
            case other:
                raise AssertionError(f"unknown sequence op {other!r}")

    def _update_with(self, agent: str, key: str, patch: object) -> dict[str, object]:
        current = self.client.get(key, agent=agent)
        if current is None:
            return {"return": None, "updateCalled": False}
        received = current.data
        if not js_truthy(patch):
            return {"return": received, "updateCalled": True, "received": received}
        wire_patch = {name: _wire(value) for name, value in _as_object(patch).items()}
        updated = self.client.update(key, wire_patch, if_revision=current.revision, agent=agent)
        assert updated is not None
        return {"return": updated.data, "updateCalled": True, "received": received}


def _file_vectors() -> list[object]:
    return [pytest.param(v, id=v.test_id) for v in load_vectors(fns=FILE_BASED_FNS)]


@pytest.mark.parametrize("vector", _file_vectors())
def test_file_vector_over_redis(
    vector: Any,
    tmp_path: Path,
    redis_server: RedisServer,
    record_property: Callable[[str, object], None],
) -> None:
    record_property(CONFORMANCE_FN_PROPERTY, f"{vector.fn} over redis")
    root = tmp_path / "store"
    root.mkdir()
    ctx = Context(vector, root, run_on_daemon(vector, root), root / DEFAULT_STORE_NAME)
    applied = [rule.__name__ for rule in RULES if rule(ctx)]
    unusable = store_file_was_unusable(ctx)
    expected = recorded_expectation(vector)
    if applied:
        expected = model_expectation(ctx, unusable=unusable, transform=_nulls_as_undefined)
    reason = _why_not_on_redis(ctx, unusable, expected.steps)
    if reason is not None:
        pytest.skip(f"{reason}: nothing of it exists in Redis")
    with redis_server.raw() as raw:
        raw.flushall()
    run = _RedisRun(redis_server, ctx, unusable)
    steps: list[dict[str, object]] = []
    try:
        for op in operations_of(vector):
            try:
                steps.append(run.apply(op))
            except Exception as error:  # the original threw: record the failure
                steps.append({"return": None, "throws": f"{type(error).__name__}: {error}"})
        context = f"{vector.test_id} ({vector.note or 'no note'}; rules: {applied or 'none'})"
        difference = steps_difference(steps, expected.steps)
        assert difference is None, f"{context}: {difference}"
        if expected.store_json is not UNDEFINED:
            agent = run.agents.get(ctx.store_path)
            stored = run.store(agent) if agent is not None else {}
            found = first_difference(stored, expected.store_json, where="/store")
            assert found is None, f"{context}: {found}"
    finally:
        run.client.close()
