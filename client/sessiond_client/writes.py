"""What each write stores: the value a ``patch``, ``update``, ``replace`` or
``update_last_route`` makes of the current entry, and the compare-and-set
preconditions. Pure: no I/O, no store.

The daemon applies these inside its single writer; the client's Redis backend applies
them to an entry it read with its revision and writes the result with a compare-and-set
script (retried if the entry changed meanwhile), so both backends store the same bytes.

Semantics (PROTOCOL.md §6.4-6.6): ``patch`` is the original's ``mergeSessionEntry``
(``sessionId`` kept or minted, ``updatedAt = max(existing, patch, now)``, then
``{...existing, ...patch}``; a ``None`` patch value deletes the field); ``replace``
stores an entry as given (``sessionId`` required, ``updatedAt`` defaulting to now,
``None`` fields dropped); ``update_last_route`` records the route without moving
``updatedAt`` of an existing entry unless ``touch``. A stored value JS finds falsy
(``null``, ``false``, ``0``, ``""``) is no session: ``update`` leaves it alone, and
``if_absent`` does not count it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sessiond_client.errors import ConflictError, InvalidRequestError
from sessiond_client.jscompat import UNDEFINED, Undefined, js_trim
from sessiond_client.merge import merge_session_entry

__all__ = ["check_revision", "patched_value", "replaced_value", "routed_value"]


def check_revision(
    key: str,
    current_revision: str | None,
    *,
    current_is_session: bool,
    if_revision: str | None,
    if_absent: bool = False,
) -> None:
    """:class:`ConflictError` unless the preconditions hold. ``current_revision``: the
    revision of what is stored under ``key`` (None: nothing); ``current_is_session``:
    whether that value is JS-truthy."""
    if if_absent and current_revision is not None and current_is_session:
        raise ConflictError(f"{key!r} already exists (at revision {current_revision})")
    if if_revision is None:
        return
    if current_revision is None:
        raise ConflictError(f"{key!r} does not exist (expected revision {if_revision})")
    if current_revision != if_revision:
        raise ConflictError(f"{key!r} is at revision {current_revision}, not {if_revision}")


def patched_value(
    patch: Mapping[str, Any],
    existing: Any | Undefined,
    *,
    now_ms: int,
    new_session_id: Callable[[], str],
) -> Any:
    """``patch`` (wire form: ``None`` deletes) merged into ``existing`` (the stored value
    exactly as stored; :data:`~sessiond_client.jscompat.UNDEFINED` when there is none)."""
    js_patch = {name: UNDEFINED if value is None else value for name, value in patch.items()}
    merged = merge_session_entry(existing, js_patch, now_ms=now_ms, new_session_id=new_session_id)
    if UNDEFINED not in js_patch.values():
        return merged
    # Only top-level values can be undefined here (the wire's nulls; stored JSON and
    # msgpack hold none), so a shallow pass is enough.
    return {name: value for name, value in merged.items() if value is not UNDEFINED}


def replaced_value(entry: Mapping[str, Any], *, now_ms: int) -> dict[str, Any]:
    """The entry ``replace`` stores: ``None`` fields dropped, ``updatedAt`` defaulting to
    now; ``sessionId`` must be a string."""
    value = {name: field for name, field in entry.items() if field is not None}
    if not isinstance(value.get("sessionId"), str):
        raise InvalidRequestError("replace needs an entry with a string sessionId")
    value.setdefault("updatedAt", now_ms)
    return value


def _require_text_or_none(value: object, name: str) -> None:
    # The original called value?.trim(): anything but a string or nullish threw.
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")


def routed_value(
    existing: Any | Undefined,
    *,
    provider: str | None,
    to: str | None,
    account_id: str | None,
    touch: bool,
    now_ms: int,
    new_session_id: Callable[[], str],
) -> Any:
    """The entry after ``update_last_route``, as the original ``updateLastRoute`` did it.

    A blank ``to`` clears ``lastTo``; a blank ``account_id`` keeps the previous one; a
    missing ``provider`` clears ``lastProvider``. Unlike the original, an existing
    entry's ``updatedAt`` is left alone unless ``touch``: a delivery receipt is not user
    activity, and bumping it kept idle sessions alive forever.
    """
    _require_text_or_none(to, "to")
    _require_text_or_none(account_id, "account_id")
    trimmed_to = js_trim(to) if to is not None else ""
    trimmed_account = js_trim(account_id) if account_id is not None else ""
    route: dict[str, Any] = {"lastProvider": provider, "lastTo": trimmed_to or None}
    if trimmed_account:
        route["lastAccountId"] = trimmed_account
    merged = patched_value(route, existing, now_ms=now_ms, new_session_id=new_session_id)
    if not touch and isinstance(existing, dict) and "updatedAt" in existing:
        merged["updatedAt"] = existing["updatedAt"]
    return merged
