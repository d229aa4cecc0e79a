"""The original design, re-implemented in Python as a benchmark peer. Does file I/O.

clawdbot's ``src/config/sessions.ts`` (2026-01-10) kept every session in one JSON file that
each bot process read and rewrote itself. This module reproduces its locked helpers
(``updateSessionStoreEntry``, ``updateLastRoute``) operation by operation:

- lock: ``sessions.json.lock`` created with ``O_CREAT|O_EXCL|O_WRONLY`` (``open(.., "wx")``)
  holding ``{"pid", "startedAt"}``; on ``EEXIST`` poll every 25 ms; after 10 s raise
  :class:`LockTimeout` ("timeout acquiring session store lock"); a lock whose mtime is older
  than 30 s is deleted by whichever waiter sees it (even if its owner is alive); no fairness;
- under the lock: read and parse the whole file (a parse error gives an empty store, as the
  original did), merge one entry (``mergeSessionEntry``), write the whole store to
  ``sessions.json.<pid>.<uuid>.tmp`` in the same directory as ``JSON.stringify(store, null,
  2)`` would, rename it over ``sessions.json``, remove the lock. Like the original there is
  no fsync: a crash can leave a renamed but unwritten file (not measured here).
- ``get`` reads and parses the whole file without the lock, as ``loadSessionStore`` did,
  but WITHOUT its 45 s in-process cache: with the cache a process keeps serving its own
  stale copy while other processes write, so cached reads would not be comparable with a
  store that always answers the current value.

Cost model versus the real thing: parsing uses the stdlib ``json`` module (C), far faster
than the ``JSON5.parse`` the original used, while CPython's ``indent=2`` encoder is pure
Python and slower than V8's ``JSON.stringify``. On balance this peer is faster than the
original was; ratios against it understate the improvement.

``read_outside_lock=True`` models the other 19 callers of ``saveSessionStore``: load, change,
then save under the lock. Only the save is serialised, so concurrent updates are lost; the
``original-racy`` contender shows how many.

Run ``python -m bench.original_store measure-load PATH`` to time one cold parse in a fresh
process (used for load time and memory per entry).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.contender import AsyncOps, Contender, LoadResult, PatchFn, Unsupported
from bench.entries import iter_store
from bench.procs import REPO_ROOT, rss_bytes

__all__ = [
    "LockConfig",
    "LockTimeout",
    "OriginalContender",
    "OriginalFactory",
    "OriginalStore",
    "merge_entry",
    "write_store_file",
]

STORE_RELATIVE_PATH: Final = Path("agents/main/sessions/sessions.json")


class LockTimeout(Exception):
    """``timeout acquiring session store lock``: the operation was dropped."""


@dataclass(frozen=True)
class LockConfig:
    timeout_s: float = 10.0
    poll_s: float = 0.025
    stale_s: float = 30.0


def now_ms() -> int:
    return int(time.time() * 1000)


def merge_entry(
    existing: dict[str, Any] | None, patch: dict[str, Any], at_ms: int
) -> dict[str, Any]:
    """``mergeSessionEntry``: sessionId kept, updatedAt = max(old, patch, now), then spread."""
    old = existing or {}
    session_id = patch.get("sessionId")
    if session_id is None:
        session_id = old.get("sessionId") or str(uuid.uuid4())
    updated_at = max(old.get("updatedAt") or 0, patch.get("updatedAt") or 0, at_ms)
    return {**old, **patch, "sessionId": session_id, "updatedAt": updated_at}


def encode_store(store: dict[str, Any]) -> str:
    """``JSON.stringify(store, null, 2)``: indent 2, non-ASCII raw, no trailing newline."""
    return json.dumps(store, indent=2, ensure_ascii=False)


def write_store_file(path: Path, store: dict[str, Any]) -> None:
    """Write a store the way the original saved it (used to prepare benchmark stores)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(encode_store(store), encoding="utf-8")


