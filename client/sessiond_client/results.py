"""Typed results the clients return. Pure: no I/O.

Each result keeps the entry exactly as stored (``data``: the JSON object with camelCase
names, unknown fields included) and offers the typed view (``entry``: a
:class:`~sessiond_client.entry.SessionEntry`) built on first access, so a caller that only
forwards data never pays for the conversion.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sessiond_client.entry import SessionEntry

__all__ = ["Resolution", "ServerInfo", "Session", "SessionPage", "WatchEvent"]


class Session:
    """One stored entry: its key, the stored object (``data``: the raw JSON object, unknown
    fields included; with ``fields=`` only those), its revision (for ``if_revision``),
    and for the result of a write the store's ``seq`` after it (None for reads)."""

    __slots__ = ("_entry", "data", "key", "revision", "seq")

    def __init__(self, key: str, data: Any, revision: str, seq: int | None = None) -> None:
        self.key = key
        self.data = data
        self.revision = revision
        self.seq = seq
        self._entry: SessionEntry | None = None

    @property
    def entry(self) -> SessionEntry:
        """Typed view of ``data`` (fields of the wrong type land in ``entry.extra``)."""
        if self._entry is None:
            data = self.data if isinstance(self.data, dict) else {}
            self._entry = SessionEntry.from_dict(data)
        return self._entry

    @property
    def session_id(self) -> str | None:
        value = self.data.get("sessionId") if isinstance(self.data, dict) else None
        return value if isinstance(value, str) else None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Session):
            return NotImplemented
        return (self.key, self.data, self.revision) == (other.key, other.data, other.revision)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Session(key={self.key!r}, revision={self.revision!r}, data={self.data!r})"


class SessionPage(msgspec.Struct, frozen=True):
    """One page of ``list``: newest first; pass ``cursor`` back for the next page (None:
    this was the last). ``seq``: the store's sequence number the page reflects (watch
    from it to see every later change)."""

    items: list[Session]
    cursor: str | None
    seq: int = 0


class Resolution(msgspec.Struct, frozen=True):
    """What ``resolve`` decided for a message: which session, and whether it is new."""

    session_key: str
    session_id: str
    is_new: bool
    reset_triggered: bool
    body_stripped: str | None
    session: Session

    @property
    def seq(self) -> int | None:
        return self.session.seq

    @property
    def entry(self) -> SessionEntry:
        return self.session.entry


class ServerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What ``hello`` says: the protocol spoken, the daemon's version, and its limits."""

    protocol: int
    server: str
    version: str
    max_frame_bytes: int
    max_reply_bytes: int
    max_key_bytes: int
    max_entry_bytes: int
    max_keys_per_request: int
    max_list_limit: int
    max_depth: int
    max_fields: int
    max_inflight_per_connection: int


class WatchEvent(msgspec.Struct, frozen=True):
    """One change a watch delivers: ``type`` is ``put`` (``entry`` holds the stored object,
    as ``Session.data`` does) or ``delete`` (``entry`` is None), or ``progress``: no change,
    the store is at ``seq`` — a position to save and to watch again from."""

    type: str
    seq: int
    key: str | None = None
    entry: Any = None
    revision: str | None = None
