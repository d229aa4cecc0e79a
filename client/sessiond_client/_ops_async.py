"""Every operation of :class:`~sessiond_client.AsyncClient`, written once. Pure: each method
builds a :class:`~sessiond_client._core.Call` and hands it to ``_call``, which the shell
(and behind it the backend) implements.

``_ops_sync.py`` is generated from this file by ``tools/unasync_ops.py`` (coroutines
become functions, awaits are dropped, lines marked async-only are removed); a test checks
that it is up to date, so the two clients cannot drift apart. Edit this file, then
regenerate.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect  # async-only
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

from sessiond_client import _core
from sessiond_client._core import FLUSH_TIMEOUT_S, AsyncUpdateFn
from sessiond_client._watch import AsyncWatch
from sessiond_client.errors import ConflictError
from sessiond_client.protocol import ImportResult, PruneResult
from sessiond_client.results import Resolution, ServerInfo, Session, SessionPage
from sessiond_client.retry import RetryPolicy

__all__ = ["AsyncOperations"]

Scope = Literal["per-sender", "global"]


class AsyncOperations:
    """The operations; subclasses provide ``_call`` and ``retry``."""

    retry: RetryPolicy

    async def _call(self, call: _core.Call, timeout_s: float | None = None) -> Any:
        raise NotImplementedError

    def _watch(self, call: _core.Call) -> AsyncWatch:
        raise NotImplementedError

    async def hello(self) -> ServerInfo:
        """Protocol version, server name and version, and every limit of the daemon."""
        result: ServerInfo = await self._call(_core.hello_call(None))
        return result

    async def get(
        self, key: str, *, agent: str | None = None, fields: Sequence[str] | None = None
    ) -> Session | None:
        """The entry stored under ``key``, or ``None``. ``fields``: only these top-level
        fields (plus ``sessionId`` and ``updatedAt``); the revision is the whole entry's."""
        result: Session | None = await self._call(_core.get_call(key, agent, fields))
        return result

    async def get_many(
        self, keys: Sequence[str], *, agent: str | None = None, fields: Sequence[str] | None = None
    ) -> dict[str, Session]:
        """The entries of the keys that exist (missing keys are absent from the map)."""
        result: dict[str, Session] = await self._call(_core.get_many_call(keys, agent, fields))
        return result

    async def list(
        self,
        *,
        agent: str | None = None,
        prefix: str | None = None,
        active_minutes: float | None = None,
        label: str | None = None,
        spawned_by: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> SessionPage:
        """One page of entries, newest ``updatedAt`` first; pass ``cursor`` for the next."""
        result: SessionPage = await self._call(
            _core.list_call(
                agent=agent,
                prefix=prefix,
                active_minutes=active_minutes,
                label=label,
                spawned_by=spawned_by,
                limit=limit,
                cursor=cursor,
                fields=fields,
            )
        )
        return result

    async def iter_list(
        self,
        *,
        agent: str | None = None,
        prefix: str | None = None,
        active_minutes: float | None = None,
        label: str | None = None,
        spawned_by: str | None = None,
        page_size: int | None = None,
        fields: Sequence[str] | None = None,
    ) -> AsyncIterator[Session]:
        """Every matching entry, newest first, one page at a time (see :meth:`list`)."""
        cursor: str | None = None
        while True:
            page = await self.list(
                agent=agent,
                prefix=prefix,
                active_minutes=active_minutes,
                label=label,
                spawned_by=spawned_by,
                limit=page_size,
                cursor=cursor,
                fields=fields,
            )
            for session in page.items:
                yield session
            cursor = page.cursor
            if cursor is None:
                return

    async def patch(
        self,
        key: str,
        patch: Mapping[str, Any],
        *,
        agent: str | None = None,
        if_revision: str | None = None,
        if_absent: bool = False,
        durable: bool = False,
    ) -> Session:
        """Merge ``patch`` into the entry (creating it); a ``None`` value deletes a field.
        ``if_absent``: only create (``ConflictError`` if the entry exists)."""
        result: Session = await self._call(
            _core.patch_call(
                key=key,
                patch=patch,
                agent=agent,
                if_revision=if_revision,
                if_absent=if_absent,
                durable=durable,
            )
        )
        return result

    async def update(
        self,
        key: str,
        patch: Mapping[str, Any],
        *,
        agent: str | None = None,
        if_revision: str | None = None,
        durable: bool = False,
    ) -> Session | None:
        """Merge ``patch`` only if the entry exists; ``None`` if it does not."""
        result: Session | None = await self._call(
            _core.update_call(
                key=key, patch=patch, agent=agent, if_revision=if_revision, durable=durable
            )
        )
        return result

    async def replace(
        self,
        key: str,
        entry: Mapping[str, Any],
        *,
        agent: str | None = None,
        if_revision: str | None = None,
        if_absent: bool = False,
        durable: bool = False,
    ) -> Session:
        """Store ``entry`` exactly as given (``sessionId`` required)."""
        result: Session = await self._call(
            _core.replace_call(
                key=key,
                entry=entry,
                agent=agent,
                if_revision=if_revision,
                if_absent=if_absent,
                durable=durable,
            )
        )
        return result

    async def update_last_route(
        self,
        key: str,
        *,
        provider: str | None = None,
        to: str | None = None,
        account_id: str | None = None,
        touch: bool = False,
        agent: str | None = None,
        if_revision: str | None = None,
        durable: bool = False,
    ) -> Session:
        """Record the last delivery route; ``updatedAt`` moves only if ``touch``."""
        result: Session = await self._call(
            _core.update_last_route_call(
                key=key,
                provider=provider,
                to=to,
                account_id=account_id,
                touch=touch,
                agent=agent,
                if_revision=if_revision,
                durable=durable,
            )
        )
        return result

    async def delete(
        self,
        key: str,
        *,
        agent: str | None = None,
        if_revision: str | None = None,
        durable: bool = False,
    ) -> bool:
        """Remove the entry; ``True`` if it existed."""
        result: bool = await self._call(
            _core.delete_call(key=key, agent=agent, if_revision=if_revision, durable=durable)
        )
        return result

    async def resolve(
        self,
        ctx: Mapping[str, Any],
        *,
        agent: str | None = None,
        authorized: bool = True,
        scope: Scope | None = None,
        main_key: str | None = None,
        idle_minutes: float | None = None,
        reset_triggers: Sequence[str] | None = None,
        if_revision: str | None = None,
        durable: bool = False,
    ) -> Resolution:
        """Map a message context to its session, creating or renewing it atomically."""
        result: Resolution = await self._call(
            _core.resolve_call(
                ctx=ctx,
                agent=agent,
                authorized=authorized,
                scope=scope,
                main_key=main_key,
                idle_minutes=idle_minutes,
                reset_triggers=reset_triggers,
                if_revision=if_revision,
                durable=durable,
            )
        )
        return result

    async def flush(self, *, agent: str | None = None) -> bool:
        """Return once everything accepted so far is written to the store file."""
        result: bool = await self._call(_core.flush_call(agent), timeout_s=FLUSH_TIMEOUT_S)
        return result

    async def stats(self, *, agent: str | None = None) -> dict[str, Any]:
        """The daemon's counters (per op, connections, stores, flushes, uptime)."""
        result: dict[str, Any] = await self._call(_core.stats_call(agent))
        return result

    def watch(
        self,
        prefix: str = "",
        *,
        agent: str | None = None,
        since: int | None = None,
        fields: Sequence[str] | None = None,
    ) -> AsyncWatch:
        """Changes under ``prefix`` in one store (``agent``, default main), as a context
        manager that iterates :class:`WatchEvent` (``put``, ``delete``, ``progress``).

        ``since``: deliver every change with a higher seq first (a write's ``seq``, a
        list's ``seq``, or a saved ``position``), then live ones; None: from now. Raises
        :class:`CompactedError` (with ``oldest_seq``) when the daemon no longer keeps
        changes that old: list, then watch from the list's seq. After a reconnect the
        watch resumes on its own from the last event it delivered.
        """
        return self._watch(_core.watch_call(prefix=prefix, agent=agent, since=since, fields=fields))

    async def prune(self, *, agent: str | None = None, dry_run: bool = False) -> PruneResult:
        """Apply the store's retention rules now (``dry_run``: only say what would go and
        what is kept, and why). Archived to ``sessions.pruned.jsonl`` before deleting."""
        result: PruneResult = await self._call(_core.prune_call(agent=agent, dry_run=dry_run))
        return result

    async def export(
        self, *, agent: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> SessionPage:
        """One page of a consistent copy of a store: the first call (``cursor`` None) takes
        the copy, the returned cursor pages through it (``seq``: the store's at the copy)."""
        result: SessionPage = await self._call(
            _core.export_call(agent=agent, cursor=cursor, limit=limit)
        )
        return result

    async def import_entries(
        self,
        entries: Mapping[str, Mapping[str, Any]],
        *,
        agent: str | None = None,
        import_id: str | None = None,
        commit: bool = False,
    ) -> ImportResult:
        """Stage whole entries for one store (``import_id`` None starts an import); with
        ``commit``, every staged entry is stored in one step, durably, as ``replace``."""
        result: ImportResult = await self._call(
            _core.import_call(agent=agent, entries=entries, import_id=import_id, commit=commit)
        )
        return result

    async def update_with(
        self,
        key: str,
        fn: AsyncUpdateFn,
        *,
        agent: str | None = None,
        durable: bool = False,
        max_attempts: int = 100,
    ) -> Session | None:
        """Read → ``fn(session)`` → ``update(if_revision=...)``, retried on conflict.

        ``fn`` returns a patch, or ``None`` for "no change" (``{}`` still moves
        ``updatedAt``). Returns the updated session, the unchanged one, or ``None`` if the
        key does not exist (the original ``updateSessionStoreEntry`` contract).
        """
        for attempt in range(max_attempts):
            session = await self.get(key, agent=agent)
            if session is None:
                return None
            outcome = fn(session)
            if inspect.isawaitable(outcome):  # async-only
                outcome = await outcome  # async-only
            patch = _core.patch_from_update(outcome)
            if patch is None:
                return session
            with contextlib.suppress(ConflictError):
                return await self.update(
                    key, patch, agent=agent, if_revision=session.revision, durable=durable
                )
            await asyncio.sleep(self.retry.backoff.delay_s(min(attempt, 4)))
        raise ConflictError(f"update_with({key!r}) kept conflicting after {max_attempts} attempts")
