"""Retention: which sessions a store may let go, and why. Pure: no I/O (the plan is
carried out by the daemon: archive first, then delete through the normal write path).

Rules, in this order, for each entry:

- *kept* — never pruned: the agent's main session and its global session, keys that
  match a ``protect`` pattern (shell-style, ``fnmatch``), entries changed within
  ``min_idle_minutes`` (even when the store is over its cap), and entries without a
  numeric ``updatedAt`` (their activity cannot be judged);
- *age* — inactive for more than ``prune_after_days``: ``now - updatedAt``, the last
  activity (route updates do not move it);
- *cap* — while more than ``max_entries`` remain, the least recently active of the rest
  go, oldest first, one at a time: never more than needed, never a kept entry. If the kept
  entries alone exceed the cap, the store stays above it and the plan says so.

``mode``: ``off`` (nothing), ``warn`` (plan and report, delete nothing: the default),
``enforce`` (delete).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Literal

import msgspec

from sessiond.entries import StoredEntry
from sessiond_client.protocol import PrunedEntry

__all__ = ["RetentionConfig", "RetentionPlan", "plan_retention"]

DAY_MS = 86_400_000
MINUTE_MS = 60_000


class RetentionConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[retention]`` in the config file (and ``[agents.<id>.retention]``)."""

    mode: Literal["off", "warn", "enforce"] = "warn"
    prune_after_days: float | None = None
    max_entries: int | None = None
    protect: list[str] = msgspec.field(default_factory=list)
    min_idle_minutes: float = 60.0
    interval_s: float = 3600.0


class RetentionPlan(msgspec.Struct, kw_only=True):
    """What retention takes and keeps. ``prune`` keeps each entry's revision, so the daemon
    deletes an entry only if nothing changed it since the plan was made."""

    prune: list[tuple[PrunedEntry, str]]
    kept: list[PrunedEntry]
    remaining: int
    over_cap: bool


def _activity_ms(entry: StoredEntry) -> float | None:
    value = entry.updated_at_ms
    return value if value > 0 else None


def plan_retention(
    items: Iterable[tuple[str, StoredEntry]],
    config: RetentionConfig,
    *,
    now_ms: float,
    always_kept: frozenset[str],
) -> RetentionPlan:
    """Decide, for every entry, whether retention prunes it (``age``, ``cap``) or keeps it
    although a rule would have taken it (``main``, ``protected``, ``recent``, ...)."""
    prune: list[tuple[PrunedEntry, str]] = []
    protected: list[tuple[PrunedEntry, bool]] = []  # (entry, too old for the age rule)
    candidates: list[tuple[float, str, StoredEntry]] = []
    total = 0
    max_age_ms = None if config.prune_after_days is None else config.prune_after_days * DAY_MS
    recent_ms = config.min_idle_minutes * MINUTE_MS
    for key, entry in items:
        total += 1
        activity = _activity_ms(entry)
        too_old = max_age_ms is not None and (activity is None or now_ms - activity > max_age_ms)
        reason = (
            "main" if key in always_kept else _kept_reason(key, activity, config, now_ms, recent_ms)
        )
        if reason is not None:
            protected.append((PrunedEntry(key, reason, activity), too_old))
        elif too_old:
            prune.append((PrunedEntry(key, "age", activity), entry.revision))
        else:
            assert activity is not None
            candidates.append((activity, key, entry))
    remaining = total - len(prune)
    over_cap_before = config.max_entries is not None and remaining > config.max_entries
    cap = config.max_entries
    if cap is not None and remaining > cap:
        candidates.sort()
        taken = candidates[: remaining - cap]
        prune.extend((PrunedEntry(key, "cap", activity), e.revision) for activity, key, e in taken)
        remaining -= len(taken)
    over_cap = cap is not None and remaining > cap
    # What was kept and why: protected entries a rule would have taken (too old, or the
    # store is still over its cap once the age rule has run).
    kept = [entry for entry, too_old in protected if too_old or over_cap_before]
    return RetentionPlan(prune=prune, kept=kept, remaining=remaining, over_cap=over_cap)


def _kept_reason(
    key: str, activity: float | None, config: RetentionConfig, now_ms: float, recent_ms: float
) -> str | None:
    if activity is None:
        return "no updatedAt"
    if any(fnmatch.fnmatchcase(key, pattern) for pattern in config.protect):
        return "protected"
    if now_ms - activity < recent_ms:
        return "recent"
    return None