class OriginalStore:
    """One process's view of a ``sessions.json`` store: the original's helpers (SyncOps)."""

    def __init__(
        self, store_path: Path, lock: LockConfig | None = None, read_outside_lock: bool = False
    ) -> None:
        self.store_path = store_path
        self.lock_path = store_path.with_name(store_path.name + ".lock")
        self.lock_config = lock or LockConfig()
        self.read_outside_lock = read_outside_lock
        self._counters = {"lock_polls": 0, "lock_timeouts": 0, "stale_evictions": 0}

    def load(self) -> dict[str, Any]:
        """``loadSessionStore`` minus the cache: any read or parse error gives ``{}``."""
        try:
            store = json.loads(self.store_path.read_bytes())
        except (OSError, ValueError):
            return {}
        return store if isinstance(store, dict) else {}

    def save_unlocked(self, store: dict[str, Any]) -> None:
        """``saveSessionStoreUnlocked``: temp file in the same directory, then rename."""
        self.store_path.parent.mkdir(parents=True, exist_ok=True)
        temp_path = self.store_path.with_name(
            f"{self.store_path.name}.{os.getpid()}.{uuid.uuid4()}.tmp"
        )
        data = encode_store(store).encode()
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temp_path, self.store_path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """``withSessionStoreLock``."""
        self._acquire_lock()
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.lock_path)

    def _acquire_lock(self) -> None:
        config = self.lock_config
        started_s = time.time()
        while True:
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                pass
            except FileNotFoundError:
                self.lock_path.parent.mkdir(parents=True, exist_ok=True)
                continue
            else:
                self._write_lock_owner(fd)
                return
            if time.time() - started_s > config.timeout_s:
                self._counters["lock_timeouts"] += 1
                raise LockTimeout(f"timeout acquiring session store lock: {self.lock_path}")
            if self._evict_if_stale():
                continue
            self._counters["lock_polls"] += 1
            time.sleep(config.poll_s)

    def _write_lock_owner(self, fd: int) -> None:
        owner = json.dumps({"pid": os.getpid(), "startedAt": now_ms()}).encode()
        try:
            os.write(fd, owner)
        except OSError:
            pass  # the original ignored a failed write of the owner record too
        finally:
            os.close(fd)

    def _evict_if_stale(self) -> bool:
        try:
            age_s = time.time() - os.stat(self.lock_path).st_mtime
            if age_s <= self.lock_config.stale_s:
                return False
            os.unlink(self.lock_path)
        except OSError as exc:
            return exc.errno == errno.ENOENT
        self._counters["stale_evictions"] += 1
        return True

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self.load().get(key)
        return entry if isinstance(entry, dict) else None

    def read_entry(self, key: str) -> dict[str, Any] | None:
        return self.get(key)

    def patch(self, key: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge under the lock, creating the entry if missing (like ``updateLastRoute``)."""
        with self.locked():
            store = self.load()
            merged = merge_entry(store.get(key), patch, now_ms())
            store[key] = merged
            self.save_unlocked(store)
        return merged

    def update_with(self, key: str, fn: PatchFn) -> dict[str, Any] | None:
        """``updateSessionStoreEntry``: None for a missing key; a falsy patch writes nothing."""
        if self.read_outside_lock:
            return self._update_racy(key, fn)
        with self.locked():
            store = self.load()
            existing = store.get(key)
            if not existing:
                return None
            patch = fn(existing)
            if not patch:
                return dict(existing)
            merged = merge_entry(existing, patch, now_ms())
            store[key] = merged
            self.save_unlocked(store)
        return merged

    def _update_racy(self, key: str, fn: PatchFn) -> dict[str, Any] | None:
        """``loadSessionStore`` → change → ``saveSessionStore``: only the save is locked."""
        store = self.load()
        existing = store.get(key)
        if not existing:
            return None
        merged = merge_entry(existing, fn(existing), now_ms())
        store[key] = merged
        with self.locked():
            self.save_unlocked(store)
        return merged

    def counters(self) -> dict[str, int]:
        return dict(self._counters)

    def close(self) -> None:
        """Nothing to release: every operation opens and closes the file itself."""


@dataclass(frozen=True)
class OriginalFactory:
    store_path: Path
    read_outside_lock: bool = False

    def open_sync(self) -> OriginalStore:
        return OriginalStore(self.store_path, read_outside_lock=self.read_outside_lock)

    async def open_async(self) -> AsyncOps:
        raise Unsupported("the file store has no connection to pipeline on")


class OriginalContender(Contender):
    """The file store, every client process doing its own read-modify-write."""

    family = "original"

    def __init__(self, read_outside_lock: bool = False) -> None:
        self.read_outside_lock = read_outside_lock
        if read_outside_lock:
            self.name = "original-racy"
            self.description = "file store, read outside the lock (the 19 saveSessionStore callers)"
            self.workloads = frozenset({"counter_8proc"})
        else:
            self.name = "original"
            self.description = "file store: whole-file JSON rewrite under a 25 ms polling lock"
            self.workloads = frozenset(
                {"get_seq", "patch_seq", "patch_8proc", "counter_8proc", "get_under_writes"}
            )

    def setup(self, store_size: int, work_dir: Path) -> OriginalFactory:
        store_path = work_dir / STORE_RELATIVE_PATH
        write_store_file(store_path, dict(iter_store(store_size)))
        return OriginalFactory(store_path, self.read_outside_lock)

    def teardown(self) -> None:
        """No process to stop; the runner removes the work directory."""

    def measure_load(self, store_size: int, work_dir: Path) -> LoadResult | None:
        """One cold parse in a fresh process: what every bot process pays to read the store."""
        if self.read_outside_lock:
            return None  # the same file and parser as "original"
        store_path = work_dir / STORE_RELATIVE_PATH
        write_store_file(store_path, dict(iter_store(store_size)))
        argv = [sys.executable, "-m", "bench.original_store", "measure-load", str(store_path)]
        completed = subprocess.run(argv, check=True, capture_output=True, cwd=REPO_ROOT)
        report = json.loads(completed.stdout)
        return LoadResult(
            load_time_s=report["load_time_s"],
            bytes_per_entry=report["rss_delta_bytes"] / max(1, store_size),
            details={"file_bytes": store_path.stat().st_size, "per": "client process"},
        )

    def info(self) -> dict[str, Any]:
        config = LockConfig()
        return {
            "description": self.description,
            "lock_timeout_s": config.timeout_s,
            "lock_poll_s": config.poll_s,
            "lock_stale_s": config.stale_s,
            "json": "stdlib json, indent=2 (JSON.stringify(store, null, 2))",
            "fsync": False,
        }


def _measure_load(store_path: Path) -> dict[str, float]:
    rss_before = rss_bytes(os.getpid())
    started = time.perf_counter()
    store = OriginalStore(store_path).load()
    load_time_s = time.perf_counter() - started
    return {
        "load_time_s": load_time_s,
        "rss_delta_bytes": rss_bytes(os.getpid()) - rss_before,
        "entries": len(store),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "measure-load":
        print("usage: python -m bench.original_store measure-load PATH", file=sys.stderr)
        return 2
    print(json.dumps(_measure_load(Path(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
