"""``watch`` over Redis: the agent's change stream read with ``XREAD``. Pure: no I/O.

Every change of an agent's store is appended by the same function call that makes it to
the stream ``{sessiond:A}:w``, with the entry id ``0-<seq>``: a change's ``seq`` *is* its
stream position, so a watch resumes from any ``seq`` (a write's, a list page's, a saved
``position``) with ``XREAD ... STREAMS {sessiond:A}:w 0-<seq>``. The stream keeps about
the last ``watch_history_changes`` (10,000) changes (``XADD MAXLEN ~``).

A :class:`StreamWatch` follows one watch: its first event is ``progress`` at the
starting position (``since``, or the store's ``seq``); a ``since`` older than the stream
keeps (or newer than the store) raises :class:`CompactedError` with ``oldest_seq``, as
the daemon does. Then every change after it, in order, each once (changes outside the
prefix are skipped), and a ``progress`` event whenever ``XREAD`` waited
``watch_progress_s`` for nothing. A gap in the ids (the stream was trimmed past a
watcher that fell that far behind) raises :class:`LaggedError`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sessiond_client.checks import agent_of, check_projection, project
from sessiond_client.errors import CompactedError, LaggedError
from sessiond_client.protocol import WatchEvent, WatchRequest
from sessiond_client.redis_backend.commands import encode_wire
from sessiond_client.redis_backend.layout import AgentKeys, StoredValue

__all__ = ["READ_COUNT", "StreamWatch"]

READ_COUNT = 512
"""Changes one ``XREAD`` returns at most."""


def _seq_of(entry_id: bytes) -> int:
    return int(entry_id.partition(b"-")[2])


class StreamWatch:
    """One watch's position in its agent's stream, and its events."""

    def __init__(self, request: WatchRequest, *, max_fields: int) -> None:
        self.keys = AgentKeys(agent_of(request.agent, None))
        self.prefix = request.prefix
        self.fields = check_projection(request.fields, max_fields=max_fields)
        self.since = request.since
        self.position: int | None = None
        """The seq of the last change delivered or skipped (None before the start)."""

    def start_commands(self) -> list[tuple[Any, ...]]:
        return [("GET", self.keys.seq), ("XRANGE", self.keys.stream, "-", "+", "COUNT", 1)]

    def started(self, replies: list[Any]) -> msgspec.Raw:
        """The first event (``progress`` at the start), from :meth:`start_commands`'
        replies; :class:`CompactedError` when ``since`` is outside the kept history."""
        seq = int(replies[0] or 0)
        first = replies[1]
        oldest_since = _seq_of(first[0][0]) - 1 if first else seq
        since = seq if self.since is None else self.since
        if since < oldest_since or since > seq:
            raise CompactedError(
                f"changes after {since} are not available: the store is at seq {seq} "
                f"and keeps changes after {oldest_since} (list it, then watch from the "
                "seq of the list)",
                oldest_seq=oldest_since,
            )
        self.position = since
        return encode_wire(WatchEvent(type="progress", seq=since))

    def read_command(self, block_ms: int) -> tuple[Any, ...]:
        assert self.position is not None
        return (
            "XREAD",
            "COUNT",
            READ_COUNT,
            "BLOCK",
            block_ms,
            "STREAMS",
            self.keys.stream,
            f"0-{self.position}",
        )

    def events(self, reply: Any) -> list[msgspec.Raw]:
        """The events of one ``XREAD`` reply (``progress`` when it timed out empty)."""
        assert self.position is not None
        if not reply:
            return [encode_wire(WatchEvent(type="progress", seq=self.position))]
        events: list[msgspec.Raw] = []
        for entry_id, fields in reply[0][1]:
            seq = _seq_of(entry_id)
            if seq != self.position + 1:
                raise LaggedError(
                    f"the watch fell behind: it is at seq {self.position} and the stream "
                    f"now starts after {seq - 1}; watch again from your last seq, or list "
                    "and watch from the list's seq"
                )
            self.position = seq
            event = self._event(seq, dict(zip(fields[::2], fields[1::2], strict=True)))
            if event is not None:
                events.append(event)
        return events

    def _event(self, seq: int, fields: dict[bytes, bytes]) -> msgspec.Raw | None:
        key = fields[b"k"].decode("utf-8", "surrogatepass")
        if not key.startswith(self.prefix):
            return None
        if fields[b"t"] == b"d":
            return encode_wire(WatchEvent(type="delete", seq=seq, key=key))
        value = StoredValue(fields[b"v"])
        entry = value.value()
        if self.fields is not None:
            entry = project(entry, self.fields)
        return encode_wire(
            WatchEvent(type="put", seq=seq, key=key, entry=entry, revision=value.revision)
        )
