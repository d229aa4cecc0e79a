"""Runs the file-based reference vectors against the daemon's own store core and loader.

Test support. Does I/O: it lays out a vector's ``setup.files`` under a fresh directory,
opens each named store with :class:`~sessiond.persistence.StorePersistence` in
``debounced`` mode (the loader the daemon uses: strict JSON, json5 fallback, corrupt
files moved aside), applies the operations with :class:`~sessiond.store.SessionStore`
and writes a snapshot after every operation that changed something, as the original
rewrote its file after every write. What it observes has the shape of a record's
``result`` (``return``/``throws``, ``updateCalled``/``received``, ``steps``, the store
file and the directory listing), so the runner can compare the two.

How each original call maps onto the store core:

- ``loadSessionStore``: the in-memory entries (the daemon never re-reads its file);
- ``updateLastRoute``: ``store.update_last_route(..., touch=True)`` (DESIGN.md §10);
- ``updateSessionStoreEntry``: the client's ``update_with`` done on the core: ``get``,
  the vector's callback (it returns the recorded patch; a falsy patch means "no
  change"), then ``update(if_revision=...)``;
- ``saveSessionStore``: the whole store replaced: keys not in the new store removed,
  every given entry stored as ``JSON.stringify`` would write it.

JS ``undefined`` and ``null`` in arguments both become the wire's ``None`` (which
deletes a field); the runner's rules say where that changes the expectation. Values
are observed as the core holds them (``StoredEntry.exact_value``): a lone surrogate the
original's file held is kept there and in the file; only replies on the wire show it
as U+FFFD (msgpack strings are UTF-8).
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sessiond.config import PersistenceConfig
from sessiond.entries import encode_entry
from sessiond.persistence import StorePersistence
from sessiond.snapshotter import InlineSnapshotter
from sessiond.store import SessionStore
from sessiond.syncthread import InlineRunner
from sessiond_client.jscompat import UNDEFINED, js_code_units, js_truthy

from .vectorfile import Vector

__all__ = [
    "DEFAULT_STORE_NAME",
    "RECORDED_NOW_MS",
    "STORE_DIR_TOKEN",
    "DaemonRun",
    "RecordedClock",
    "SessionIds",
    "json_roundtrip",
    "list_files",
    "operations_of",
    "run_on_daemon",
    "store_path_of",
    "write_setup",
]

STORE_DIR_TOKEN: Final = "<STORE_DIR>"
DEFAULT_STORE_NAME: Final = "sessions.json"
RECORDED_NOW_MS: Final = 1_700_000_000_000
_NUMBER: Final = re.compile(r"-?\d+(?:\.\d+)?")


class RecordedClock:
    """``Date.now()`` as recorded: fixed at the vector's ``now``, or advancing per call.

    ``now`` is normally an integer. The two lock-timeout vectors advance the clock by
    1000 ms per call and say so in ``now``; any non-integer form is read tolerantly:
    the first number is the start, a second one the step (default 1000 ms).
    """

    def __init__(self, now: object) -> None:
        self.start_ms, self.step_ms = _parse_now(now)
        self.calls = 0

    def __call__(self) -> int:
        value = self.start_ms + self.calls * self.step_ms
        self.calls += 1
        return value


def _parse_now(now: object) -> tuple[int, int]:
    if now is None:
        return RECORDED_NOW_MS, 0
    if isinstance(now, int) and not isinstance(now, bool):
        return now, 0
    if isinstance(now, Mapping):
        numbers = [int(value) for value in now.values() if isinstance(value, int | float)]
    else:
        numbers = [int(float(text)) for text in _NUMBER.findall(str(now))]
    start = next((number for number in numbers if number > 10**9), RECORDED_NOW_MS)
    steps = [number for number in numbers if 0 < number <= 10**6]
    return start, steps[0] if steps else 1000


class SessionIds:
    """``crypto.randomUUID()`` as recorded: ``uuid-1``, ``uuid-2``, ... per vector."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"uuid-{self.count}"


