"""The original ``mergeSessionEntry``: how a patch is applied to a stored entry. Pure: no I/O.

Semantics (clawdbot 2026-01-10, ``src/config/sessions.ts``)::

    sessionId = patch.sessionId ?? existing?.sessionId ?? randomUUID()
    updatedAt = Math.max(existing?.updatedAt ?? 0, patch.updatedAt ?? 0, Date.now())
    result    = {...existing, ...patch, sessionId, updatedAt}   # {...patch, ...} if !existing

So ``sessionId: ""`` is kept (``??`` only skips null/undefined), ``updatedAt`` never
goes backwards, and a patch key whose value is :data:`~sessiond_client.jscompat.UNDEFINED`
stays in the result with that value; :func:`strip_undefined` then drops it the way
``JSON.stringify`` does, which is how the original deleted fields.

:func:`merge_session_entry` runs for every write, so the common case (two dicts of
plain JSON values and integer timestamps) takes a fast path; the JS corner cases
(coercing ``Math.max``, spreading strings and arrays, integer-like key order) follow it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from sessiond_client.jscompat import (
    UNDEFINED,
    is_nullish,
    js_code_units,
    js_get,
    js_key_order,
    js_math_max,
    js_number_to_python,
    js_optional_get,
    js_truthy,
)

__all__ = ["merge_session_entry", "strip_undefined"]


def merge_session_entry(
    existing: object,
    patch: object,
    *,
    now_ms: int,
    new_session_id: Callable[[], str],
) -> dict[str, object]:
    """Apply ``patch`` to ``existing`` (None or UNDEFINED when there is no entry).

    ``new_session_id`` is called only when neither side has a ``sessionId``.
    Raises TypeError when ``patch`` is None or UNDEFINED, like the original.
    """
    if type(existing) is dict and type(patch) is dict:
        merged = _merge_dicts(existing, patch, now_ms, new_session_id)
        return js_key_order(merged) if _has_digit_key(merged) else merged
    return _merge_js_values(existing, patch, now_ms, new_session_id)


def _merge_dicts(
    existing: dict[str, object],
    patch: dict[str, object],
    now_ms: int,
    new_session_id: Callable[[], str],
) -> dict[str, object]:
    session_id = patch.get("sessionId")
    if session_id is None or session_id is UNDEFINED:
        session_id = existing.get("sessionId")
        if session_id is None or session_id is UNDEFINED:
            session_id = new_session_id()
    old = existing.get("updatedAt", 0)
    new = patch.get("updatedAt", 0)
    if type(old) is int and type(new) is int:
        updated_at: object = max(old, new, now_ms)
    else:
        updated_at = _max_updated_at(old, new, now_ms)
    merged = {**existing, **patch}
    merged["sessionId"] = session_id
    merged["updatedAt"] = updated_at
    return merged


def _max_updated_at(old: object, new: object, now_ms: int) -> int | float:
    """``Math.max(old ?? 0, new ?? 0, now)`` with JS coercion (``"12"`` → 12, NaN wins)."""
    return js_number_to_python(
        js_math_max(0 if is_nullish(old) else old, 0 if is_nullish(new) else new, now_ms)
    )


def _has_digit_key(obj: dict[str, object]) -> bool:
    # min() runs in C; only a key sorting before ":" can start with a digit
    return bool(obj) and min(obj) < ":" and any(key[:1].isdigit() for key in obj)


def _merge_js_values(
    existing: object,
    patch: object,
    now_ms: int,
    new_session_id: Callable[[], str],
) -> dict[str, object]:
    """The general case: any JSON-shaped ``existing`` and ``patch``, as JS sees them."""
    session_id = js_get(patch, "sessionId")
    if is_nullish(session_id):
        session_id = js_optional_get(existing, "sessionId")
        if is_nullish(session_id):
            session_id = new_session_id()
    updated_at = _max_updated_at(
        js_optional_get(existing, "updatedAt"), js_get(patch, "updatedAt"), now_ms
    )
    merged: dict[str, object] = {}
    if js_truthy(existing):
        merged.update(_spread(existing))
    merged.update(_spread(patch))
    merged["sessionId"] = session_id
    merged["updatedAt"] = updated_at
    return js_key_order(merged)


def _spread(value: object) -> Iterator[tuple[str, object]]:
    """The own enumerable properties ``{...value}`` copies, in JS order."""
    if isinstance(value, Mapping):
        yield from js_key_order(dict(value)).items()
    elif isinstance(value, str):
        yield from ((str(index), unit) for index, unit in enumerate(js_code_units(value)))
    elif isinstance(value, list):
        yield from ((str(index), item) for index, item in enumerate(value))
    # null, undefined, booleans, numbers and functions spread nothing


def strip_undefined(obj: Mapping[str, object]) -> dict[str, object]:
    """``obj`` as ``JSON.stringify`` sees it: UNDEFINED-valued keys dropped, at any depth.

    (In arrays ``JSON.stringify`` writes ``null`` for undefined.)
    """
    return {key: _strip_value(value) for key, value in obj.items() if value is not UNDEFINED}


def _strip_value(value: object) -> object:
    if isinstance(value, dict):
        return strip_undefined(value)
    if isinstance(value, list):
        return [None if item is UNDEFINED else _strip_value(item) for item in value]
    return value
