"""``resolve`` on the daemon's in-memory store: one atomic step. Pure: no I/O.

The rules (key, reset trigger, idle expiry, group metadata, the legacy key move) are
:mod:`sessiond_client.resolve`, shared with the client's Redis backend; this module only
applies them to a :class:`~sessiond.store.SessionStore`, inside the daemon's single
writer, so two processes resolving the same new key get the same session id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sessiond.store import SessionStore
from sessiond_client.protocol import ResolveResult
from sessiond_client.resolve import (
    PER_SESSION_FIELDS,
    ResolveOptions,
    detect_reset,
    legacy_key_to_move,
    plan_resolution,
    resolved_entry,
    session_key_for,
    strip_mentions,
    strip_structural_prefixes,
)

__all__ = [
    "PER_SESSION_FIELDS",
    "ResolveOptions",
    "detect_reset",
    "resolve_session",
    "session_key_for",
    "strip_mentions",
    "strip_structural_prefixes",
]


def resolve_session(
    store: SessionStore,
    ctx: Mapping[str, Any],
    options: ResolveOptions,
    *,
    check_key: Callable[[str], str],
    transcripts_dir: str,
    token: str | None = None,
    if_revision: str | None = None,
) -> ResolveResult:
    """Resolve ``ctx`` to its session in ``store``, creating or renewing it.

    ``if_revision``: the session's entry must be at that revision (``conflict``
    otherwise, nothing changed); checked where the entry is before a legacy key moves.
    """
    plan = plan_resolution(store.agent_id, ctx, options, check_key=check_key)
    legacy = legacy_key_to_move(plan, lambda key: store.get(key) is not None)
    if if_revision is not None:
        store.check_revision(legacy or plan.session_key, if_revision)
    if legacy is not None:
        legacy_entry = store.get(legacy)
        assert legacy_entry is not None
        store.set(plan.session_key, legacy_entry, op="resolve")
        store.remove(legacy, op="resolve")
    current = store.get(plan.session_key)
    resolved = resolved_entry(
        plan,
        current.exact_value() if current is not None else None,
        ctx,
        options,
        now_ms=store.clock_ms(),
        new_session_id=store.new_session_id,
        transcripts_dir=transcripts_dir,
    )
    stored = store.store_value(plan.session_key, resolved.entry, token, "resolve")
    return ResolveResult(
        session_key=plan.session_key,
        session_id=resolved.session_id,
        is_new=resolved.is_new,
        reset_triggered=plan.body_stripped is not None,
        body_stripped=plan.body_stripped,
        entry=store.wire_value(plan.session_key, stored),
        revision=stored.revision,
    )
