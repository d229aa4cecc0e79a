"""The request limits a store enforces, with the daemon's defaults. Pure: no I/O.

The daemon reads them from its ``[limits]`` table; the client's Redis backend, which
has no configuration file, enforces these defaults, so a request that one backend
refuses the other refuses too. ``hello`` reports them on both.
"""

from __future__ import annotations

import msgspec

from sessiond_client.protocol import DEFAULT_MAX_FRAME_BYTES

__all__ = ["DEFAULT_LIMITS", "RequestLimits"]


class RequestLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds on what one request may carry or ask for (PROTOCOL.md §4, §6)."""

    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_reply_bytes: int = 4 * 1024 * 1024
    max_key_bytes: int = 1024
    max_entry_bytes: int = 1024 * 1024
    max_depth: int = 32
    max_fields: int = 10_000
    max_keys_per_request: int = 1000
    max_list_limit: int = 1000
    max_inflight_per_connection: int = 256
    remember_requests_s: float = 30.0
    watch_history_changes: int = 10_000
    watch_progress_s: float = 5.0
    max_import_bytes: int = 256 * 1024 * 1024


DEFAULT_LIMITS = RequestLimits()
