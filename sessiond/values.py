"""The value model, re-exported for the daemon's modules. Pure: no I/O.

The rules live in :mod:`sessiond_client.values`, shared with the client's Redis backend,
so the daemon and the client refuse exactly the same values.
"""

from __future__ import annotations

from sessiond_client.values import MAX_WIRE_INT, MIN_WIRE_INT, check_json_value, wire_safe

__all__ = ["MAX_WIRE_INT", "MIN_WIRE_INT", "check_json_value", "wire_safe"]
