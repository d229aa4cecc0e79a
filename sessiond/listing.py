"""The ``list`` operation's order, filters and cursor, re-exported for the daemon. Pure.

The rules live in :mod:`sessiond_client.listing`, shared with the client's Redis
backend, so a cursor means the same position on both and pages are cut the same way.
"""

from __future__ import annotations

from sessiond_client.listing import (
    ListFilter,
    SortKey,
    decode_cursor,
    encode_cursor,
    select_page,
)

__all__ = ["ListFilter", "SortKey", "decode_cursor", "encode_cursor", "select_page"]
