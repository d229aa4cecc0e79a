"""Which store file serves which agent, and the lifecycle of open stores. Does I/O (via
persistence).

Agents name stores; clients never name paths. A wire agent id is already in normal form
(checked by dispatch) and is put into the store path template (default
``<state_dir>/agents/{agentId}/sessions/sessions.json``); a result outside the
template's directory is refused with ``forbidden``. Several agents whose template has no
``{agentId}`` share one file, as in the original, and here one in-memory store.

Lifecycle, in one place:

- Stores found on disk are loaded at start-up, before the daemon reports ready.
- A *write* to an agent seen for the first time loads (creates) its store; concurrent
  first uses share one load. A *read* of an agent that has nothing on disk creates
  nothing (no directory, file, descriptor or task): it is answered from an empty store.
- At most ``limits.max_stores`` stores are open. Opening one more first closes the
  least recently used store that nobody waits on; stores unused for
  ``limits.store_idle_unload_s`` are closed too. Closing writes a final snapshot; a
  request for a store being closed waits, then opens it again.
- A store that cannot be opened (another daemon holds it, corrupt under
  ``on_corrupt = "refuse"``, an I/O error, no descriptors left) answers its requests with
  ``unavailable`` and is tried again on use every :data:`RETRY_FAILED_LOAD_S`, so
  repairing the file is enough. Opening never takes the last descriptors the open stores
  and connections need (:data:`FD_HEADROOM`).
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from sessiond.config import Config, Limits
from sessiond.dedup import RequestMemory
from sessiond.entries import StoredEntry
from sessiond.journal_writer import JournalWriter
from sessiond.loader import StoreQuarantinedError
from sessiond.persistence import StoreLockedError, StorePersistence
from sessiond.retention import RetentionPlan, plan_retention
from sessiond.store import SessionStore
from sessiond.watch import WatchHub
from sessiond_client.errors import ForbiddenError, UnavailableError
from sessiond_client.keys import (
    DEFAULT_AGENT_ID,
    build_agent_main_session_key,
    normalize_agent_id,
)
from sessiond_client.protocol import PrunedEntry, PruneResult

__all__ = ["StoreRegistry", "archive_line", "enforce_retention"]

log = logging.getLogger("sessiond.registry")
AGENT_PLACEHOLDER = "{agentId}"
RETRY_FAILED_LOAD_S = 5.0
"""A store that failed to open is tried again on use, at most this often (so a repaired
file is picked up without a restart, and a broken one is not re-read per request)."""
FD_HEADROOM = 32
"""Descriptors kept free when opening a store (for connections and journal rotation)."""


def archive_line(pruned: PrunedEntry, entry: StoredEntry, now_ms: int) -> bytes:
    """One line of ``sessions.pruned.jsonl``: the key, the entry as it was, when, why."""
    record = {"key": pruned.key, "pruned_at": now_ms, "reason": pruned.reason}
    return msgspec.json.encode({**record, "entry": msgspec.Raw(entry.json_bytes)}) + b"\n"


async def enforce_retention(
    store: SessionStore, persistence: StorePersistence, plan: RetentionPlan, now_ms: int
) -> tuple[list[PrunedEntry], list[PrunedEntry]]:
    """Carry out ``plan``: append the entries to the prune archive and make it durable
    first, then delete, through the store's write path, each entry nothing changed since
    the plan. Returns the entries pruned and those kept for having changed."""
    lines = [
        archive_line(pruned, store.entries[pruned.key], now_ms)
        for pruned, _ in plan.prune
        if pruned.key in store.entries
    ]
    await persistence.archive(lines)
    done: list[PrunedEntry] = []
    changed: list[PrunedEntry] = []
    for pruned, revision in plan.prune:
        current = store.entries.get(pruned.key)
        if current is None or current.revision != revision:
            changed.append(PrunedEntry(pruned.key, "changed while pruning"))
            continue
        store.remove(pruned.key, op="prune")
        done.append(pruned)
    return done, changed


class _Slot:
    __slots__ = ("agents", "hub", "last_used_at", "path", "persistence", "store")

    def __init__(
        self, path: Path, store: SessionStore, persistence: StorePersistence, hub: WatchHub
    ) -> None:
        self.path = path
        self.store = store
        self.persistence = persistence
        self.hub = hub
        self.agents: set[str] = set()
        self.last_used_at = time.monotonic()

    @property
    def busy(self) -> bool:
        """Someone waits on this store (a durable write, a flush) or watches it: it must
        stay open."""
        return bool(self.persistence.waiters or self.hub.watchers)


def open_descriptors() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def descriptor_limit() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


class LoadProgress(msgspec.Struct):
    """How far loading the stores at start-up got."""

    total: int
    done: int = 0
    entries: int = 0
    current: str | None = None


class StoreRegistry:
    """Maps agents to open stores; implements :class:`sessiond.dispatch.StoreAccess`."""

    def __init__(
        self,
        config: Config,
        *,
        clock_ms: Callable[[], int],
        new_session_id: Callable[[], str],
    ) -> None:
        self.config = config
        self.template = os.path.expanduser(config.store_path)
        self.root = Path(os.path.normpath(self.template.split(AGENT_PLACEHOLDER)[0])).parent
        self.clock_ms = clock_ms
        self.new_session_id = new_session_id
        self.by_agent: dict[str, _Slot] = {}
        self.by_path: dict[Path, _Slot] = {}
        self.loading: dict[Path, asyncio.Task[_Slot]] = {}
        self.closing: dict[Path, asyncio.Task[bool]] = {}
        self.unavailable: dict[str, str] = {}
        self.load_progress = LoadProgress(total=0)
        self.pending_journals: list[JournalWriter] = []
        self.failed_at: dict[str, float] = {}
        self.failed_to_close: list[StorePersistence] = []
        self.empty_store = SessionStore(
            DEFAULT_AGENT_ID, {}, clock_ms=clock_ms, new_session_id=new_session_id
        )

    # -- paths ---------------------------------------------------------------------------

    def store_path_for(self, agent_id: str) -> Path:
        path = Path(os.path.normpath(self.template.replace(AGENT_PLACEHOLDER, agent_id)))
        if AGENT_PLACEHOLDER in self.template and not path.is_relative_to(self.root):
            raise ForbiddenError(f"agent {agent_id!r} would leave the state directory")
        return path

    def transcripts_dir_for(self, agent_id: str) -> str:
        return str(self.store_path_for(agent_id).parent)

    def on_disk(self, agent_id: str) -> bool:
        """Whether ``agent_id``'s store file or journal exists (a cheap directory read)."""
        path = self.store_path_for(agent_id)
        try:
            names = os.listdir(path.parent)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError:
            return True  # unreadable: opening it will say why
        journal_prefix = f"{path.name}.journal."
        return any(name == path.name or name.startswith(journal_prefix) for name in names)

    def agents_on_disk(self) -> list[str]:
        """Agents whose store file (or journal) exists under the template."""
        if AGENT_PLACEHOLDER not in self.template:
            return ["main"] if glob.glob(glob.escape(self.template) + "*") else []
        head, _, tail = self.template.partition(AGENT_PLACEHOLDER)
        pattern = glob.escape(head) + "*" + glob.escape(tail)
        matcher = re.compile(re.escape(head) + r"([^/]+)" + re.escape(tail))
        found: set[str] = set()
        for candidate in glob.glob(pattern) + glob.glob(pattern + ".journal.*"):
            match = matcher.match(candidate)
            if match and normalize_agent_id(match.group(1)) == match.group(1):
                found.add(match.group(1))
        return sorted(found)

    # -- serving -------------------------------------------------------------------------

    def ready(self, agent_ids: Iterable[str], *, for_write: bool) -> bool:
        """True when every store the request needs is open (or, for a read, absent)."""
        by_agent = self.by_agent
        for agent_id in agent_ids:
            if agent_id not in by_agent and (for_write or self.on_disk(agent_id)):
                return False
        return True

    async def prepare(self, agent_ids: Iterable[str], *, for_write: bool) -> None:
        """Open what :meth:`ready` found missing."""
        for agent_id in agent_ids:
            if agent_id not in self.by_agent and (for_write or self.on_disk(agent_id)):
                await self.load(agent_id)

    def hub_for(self, agent_id: str) -> WatchHub:
        """The change feed of an open store (the server opens it first)."""
        return self.by_agent[agent_id].hub

    def store_for(self, agent_id: str, *, for_write: bool) -> SessionStore:
        slot = self.by_agent.get(agent_id)
        if slot is None:
            if not for_write and not self.on_disk(agent_id):
                return self.empty_store
            reason = self.unavailable.get(agent_id, "store is not loaded")
            raise UnavailableError(f"store of agent {agent_id!r} is unavailable: {reason}")
        slot.last_used_at = time.monotonic()
        refusing = for_write and self.config.persistence.refuse_writes_when_failing
        if refusing and slot.persistence.failing:
            raise UnavailableError(
                f"writes are refused while persistence fails: {slot.persistence.stats.last_error}"
            )
        return slot.store

    # -- opening and closing -------------------------------------------------------------

    async def load(self, agent_id: str) -> None:
        """Open the store of ``agent_id`` (once; concurrent callers share the load)."""
        failed_at = self.failed_at.get(agent_id)
        if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_LOAD_S:
            reason = self.unavailable[agent_id]
            raise UnavailableError(f"store of agent {agent_id!r} is unavailable: {reason}")
        path = self.store_path_for(agent_id)
        while agent_id not in self.by_agent:
            closing = self.closing.get(path)
            if closing is not None:
                await asyncio.shield(closing)
                continue
            slot = self.by_path.get(path) or await self._open_shared(agent_id, path)
            slot.agents.add(agent_id)
            self.by_agent[agent_id] = slot
        self.unavailable.pop(agent_id, None)
        self.failed_at.pop(agent_id, None)

    async def _open_shared(self, agent_id: str, path: Path) -> _Slot:
        task = self.loading.get(path)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._open(agent_id, path))
            self.loading[path] = task
            task.add_done_callback(lambda _: self.loading.pop(path, None))
        try:
            return await asyncio.shield(task)
        except (OSError, StoreQuarantinedError, UnavailableError) as error:
            self.unavailable[agent_id] = str(error)
            self.failed_at[agent_id] = time.monotonic()
            if isinstance(error, UnavailableError):
                raise
            raise UnavailableError(
                f"store of agent {agent_id!r} is unavailable: {error}"
            ) from error

    async def _open(self, agent_id: str, path: Path) -> _Slot:
        await self._make_room()
        limits = self.config.limits
        persistence = StorePersistence(
            path,
            self.config.persistence,
            store_id=self.store_id(path),
            history_changes=limits.watch_history_changes,
            history_bytes=limits.watch_history_bytes,
        )
        persistence.journal.on_pending = self.pending_journals_append
        loaded = await persistence.open()
        requests = RequestMemory(
            max_entries=limits.max_remembered_requests,
            ttl_s=limits.remember_requests_s,
            clock_s=time.monotonic,
        )
        for token, write in loaded.replayed_tokens.items():
            requests.remember(token, write)
        store = SessionStore(
            agent_id,
            loaded.entries,
            clock_ms=self.clock_ms,
            new_session_id=self.new_session_id,
            on_change=persistence.record_change,
            max_entry_bytes=limits.max_entry_bytes,
            requests=requests,
            seq=loaded.seq,
        )
        hub = WatchHub(
            seq=loaded.seq,
            max_changes=limits.watch_history_changes,
            max_bytes=limits.watch_history_bytes,
            history=loaded.history,
        )
        store.listeners.append(hub.record)
        persistence.start(lambda: store.entries, requests.live)
        slot = _Slot(path, store, persistence, hub)
        self.by_path[path] = slot
        log.info("loaded store %s (%d entries)", path, len(store))
        return slot

    def store_id(self, path: Path) -> str:
        """How a store's journal names it: its path relative to the state directory."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    async def _make_room(self) -> None:
        """Close the least recently used store if the cap is reached; check descriptors."""
        if len(self.by_path) >= self.config.limits.max_stores:
            idle = [slot for slot in self.by_path.values() if not slot.busy]
            if not idle:
                raise UnavailableError(
                    f"{len(self.by_path)} stores are open and busy "
                    f"(limits.max_stores = {self.config.limits.max_stores})"
                )
            await self.unload(min(idle, key=lambda slot: slot.last_used_at))
        in_use, limit = open_descriptors(), descriptor_limit()
        if in_use is not None and limit is not None and in_use + FD_HEADROOM > limit:
            raise UnavailableError(
                f"out of file descriptors ({in_use} of {limit} in use): raise LimitNOFILE, "
                "or lower limits.max_connections / limits.max_stores"
            )

    async def unload(self, slot: _Slot) -> bool:
        """Close one store (final snapshot); its agents open it again on their next use."""
        if self.by_path.get(slot.path) is not slot:
            return True
        del self.by_path[slot.path]
        for agent_id in slot.agents:
            self.by_agent.pop(agent_id, None)
        task = asyncio.get_running_loop().create_task(slot.persistence.close())
        self.closing[slot.path] = task
        try:
            ok = await asyncio.shield(task)
        finally:
            self.closing.pop(slot.path, None)
        log.info("closed idle store %s%s", slot.path, "" if ok else " (final flush failed)")
        return ok

    async def unload_idle_forever(self) -> None:
        """Close stores nobody used for ``store_idle_unload_s`` (0: never)."""
        idle_s = self.config.limits.store_idle_unload_s
        if idle_s <= 0:
            return
        while True:
            await asyncio.sleep(max(1.0, min(60.0, idle_s / 4)))
            horizon = time.monotonic() - idle_s
            for slot in list(self.by_path.values()):
                if slot.last_used_at < horizon and not slot.busy:
                    await self.unload(slot)

    async def preload(self) -> None:
        """Load every store found on disk; a store another daemon holds is fatal.
        ``load_progress`` says how far it got."""
        agent_ids = self.agents_on_disk()
        progress = self.load_progress = LoadProgress(total=len(agent_ids))
        for agent_id in agent_ids:
            progress.current = str(self.store_path_for(agent_id))
            try:
                await self.load(agent_id)
            except UnavailableError as error:
                if isinstance(error.__cause__, StoreLockedError):
                    raise error.__cause__ from None
                log.error("store of agent %s: %s", agent_id, self.unavailable.get(agent_id, error))
            else:
                slot = self.by_agent.get(agent_id)
                progress.entries += 0 if slot is None else len(slot.store)
            progress.done += 1
        progress.current = None

    # -- retention -----------------------------------------------------------------------

    def always_kept(self, agent_id: str) -> frozenset[str]:
        """Keys retention never prunes in this agent's store: its main and global sessions."""
        main_key = self.config.session_config_for(agent_id).main_key
        main = build_agent_main_session_key(agent_id=agent_id, main_key=main_key)
        glob_key = "global" if agent_id == DEFAULT_AGENT_ID else f"agent:{agent_id}:global"
        return frozenset({main, glob_key})

    async def prune(self, agent_id: str, *, dry_run: bool) -> PruneResult:
        """Apply ``agent_id``'s retention rules now (or only plan them): archive, then
        delete through the store's write path each planned entry nothing changed since."""
        config = self.config.retention_for(agent_id)
        if agent_id not in self.by_agent:
            if not self.on_disk(agent_id):
                return PruneResult(mode=config.mode, dry_run=dry_run, pruned=[], kept=[], entries=0)
            await self.load(agent_id)
        slot = self.by_agent[agent_id]
        store = slot.store
        plan = plan_retention(
            store.items(), config, now_ms=self.clock_ms(), always_kept=self.always_kept(agent_id)
        )
        result = PruneResult(
            mode=config.mode,
            dry_run=dry_run,
            pruned=[pruned for pruned, _ in plan.prune],
            kept=plan.kept,
            entries=plan.remaining,
            over_cap=plan.over_cap,
        )
        if dry_run or not plan.prune:
            return result
        done, changed = await enforce_retention(store, slot.persistence, plan, self.clock_ms())
        result.archive = str(slot.persistence.archive_path)
        result.kept.extend(changed)
        result.pruned, result.entries = done, len(store)
        return result

    async def retain_forever(self) -> None:
        """Run every open store's retention on its ``interval_s``: ``warn`` logs what it
        would prune, ``enforce`` prunes."""
        next_run: dict[str, float] = {}
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for agent_id in list(self.by_agent):
                config = self.config.retention_for(agent_id)
                if config.mode == "off" or now < next_run.get(agent_id, 0.0):
                    continue
                next_run[agent_id] = now + config.interval_s
                try:
                    await self._scheduled_prune(agent_id, enforce=config.mode == "enforce")
                except Exception:  # retention must never take the daemon down
                    log.exception("retention of agent %s failed", agent_id)

    async def _scheduled_prune(self, agent_id: str, *, enforce: bool) -> None:
        result = await self.prune(agent_id, dry_run=not enforce)
        if not result.pruned and not result.over_cap:
            return
        ages = sum(1 for p in result.pruned if p.reason == "age")
        verb = "pruned" if enforce else "would prune (mode warn)"
        log.warning(
            "retention of agent %s %s %d entries (%d by age, %d by the cap), %d left%s",
            agent_id,
            verb,
            len(result.pruned),
            ages,
            len(result.pruned) - ages,
            result.entries,
            "; protected entries alone exceed max_entries" if result.over_cap else "",
        )

    # -- persistence -----------------------------------------------------------------------

    def persistences(self, agent_id: str | None = None) -> list[StorePersistence]:
        if agent_id is None:
            return [slot.persistence for slot in self.by_path.values()]
        slot = self.by_agent.get(agent_id)
        return [] if slot is None else [slot.persistence]

    def pending_journals_append(self, journal: JournalWriter) -> None:
        self.pending_journals.append(journal)

    def append_journals(self) -> None:
        """Push the pending journal records of every store that has some to the kernel
        (before replying): only the journals that reported records since the last call,
        not every open store."""
        pending = self.pending_journals
        if pending:
            self.pending_journals = []
            for journal in pending:
                journal.append_pending()

    async def wait_durable(self, agent_ids: Iterable[str]) -> None:
        for agent_id in agent_ids:
            slot = self.by_agent.get(agent_id)
            if slot is not None:
                await slot.persistence.wait_durable()
                continue
            closing = self.closing.get(self.store_path_for(agent_id))
            if closing is not None and not await asyncio.shield(closing):
                raise UnavailableError(
                    f"store of agent {agent_id!r} was closed and its final flush failed"
                )

    async def flush(self, agent_id: str | None) -> None:
        await asyncio.gather(*(p.flush() for p in self.persistences(agent_id)))

    def stats(self, agent_id: str | None = None, *, on_disk: bool = False) -> dict[str, Any]:
        """Per-store counters; ``on_disk`` also lists every agent with a store file (a
        directory scan: for the ``stats`` op, not the once-a-second status line)."""
        stores = {
            agent: slot.persistence.snapshot_stats(len(slot.store))
            for agent, slot in self.by_agent.items()
            if agent_id is None or agent == agent_id
        }
        unavailable = {
            agent: reason
            for agent, reason in self.unavailable.items()
            if agent_id is None or agent == agent_id
        }
        if agent_id is not None or not on_disk:
            return {"stores": stores, "unavailable_stores": unavailable}
        return {
            "stores": stores,
            "unavailable_stores": unavailable,
            "stores_on_disk": self.agents_on_disk(),
        }

    def apply_limits(self, limits: Limits) -> None:
        """A reload changed the limits: the open stores take the new ones."""
        for slot in self.by_path.values():
            slot.store.max_entry_bytes = limits.max_entry_bytes
            slot.store.requests.max_entries = limits.max_remembered_requests
            slot.store.requests.ttl_s = limits.remember_requests_s

    async def close(self) -> bool:
        """Final flush of every store; True if all of them were written."""
        persistences = [slot.persistence for slot in self.by_path.values()]
        results = await asyncio.gather(
            *(persistence.close() for persistence in persistences), *self.closing.values()
        )
        self.failed_to_close = [p for p, ok in zip(persistences, results, strict=False) if not ok]
        return all(results)

    def stores_losing_changes(self) -> list[str]:
        """Stores whose failed final flush left changes that no synced journal holds."""
        return [str(p.path) for p in self.failed_to_close if not p.journal_holds_changes]
