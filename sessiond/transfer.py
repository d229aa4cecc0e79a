"""Moving whole stores in and out while serving: export views and staged imports. Pure:
no I/O; the clock is injected.

- **Export.** The first ``export`` request of a store takes a copy of its entries (a dict
  copy: entries are immutable, so this is cheap) and its ``seq``; the cursor it returns
  pages through that copy, so the pages together are the store at one moment, whatever
  is written meanwhile. Views unused for :data:`IDLE_S` are dropped; at most
  :data:`MAX_VIEWS` exist at once.
- **Import.** ``import`` requests stage whole entries for one store under an import id;
  nothing is applied until the ``commit`` request, which stores them all in one step (no
  other request runs in between), exactly as given. Staged imports unused for
  :data:`IDLE_S` are dropped; staged bytes are bounded.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec

from sessiond.entries import StoredEntry
from sessiond_client.errors import InvalidRequestError, UnavailableError

__all__ = ["ExportViews", "Imports", "StagedImport"]

IDLE_S: Final = 300.0
MAX_VIEWS: Final = 32


class _View(msgspec.Struct):
    agent_id: str
    items: list[tuple[str, StoredEntry]]
    seq: int
    used_at: float


class ExportViews:
    """Frozen copies of stores being exported, by view id."""

    def __init__(self, clock_s: Callable[[], float]) -> None:
        self.clock_s = clock_s
        self.views: dict[str, _View] = {}

    def start(self, agent_id: str, entries: Mapping[str, StoredEntry], seq: int) -> str:
        """Copy a store's entries (those that are objects: a legacy file may hold other
        values, which are not sessions and cannot be imported); the first page's cursor."""
        self._expire()
        if len(self.views) >= MAX_VIEWS:
            raise UnavailableError(
                f"{MAX_VIEWS} exports are in progress; try again when one has finished"
            )
        view_id = secrets.token_hex(8)
        items = [(key, entry) for key, entry in entries.items() if entry.is_object]
        self.views[view_id] = _View(agent_id, items, seq, self.clock_s())
        return f"{view_id}:0"

    def page(
        self, cursor: str, agent_id: str, limit: int
    ) -> tuple[list[tuple[str, StoredEntry]], int]:
        """Up to ``limit`` items after the cursor, and the store's seq at the copy; then
        :meth:`advance` by as many as the reply took."""
        view = self._view(cursor, agent_id)
        view.used_at = self.clock_s()
        offset = int(cursor.partition(":")[2])
        return view.items[offset : offset + limit], view.seq

    def advance(self, cursor: str, taken: int) -> str | None:
        """The cursor after ``taken`` more items (None at the end: the view is dropped)."""
        view_id, _, offset_text = cursor.partition(":")
        end = int(offset_text) + taken
        if end >= len(self.views[view_id].items):
            del self.views[view_id]
            return None
        return f"{view_id}:{end}"

    def _view(self, cursor: str, agent_id: str) -> _View:
        view_id, _, offset_text = cursor.partition(":")
        view = self.views.get(view_id)
        if view is None or view.agent_id != agent_id or not offset_text.isdigit():
            raise InvalidRequestError(
                "unknown or expired export cursor: start the export again (cursor null)"
            )
        return view

    def _expire(self) -> None:
        horizon = self.clock_s() - IDLE_S
        for view_id in [v for v, view in self.views.items() if view.used_at < horizon]:
            del self.views[view_id]


class StagedImport(msgspec.Struct):
    agent_id: str
    entries: dict[str, dict[str, Any]]
    size_bytes: int
    used_at: float


class Imports:
    """Entries staged for import, by import id, bounded by ``max_bytes`` in all."""

    def __init__(self, clock_s: Callable[[], float], max_bytes: int) -> None:
        self.clock_s = clock_s
        self.max_bytes = max_bytes
        self.staged: dict[str, StagedImport] = {}

    def stage(
        self, import_id: str | None, agent_id: str, entries: dict[str, dict[str, Any]], size: int
    ) -> tuple[str, StagedImport]:
        self._expire()
        if import_id is None:
            import_id = secrets.token_hex(8)
            self.staged[import_id] = StagedImport(agent_id, {}, 0, self.clock_s())
        staged = self.staged.get(import_id)
        if staged is None or staged.agent_id != agent_id:
            raise InvalidRequestError(f"unknown or expired import {import_id!r}: start again")
        total = sum(item.size_bytes for item in self.staged.values())
        if total + size > self.max_bytes:
            del self.staged[import_id]
            raise InvalidRequestError(
                f"imports may stage at most {self.max_bytes} bytes (limits.max_import_bytes); "
                "this import was dropped"
            )
        staged.entries.update(entries)
        staged.size_bytes += size
        staged.used_at = self.clock_s()
        return import_id, staged

    def take(self, import_id: str) -> StagedImport:
        staged = self.staged.pop(import_id, None)
        if staged is None:
            raise InvalidRequestError(f"unknown or expired import {import_id!r}: start again")
        return staged

    def _expire(self) -> None:
        horizon = self.clock_s() - IDLE_S
        for import_id in [i for i, item in self.staged.items() if item.used_at < horizon]:
            del self.staged[import_id]
