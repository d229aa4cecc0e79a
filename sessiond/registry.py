"""Which store file serves which agent, and loading them. Does I/O (via persistence).

Agents name stores; clients never name paths. An agent id is normalised (the original's
``normalizeAgentId``: lowercase ``[a-z0-9_-]``) and put into the store path template
(default ``<state_dir>/agents/{agentId}/sessions/sessions.json``); a result outside the
template's directory is refused with ``forbidden``. Several agents whose template has no
``{agentId}`` share one file, as in the original, and here one in-memory store.

Stores found on disk are loaded at start-up, before the daemon reports ready; an agent
seen for the first time later is loaded on first use (concurrent first uses share one
load). A store that cannot be opened (another daemon holds it, corrupt under
``on_corrupt = "refuse"``, an I/O error) answers its requests with ``unavailable`` and
is tried again on use every :data:`RETRY_FAILED_LOAD_S`, so repairing the file is enough.
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

from sessiond.config import Config
from sessiond.dedup import RequestMemory
from sessiond.loader import StoreQuarantinedError
from sessiond.persistence import StorePersistence
from sessiond.store import SessionStore
from sessiond.storefiles import StoreLockedError
from sessiond_client.errors import ForbiddenError, UnavailableError
from sessiond_client.keys import normalize_agent_id

__all__ = ["StoreRegistry"]

log = logging.getLogger("sessiond.registry")
AGENT_PLACEHOLDER = "{agentId}"
RETRY_FAILED_LOAD_S = 5.0
"""A store that failed to open is tried again on use, at most this often (so a repaired
file is picked up without a restart, and a broken one is not re-read per request)."""


class _Slot:
    __slots__ = ("persistence", "store")

    def __init__(self, store: SessionStore, persistence: StorePersistence) -> None:
        self.store = store
        self.persistence = persistence


class StoreRegistry:
    """Maps agents to loaded stores; implements :class:`sessiond.dispatch.StoreAccess`."""

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
        self.unavailable: dict[str, str] = {}
        self.failed_at: dict[str, float] = {}

    def store_path_for(self, agent_id: str) -> Path:
        path = Path(os.path.normpath(self.template.replace(AGENT_PLACEHOLDER, agent_id)))
        if AGENT_PLACEHOLDER in self.template and not path.is_relative_to(self.root):
            raise ForbiddenError(f"agent {agent_id!r} would leave the state directory")
        return path

    def transcripts_dir_for(self, agent_id: str) -> str:
        return str(self.store_path_for(agent_id).parent)

    def all_loaded(self, agent_ids: Iterable[str]) -> bool:
        by_agent = self.by_agent
        return all(agent_id in by_agent for agent_id in agent_ids)

    def store_for(self, agent_id: str, *, for_write: bool) -> SessionStore:
        slot = self.by_agent.get(agent_id)
        if slot is None:
            reason = self.unavailable.get(agent_id, "store is not loaded")
            raise UnavailableError(f"store of agent {agent_id!r} is unavailable: {reason}")
        refusing = for_write and self.config.persistence.refuse_writes_when_failing
        if refusing and slot.persistence.failing:
            raise UnavailableError(
                f"writes are refused while persistence fails: {slot.persistence.stats.last_error}"
            )
        return slot.store

    async def load_all(self, agent_ids: Iterable[str]) -> None:
        for agent_id in agent_ids:
            if agent_id not in self.by_agent:
                await self.load(agent_id)

    async def load(self, agent_id: str) -> None:
        """Load the store of ``agent_id`` (once; concurrent callers share the load)."""
        if agent_id in self.by_agent:
            return
        failed_at = self.failed_at.get(agent_id)
        if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_LOAD_S:
            reason = self.unavailable[agent_id]
            raise UnavailableError(f"store of agent {agent_id!r} is unavailable: {reason}")
        path = self.store_path_for(agent_id)
        slot = self.by_path.get(path)
        if slot is None:
            task = self.loading.get(path)
            if task is None:
                task = asyncio.get_running_loop().create_task(self._open(agent_id, path))
                self.loading[path] = task
            try:
                slot = await asyncio.shield(task)
            except (OSError, StoreQuarantinedError) as error:
                self.unavailable[agent_id] = str(error)
                self.failed_at[agent_id] = time.monotonic()
                raise UnavailableError(
                    f"store of agent {agent_id!r} is unavailable: {error}"
                ) from error
            finally:
                self.loading.pop(path, None)
        self.unavailable.pop(agent_id, None)
        self.failed_at.pop(agent_id, None)
        self.by_agent[agent_id] = slot

    async def _open(self, agent_id: str, path: Path) -> _Slot:
        persistence = StorePersistence(path, self.config.persistence)
        entries = await persistence.open()
        limits = self.config.limits
        requests = RequestMemory(
            max_entries=limits.max_remembered_requests,
            ttl_s=limits.remember_requests_s,
            clock_s=time.monotonic,
        )
        for token, write in persistence.replayed_tokens.items():
            requests.remember(token, write)
        store = SessionStore(
            agent_id,
            entries,
            clock_ms=self.clock_ms,
            new_session_id=self.new_session_id,
            on_change=persistence.record_change,
            max_entry_bytes=limits.max_entry_bytes,
            requests=requests,
        )
        persistence.start(live_tokens=requests.live)
        slot = _Slot(store, persistence)
        self.by_path[path] = slot
        log.info("loaded store %s (%d entries)", path, len(store))
        return slot

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

    async def preload(self) -> None:
        """Load every store found on disk; a store another daemon holds is fatal."""
        for agent_id in self.agents_on_disk():
            try:
                await self.load(agent_id)
            except UnavailableError as error:
                if isinstance(error.__cause__, StoreLockedError):
                    raise error.__cause__ from None
                log.error("store of agent %s: %s", agent_id, self.unavailable[agent_id])

    def persistences(self, agent_id: str | None = None) -> list[StorePersistence]:
        if agent_id is None:
            return [slot.persistence for slot in self.by_path.values()]
        slot = self.by_agent.get(normalize_agent_id(agent_id))
        return [] if slot is None else [slot.persistence]

    def append_journals(self) -> None:
        """Push every store's pending journal records to the kernel (before replying)."""
        for slot in self.by_path.values():
            if slot.persistence.journal.pending:
                slot.persistence.append_pending()

    async def wait_durable(self, agent_ids: Iterable[str]) -> None:
        for agent_id in agent_ids:
            await self.by_agent[agent_id].persistence.wait_durable()

    async def flush(self, agent_id: str | None) -> None:
        await asyncio.gather(*(p.flush() for p in self.persistences(agent_id)))

    def stats(self) -> dict[str, Any]:
        stores = {
            agent_id: slot.persistence.snapshot_stats(len(slot.store))
            for agent_id, slot in self.by_agent.items()
        }
        return {"stores": stores, "unavailable_stores": dict(self.unavailable)}

    async def close(self) -> bool:
        """Final flush of every store; True if all of them were written."""
        results = await asyncio.gather(
            *(slot.persistence.close() for slot in self.by_path.values())
        )
        return all(results)
