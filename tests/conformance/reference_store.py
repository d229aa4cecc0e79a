"""A reference model of the original's file-store calls over a plain object. Pure: no I/O.

The runner needs it where a deliberate deviation (DESIGN.md §10) means the recorded
outcome cannot be compared as it is: sessiond starts a corrupt or array-shaped store
empty, treats ``__proto__``/``constructor``/``toString`` as ordinary keys, and ignores
``.lock`` files, so what the original did there is not what sessiond must do. The model
answers "what would the original have done on a plain object store, without a lock":
clawdbot 2026-01-10 ``updateLastRoute``, ``updateSessionStoreEntry``, ``saveSessionStore``
and ``loadSessionStore`` (which, after a write, sees what ``JSON.stringify`` wrote),
built on the verified port of ``mergeSessionEntry``.

The model is itself checked against every vector no rule touches (see the runner), so
it cannot drift from the recorded behaviour unnoticed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from sessiond_client.jscompat import (
    UNDEFINED,
    is_nullish,
    js_math_max,
    js_number_to_python,
    js_optional_get,
    js_trim,
    js_truthy,
)
from sessiond_client.merge import merge_session_entry

from .fileharness import json_roundtrip

__all__ = ["ReferenceStore"]


def _trimmed(value: object, name: str) -> str | None:
    """``value?.trim()``: None for null/undefined, TypeError for other non-strings."""
    if is_nullish(value):
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name}?.trim is not a function")
    return js_trim(value)


class ReferenceStore:
    """One store file as the original saw it: ``view`` is what a load returns."""

    def __init__(
        self,
        initial: dict[str, object] | None,
        *,
        clock_ms: Callable[[], int],
        new_session_id: Callable[[], str],
    ) -> None:
        self.view: dict[str, object] = dict(initial or {})
        self.written = False
        self.clock_ms = clock_ms
        self.new_session_id = new_session_id

    def _write(self) -> None:
        roundtrip = json_roundtrip(self.view)
        assert isinstance(roundtrip, dict)
        self.view = roundtrip
        self.written = True

    def _merge(self, existing: object, patch: object, now_ms: int) -> dict[str, object]:
        return merge_session_entry(
            existing, patch, now_ms=now_ms, new_session_id=self.new_session_id
        )

    def apply(self, op: Mapping[str, Any]) -> dict[str, object]:
        match op["op"]:
            case "loadSessionStore":
                return {"return": copy.deepcopy(self.view)}
            case "updateLastRoute":
                return {"return": self.update_last_route(op)}
            case "updateSessionStoreEntry":
                return self.update_session_store_entry(op)
            case "saveSessionStore":
                saved = json_roundtrip(op.get("store"))
                assert isinstance(saved, dict)
                self.view = saved
                self.written = True
                return {"return": UNDEFINED}
            case other:
                raise AssertionError(f"unknown sequence op {other!r}")

    def update_last_route(self, op: Mapping[str, Any]) -> object:
        key = str(op["sessionKey"])
        existing = self.view.get(key, UNDEFINED)
        to = _trimmed(op.get("to", UNDEFINED), "to")
        account = _trimmed(op.get("accountId", UNDEFINED), "accountId")
        now_ms = self.clock_ms()
        previous_updated_at = js_optional_get(existing, "updatedAt")
        patch = {
            "updatedAt": js_number_to_python(
                js_math_max(0 if is_nullish(previous_updated_at) else previous_updated_at, now_ms)
            ),
            "lastProvider": op.get("provider", UNDEFINED),
            "lastTo": to if to else UNDEFINED,
            "lastAccountId": account if account else js_optional_get(existing, "lastAccountId"),
        }
        merged = self._merge(existing, patch, now_ms)
        self.view[key] = merged
        self._write()
        return merged

    def update_session_store_entry(self, op: Mapping[str, Any]) -> dict[str, object]:
        key = str(op["sessionKey"])
        existing = self.view.get(key, UNDEFINED)
        if not js_truthy(existing):
            return {"return": None, "updateCalled": False}
        received = copy.deepcopy(existing)
        patch = op.get("patch")
        if not js_truthy(patch):
            return {"return": existing, "updateCalled": True, "received": received}
        merged = self._merge(existing, patch, self.clock_ms())
        self.view[key] = merged
        self._write()
        return {"return": merged, "updateCalled": True, "received": received}