def store_path_of(root: Path, value: object) -> Path:
    """A recorded ``storePath`` with ``<STORE_DIR>`` replaced by ``root``."""
    if not isinstance(value, str):
        raise TypeError(f"storePath must be a string, got {value!r}")
    return Path(value.replace(STORE_DIR_TOKEN, str(root)))


def write_setup(root: Path, setup: Mapping[str, object] | None) -> None:
    """Create ``setup.files`` (text, base64 bytes, directories, mtimes) under ``root``."""
    files = (setup or {}).get("files") or {}
    assert isinstance(files, Mapping)
    for name, spec in files.items():
        assert isinstance(spec, Mapping)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if spec.get("dir"):
            path.mkdir(exist_ok=True)
        elif "base64" in spec:
            path.write_bytes(base64.b64decode(str(spec["base64"])))
        else:
            path.write_bytes(str(spec.get("text", "")).encode("utf-8", "surrogatepass"))
        mtime = spec.get("mtimeSec")
        if isinstance(mtime, int | float):
            os.utime(path, (mtime, mtime))


def list_files(root: Path) -> list[str]:
    """The recorded ``files`` listing: sorted, recursive, directories ending in ``/``."""
    names: list[str] = []
    for directory, subdirs, files in os.walk(root):
        relative = Path(directory).relative_to(root)
        names.extend(f"{(relative / name).as_posix()}/" for name in subdirs)
        names.extend((relative / name).as_posix() for name in files)
    return sorted(names)


def json_roundtrip(value: object) -> object:
    """``JSON.parse(JSON.stringify(value))``: undefined dropped (null in arrays),
    non-finite numbers become null, ``-0`` becomes ``0``."""
    if isinstance(value, Mapping):
        return {
            str(key): json_roundtrip(item)
            for key, item in value.items()
            if item is not UNDEFINED and not callable(item)
        }
    if isinstance(value, list):
        return [None if item is UNDEFINED else json_roundtrip(item) for item in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return 0 if value == 0 else value
    return value


def operations_of(vector: Vector) -> list[dict[str, Any]]:
    """The vector's calls as sequence steps (a single call is a one-step sequence)."""
    if vector.fn == "sessionStoreSequence":
        steps = vector.arg(0)
        assert isinstance(steps, list)
        return [dict(step) for step in steps]
    params = vector.arg(0)
    assert isinstance(params, Mapping)
    return [{"op": vector.fn, **params}]


def _wire(value: object) -> object:
    """A JS argument as the wire carries it: undefined and null are both ``None``."""
    return None if value is UNDEFINED else value


@dataclass
class _OpenStore:
    persistence: StorePersistence
    store: SessionStore


@dataclass
class DaemonRun:
    """What the daemon did with one vector, shaped like a record's ``result``."""

    steps: list[dict[str, object]] = field(default_factory=list)
    moved_aside: dict[Path, Path] = field(default_factory=dict)


class _Daemon:
    def __init__(self, root: Path, clock: Callable[[], int]) -> None:
        self.root = root
        self.clock = clock
        self.new_session_id = SessionIds()
        self.open_stores: dict[Path, _OpenStore] = {}
        self.run = DaemonRun()

    async def opened(self, path: Path) -> SessionStore:
        """The store at ``path``, loaded on first use as the daemon's registry does."""
        if path not in self.open_stores:
            config = PersistenceConfig(durability="debounced")
            persistence = StorePersistence(
                path,
                config,
                store_id=path.name,
                runner=InlineRunner(),
                snapshotter=InlineSnapshotter(),
                load_in_thread=False,
            )
            loaded = await persistence.open()
            if persistence.stats.corrupt_moved_to is not None:
                self.run.moved_aside[path] = Path(persistence.stats.corrupt_moved_to)
            store = SessionStore(
                "main",
                loaded.entries,
                clock_ms=self.clock,
                new_session_id=self.new_session_id,
                on_change=persistence.record_change,
            )
            persistence.start(lambda: store.entries, list, background=False)
            self.open_stores[path] = _OpenStore(persistence, store)
        return self.open_stores[path].store

    async def flush_changes(self) -> None:
        for opened in self.open_stores.values():
            persistence = opened.persistence
            if persistence.tracker.unsnapshotted:
                assert await persistence.snapshot_once(), persistence.stats.last_error

    async def close(self) -> None:
        for opened in self.open_stores.values():
            await opened.persistence.close()

    async def apply(self, op: Mapping[str, Any]) -> dict[str, object]:
        store = await self.opened(store_path_of(self.root, op.get("storePath")))
        match op["op"]:
            case "loadSessionStore":
                return {"return": {key: entry.exact_value() for key, entry in store.items()}}
            case "updateLastRoute":
                return {"return": _update_last_route(store, op)}
            case "updateSessionStoreEntry":
                return _update_with_callback(store, op)
            case "saveSessionStore":
                _save_whole_store(store, op.get("store"))
                return {"return": UNDEFINED}
            case other:
                raise AssertionError(f"unknown sequence op {other!r}")


def _update_last_route(store: SessionStore, op: Mapping[str, Any]) -> object:
    entry = store.update_last_route(
        str(op["sessionKey"]),
        provider=_wire(op.get("provider", UNDEFINED)),  # type: ignore[arg-type]
        to=_wire(op.get("to", UNDEFINED)),  # type: ignore[arg-type]
        account_id=_wire(op.get("accountId", UNDEFINED)),  # type: ignore[arg-type]
        touch=True,
    )
    return entry.exact_value()


def _update_with_callback(store: SessionStore, op: Mapping[str, Any]) -> dict[str, object]:
    key = str(op["sessionKey"])
    current = store.get(key)
    if current is None:
        return {"return": None, "updateCalled": False}
    received = current.exact_value()
    patch = op.get("patch")
    if not js_truthy(patch):
        return {"return": received, "updateCalled": True, "received": received}
    wire_patch = {name: _wire(value) for name, value in _as_object(patch).items()}
    updated = store.update(key, wire_patch, if_revision=current.revision)
    assert updated is not None
    return {"return": updated.exact_value(), "updateCalled": True, "received": received}


def _as_object(patch: object) -> Mapping[str, object]:
    """A callback's patch as the map a client sends: a non-object patch is what
    ``{...patch}`` makes of it (a string's code units, an array's items, else nothing)."""
    if isinstance(patch, Mapping):
        return patch
    if isinstance(patch, str):
        return {str(index): unit for index, unit in enumerate(js_code_units(patch))}
    if isinstance(patch, list):
        return {str(index): item for index, item in enumerate(patch)}
    return {}


def _save_whole_store(store: SessionStore, value: object) -> None:
    given = _over_the_wire(value)
    assert isinstance(given, dict)
    for key in [key for key, _ in store.items() if key not in given]:
        store.remove(key)
    for key, entry in given.items():
        # as ``replace`` stores an entry: null fields dropped
        kept = (
            {k: v for k, v in entry.items() if v is not None} if isinstance(entry, dict) else entry
        )
        store.set(key, encode_entry(kept))


def _over_the_wire(value: object) -> object:
    """A JS value as a client can send it: undefined properties are not sent, an
    undefined array item is null (NaN, Infinity and -0 are floats msgpack carries)."""
    if isinstance(value, Mapping):
        return {str(k): _over_the_wire(v) for k, v in value.items() if v is not UNDEFINED}
    if isinstance(value, list):
        return [None if item is UNDEFINED else _over_the_wire(item) for item in value]
    return value


def _steps(vector: Vector) -> Iterator[dict[str, Any]]:
    yield from operations_of(vector)


async def _run(vector: Vector, root: Path, clock: Callable[[], int]) -> DaemonRun:
    daemon = _Daemon(root, clock)
    try:
        for op in _steps(vector):
            try:
                outcome = await daemon.apply(op)
            except Exception as error:  # the original threw: record the failure
                outcome = {"return": None, "throws": f"{type(error).__name__}: {error}"}
            await daemon.flush_changes()
            daemon.run.steps.append(outcome)
    finally:
        await daemon.close()
    return daemon.run


def run_on_daemon(vector: Vector, root: Path) -> DaemonRun:
    """Lay out the vector's files under ``root`` and run its calls on the daemon core."""
    write_setup(root, vector.setup)
    return asyncio.run(_run(vector, root, RecordedClock(vector.raw.get("now"))))
