"""Unit tests for sessiond.retention: the plan of what a store's retention takes and keeps.

Proven against the module docstring (the spec):

- the age rule measures inactivity, ``now - updatedAt``, and takes only entries idle for
  *more* than ``prune_after_days`` (reason ``age``);
- entries changed within ``min_idle_minutes`` are never pruned, not even over the cap;
- the main and global sessions (``always_kept``) are never pruned, whatever their age;
- keys matching a ``protect`` shell-style pattern are never pruned;
- entries without a numeric ``updatedAt`` are kept (``no updatedAt``);
- the cap takes the least recently active unprotected entries, oldest first, exactly as
  many as needed to reach ``max_entries`` (age prunes count toward it), never a kept entry;
  when the kept entries alone exceed the cap only unprotected entries go and ``over_cap``
  is set (the gateway evicted the main session, or every unprotected entry: neither here);
- ``kept`` lists protected entries a rule would have taken, with their reasons, and only
  those; ``prune`` carries each pruned entry's revision; ``mode`` does not change the plan;
- a hypothesis property over random stores and configs checks the same rules at once.

Pure: no I/O, no clock (``now_ms`` is passed), entries built in memory.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessiond.entries import StoredEntry, encode_entry
from sessiond.retention import RetentionConfig, RetentionPlan, plan_retention
from sessiond_client.protocol import PrunedEntry

NOW = 1_700_000_000_000
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
MAIN = "agent:main:main"
GLOBAL = "global"
ALWAYS = frozenset({MAIN, GLOBAL})
_MISSING = object()


def entry(updated_at: object = _MISSING, **extra: Any) -> StoredEntry:
    """An entry as the store holds it; ``updatedAt`` is left out when not given."""
    value: dict[str, Any] = {"sessionId": "s", **extra}
    if updated_at is not _MISSING:
        value["updatedAt"] = updated_at
    return encode_entry(value)


def idle(ms: float, **extra: Any) -> StoredEntry:
    """An entry last active ``ms`` before NOW."""
    return entry(NOW - ms, **extra)


def plan(
    items: Iterable[tuple[str, StoredEntry]],
    *,
    now_ms: float = NOW,
    always_kept: frozenset[str] = ALWAYS,
    **config: Any,
) -> RetentionPlan:
    return plan_retention(items, RetentionConfig(**config), now_ms=now_ms, always_kept=always_kept)


def pruned(result: RetentionPlan) -> dict[str, str]:
    """key → reason of every pruned entry."""
    return {p.key: p.reason for p, _ in result.prune}


def kept(result: RetentionPlan) -> dict[str, str]:
    """key → reason of every entry reported as kept."""
    return {k.key: k.reason for k in result.kept}


# -- age -----------------------------------------------------------------------------------


class TestAge:
    def test_inactive_beyond_the_limit_is_pruned_for_age(self) -> None:
        store = [("old", idle(31 * DAY)), ("fresh", idle(29 * DAY))]
        result = plan(store, prune_after_days=30)
        assert pruned(result) == {"old": "age"}
        assert result.remaining == 1
        assert result.kept == []
        assert result.over_cap is False

    def test_the_pruned_entry_reports_its_last_activity(self) -> None:
        result = plan([("old", idle(40 * DAY))], prune_after_days=30)
        assert [p for p, _ in result.prune] == [PrunedEntry("old", "age", NOW - 40 * DAY)]

    def test_exactly_at_the_limit_is_not_more_than_the_limit(self) -> None:
        store = [("edge", idle(30 * DAY)), ("past", idle(30 * DAY + 1))]
        assert pruned(plan(store, prune_after_days=30)) == {"past": "age"}

    def test_fractional_days(self) -> None:
        store = [("a", idle(13 * HOUR)), ("b", idle(11 * HOUR))]
        assert pruned(plan(store, prune_after_days=0.5)) == {"a": "age"}

    def test_age_is_now_minus_updated_at_not_creation_or_other_fields(self) -> None:
        store = [
            # created long ago but active yesterday: not idle
            ("active", idle(1 * DAY, createdAt=NOW - 400 * DAY)),
            # other recent timestamps do not count: only updatedAt is activity
            ("idle", idle(60 * DAY, lastRouteAt=NOW - MINUTE, createdAt=NOW - MINUTE)),
        ]
        assert pruned(plan(store, prune_after_days=30)) == {"idle": "age"}

    def test_now_is_the_reference_point(self) -> None:
        store = [("e", entry(NOW - 31 * DAY))]
        assert pruned(plan(store, prune_after_days=30, now_ms=NOW)) == {"e": "age"}
        assert pruned(plan(store, prune_after_days=30, now_ms=NOW - 2 * DAY)) == {}

    def test_entries_from_the_future_are_not_idle(self) -> None:
        store = [("future", entry(NOW + DAY))]
        assert pruned(plan(store, prune_after_days=0, max_entries=0)) == {}

    def test_no_age_rule_prunes_nothing_by_age(self) -> None:
        store = [("ancient", idle(5000 * DAY))]
        result = plan(store)
        assert result.prune == []
        assert result.remaining == 1


# -- what is always kept -------------------------------------------------------------------


class TestRecent:
    def test_recent_entries_survive_the_age_rule(self) -> None:
        # 0.001 days = 86.4 s: the 10-minute-old entry is too old, but recent
        store = [("r", idle(10 * MINUTE)), ("o", idle(2 * HOUR))]
        result = plan(store, prune_after_days=0.001, min_idle_minutes=60)
        assert pruned(result) == {"o": "age"}
        assert kept(result) == {"r": "recent"}

    def test_recent_entries_survive_even_over_the_cap(self) -> None:
        store = [(f"r{i}", idle(i * MINUTE)) for i in range(1, 6)]
        result = plan(store, max_entries=2, min_idle_minutes=30)
        assert result.prune == []
        assert result.remaining == 5
        assert result.over_cap is True
        # the cap would have taken the three least recently active: they are reported
        assert {"r5": "recent", "r4": "recent", "r3": "recent"}.items() <= kept(result).items()

    def test_past_min_idle_an_entry_can_go(self) -> None:
        store = [("r", idle(59 * MINUTE)), ("n", idle(61 * MINUTE))]
        result = plan(store, max_entries=0, min_idle_minutes=60)
        assert pruned(result) == {"n": "cap"}
        assert result.over_cap is True

    def test_min_idle_zero_protects_nothing_in_the_past(self) -> None:
        store = [("a", idle(1)), ("b", idle(2))]
        assert pruned(plan(store, max_entries=0, min_idle_minutes=0)) == {"a": "cap", "b": "cap"}


class TestMainAndGlobal:
    def test_main_and_global_are_never_pruned_however_old(self) -> None:
        store = [(MAIN, idle(900 * DAY)), (GLOBAL, idle(800 * DAY)), ("x", idle(700 * DAY))]
        result = plan(store, prune_after_days=1, max_entries=0)
        assert pruned(result) == {"x": "age"}
        assert kept(result) == {MAIN: "main", GLOBAL: "main"}
        assert result.remaining == 2
        assert result.over_cap is True

    def test_main_is_not_evicted_by_the_cap_even_as_the_oldest_entry(self) -> None:
        store = [(MAIN, idle(100 * DAY)), *((f"u{i}", idle(i * DAY)) for i in range(1, 5))]
        result = plan(store, max_entries=3)
        # 5 entries, cap 3: the two least recently active *unprotected* ones go
        assert pruned(result) == {"u4": "cap", "u3": "cap"}
        assert result.remaining == 3
        assert result.over_cap is False

    def test_always_kept_is_what_the_caller_passes(self) -> None:
        store = [(MAIN, idle(100 * DAY)), ("agent:ops:main", idle(100 * DAY))]
        result = plan(store, prune_after_days=1, always_kept=frozenset({"agent:ops:main"}))
        assert pruned(result) == {MAIN: "age"}
        assert kept(result) == {"agent:ops:main": "main"}

    def test_main_without_updated_at_is_still_main(self) -> None:
        result = plan([(MAIN, entry())], prune_after_days=1)
        assert kept(result) == {MAIN: "main"}


class TestProtect:
    @pytest.mark.parametrize(
        ("pattern", "key", "matches"),
        [
            ("cron:*", "cron:daily", True),
            ("cron:*", "agent:main:cron:daily", False),
            ("*:pinned", "agent:main:pinned", True),
            ("*:pinned", "agent:main:pinned:x", False),
            ("agent:?:x", "agent:a:x", True),
            ("agent:?:x", "agent:ab:x", False),
            ("[ab]*", "beta", True),
            ("[ab]*", "gamma", False),
            ("[!ab]*", "gamma", True),
            ("exact", "exact", True),
            ("exact", "exactly", False),
        ],
    )
    def test_shell_style_patterns(self, pattern: str, key: str, matches: bool) -> None:
        result = plan([(key, idle(100 * DAY))], prune_after_days=1, protect=[pattern])
        if matches:
            assert result.prune == []
            assert kept(result) == {key: "protected"}
        else:
            assert pruned(result) == {key: "age"}
            assert result.kept == []

    def test_any_of_several_patterns_protects(self) -> None:
        store = [("a:1", idle(9 * DAY)), ("b:1", idle(9 * DAY)), ("c:1", idle(9 * DAY))]
        result = plan(store, prune_after_days=1, protect=["a:*", "b:*"])
        assert pruned(result) == {"c:1": "age"}
        assert kept(result) == {"a:1": "protected", "b:1": "protected"}

    def test_protected_entries_are_not_taken_by_the_cap(self) -> None:
        store = [("keep:1", idle(50 * DAY)), ("u1", idle(2 * DAY)), ("u2", idle(3 * DAY))]
        result = plan(store, max_entries=1, protect=["keep:*"])
        assert pruned(result) == {"u1": "cap", "u2": "cap"}
        assert result.remaining == 1
        assert result.over_cap is False


class TestNoUpdatedAt:
    @pytest.mark.parametrize(
        "stored",
        [
            entry(),  # missing
            entry(None),
            entry("2020-01-01T00:00:00Z"),
            entry(True),
            entry([1, 2]),
            entry({"ms": 1}),
            encode_entry("just a string"),
            encode_entry([NOW - 100 * DAY]),
            encode_entry(None),
        ],
    )
    def test_kept_under_every_rule(self, stored: StoredEntry) -> None:
        result = plan([("k", stored)], prune_after_days=0, max_entries=0, min_idle_minutes=0)
        assert result.prune == []
        assert result.kept == [PrunedEntry("k", "no updatedAt", None)]
        assert result.remaining == 1
        assert result.over_cap is True

    def test_they_count_toward_the_cap(self) -> None:
        store = [("n1", entry()), ("n2", entry()), ("u1", idle(2 * DAY)), ("u2", idle(3 * DAY))]
        result = plan(store, max_entries=3)
        assert pruned(result) == {"u2": "cap"}
        assert result.remaining == 3


# -- the cap -------------------------------------------------------------------------------


class TestCap:
    def test_least_recently_active_go_first_in_order(self) -> None:
        ages = {"a": 5, "b": 9, "c": 2, "d": 7, "e": 3}
        store = [(key, idle(days * DAY)) for key, days in ages.items()]
        result = plan(store, max_entries=2)
        # 5 entries, cap 2: the 3 least recently active (b 9d, d 7d, a 5d), oldest first
        assert [(p.key, p.reason) for p, _ in result.prune] == [
            ("b", "cap"),
            ("d", "cap"),
            ("a", "cap"),
        ]
        assert result.remaining == 2
        assert result.over_cap is False

    def test_at_the_cap_nothing_goes(self) -> None:
        store = [(f"u{i}", idle(i * DAY)) for i in range(1, 4)]
        result = plan(store, max_entries=3)
        assert result.prune == []
        assert result.remaining == 3
        assert result.over_cap is False

    def test_one_over_the_cap_takes_exactly_one(self) -> None:
        store = [(f"u{i}", idle(i * DAY)) for i in range(1, 12)]
        result = plan(store, max_entries=10)
        assert pruned(result) == {"u11": "cap"}

    def test_age_prunes_count_toward_the_cap(self) -> None:
        store = [
            *((f"old{i}", idle((40 + i) * DAY)) for i in range(3)),
            *((f"new{i}", idle((1 + i) * DAY)) for i in range(3)),
        ]
        result = plan(store, prune_after_days=30, max_entries=3)
        # the age rule alone brings the store to its cap: the cap takes nothing more
        assert pruned(result) == {"old0": "age", "old1": "age", "old2": "age"}
        assert result.remaining == 3

    def test_age_then_cap(self) -> None:
        store = [
            ("old", idle(40 * DAY)),
            *((f"n{i}", idle(i * DAY)) for i in range(1, 6)),
        ]
        result = plan(store, prune_after_days=30, max_entries=3)
        assert pruned(result) == {"old": "age", "n5": "cap", "n4": "cap"}
        assert result.remaining == 3

    def test_cap_zero_takes_every_unprotected_entry(self) -> None:
        store = [("u1", idle(2 * HOUR)), ("u2", idle(3 * HOUR)), (MAIN, idle(4 * HOUR))]
        result = plan(store, max_entries=0)
        assert pruned(result) == {"u1": "cap", "u2": "cap"}
        assert result.remaining == 1
        assert result.over_cap is True

    def test_no_cap_no_cap_pruning(self) -> None:
        store = [(f"u{i}", idle(i * DAY)) for i in range(1, 50)]
        result = plan(store)
        assert result.prune == []
        assert result.remaining == 49
        assert result.over_cap is False


class TestOverCap:
    """The gateway's bug: over its cap it evicted the main session, or deleted every
    unprotected entry. Only what the cap needs goes, and never a kept entry."""

    def test_slightly_over_the_cap_takes_only_what_is_needed(self) -> None:
        store = [
            (MAIN, idle(300 * DAY)),  # the oldest entry of all
            (GLOBAL, idle(200 * DAY)),
            *((f"u{i}", idle(i * DAY)) for i in range(1, 6)),
        ]
        result = plan(store, max_entries=5)
        # 7 entries, cap 5: two go, the two least recently active unprotected ones
        assert pruned(result) == {"u5": "cap", "u4": "cap"}
        assert MAIN not in pruned(result)
        assert {"u1", "u2", "u3"}.isdisjoint(pruned(result))
        assert result.remaining == 5
        assert result.over_cap is False

    def test_kept_entries_alone_over_the_cap(self) -> None:
        store = [
            (MAIN, idle(300 * DAY)),
            (GLOBAL, idle(200 * DAY)),
            ("pin:a", idle(100 * DAY)),
            ("recent", idle(5 * MINUTE)),
            ("nots", entry()),
            ("u1", idle(1 * DAY)),
            ("u2", idle(2 * DAY)),
        ]
        result = plan(store, max_entries=3, protect=["pin:*"])
        # only the unprotected entries may go; the five kept ones stay, above the cap
        assert pruned(result) == {"u1": "cap", "u2": "cap"}
        assert result.remaining == 5
        assert result.over_cap is True
        # the cap would have needed two more: the least recently active kept ones
        assert {MAIN: "main", GLOBAL: "main"}.items() <= kept(result).items()
        assert set(kept(result)) <= {MAIN, GLOBAL, "pin:a", "recent", "nots"}

    def test_over_cap_with_no_unprotected_entries(self) -> None:
        store = [(MAIN, idle(3 * DAY)), (GLOBAL, idle(3 * DAY))]
        result = plan(store, max_entries=1)
        assert result.prune == []
        assert result.remaining == 2
        assert result.over_cap is True

    def test_kept_entries_exactly_at_the_cap_are_not_over_it(self) -> None:
        store = [(MAIN, idle(3 * DAY)), (GLOBAL, idle(3 * DAY)), ("u", idle(1 * DAY))]
        result = plan(store, max_entries=2)
        assert pruned(result) == {"u": "cap"}
        assert result.over_cap is False


# -- kept, revisions, mode -------------------------------------------------------------------


class TestKept:
    def test_lists_protected_entries_the_age_rule_would_take_with_their_reasons(self) -> None:
        store = [
            (MAIN, idle(90 * DAY)),
            ("pin:1", idle(90 * DAY)),
            ("nots", entry()),
            ("recent", idle(MINUTE)),
            ("pin:fresh", idle(1 * DAY)),
            (GLOBAL, idle(1 * DAY)),
            ("gone", idle(90 * DAY)),
        ]
        result = plan(store, prune_after_days=30, protect=["pin:*"])
        assert kept(result) == {MAIN: "main", "pin:1": "protected", "nots": "no updatedAt"}
        assert pruned(result) == {"gone": "age"}
        by_key = {k.key: k for k in result.kept}
        assert by_key[MAIN].updated_at == NOW - 90 * DAY
        assert by_key["nots"].updated_at is None

    def test_recent_but_too_old_for_the_age_rule(self) -> None:
        result = plan([("r", idle(5 * MINUTE))], prune_after_days=0.001, min_idle_minutes=10)
        assert result.kept == [PrunedEntry("r", "recent", NOW - 5 * MINUTE)]

    def test_empty_when_no_rule_would_take_anything(self) -> None:
        store = [(MAIN, idle(1 * DAY)), ("pin:1", idle(2 * DAY)), ("nots", entry())]
        assert plan(store, protect=["pin:*"]).kept == []
        assert plan(store, protect=["pin:*"], max_entries=3).kept == []
        # (an entry without updatedAt is reported under an age rule: its age is unknown)
        assert plan(store[:2], protect=["pin:*"], prune_after_days=30).kept == []

    def test_not_reported_when_the_age_rule_already_brought_the_store_under_its_cap(
        self,
    ) -> None:
        """BUG: 10 entries, cap 5, age 30 days. The age rule takes the six 40-day-old
        entries; 4 remain, under the cap, so the cap rule takes nothing and no rule would
        have taken the (one-day-old) main session. It must not be reported as kept."""
        store = [
            (MAIN, idle(1 * DAY)),
            *((f"old{i}", idle(40 * DAY)) for i in range(6)),
            *((f"new{i}", idle(2 * DAY)) for i in range(3)),
        ]
        result = plan(store, prune_after_days=30, max_entries=5)
        assert set(pruned(result)) == {f"old{i}" for i in range(6)}
        assert result.remaining == 4
        assert result.over_cap is False
        assert result.kept == []


class TestRevisionsAndMode:
    def test_prune_carries_each_entry_revision(self) -> None:
        store = [(f"u{i}", idle((i + 40) * DAY, note=f"n{i}")) for i in range(4)]
        store.append(("c", idle(2 * DAY, note="cap")))
        store.append(("d", idle(1 * DAY, note="stay")))
        result = plan(store, prune_after_days=30, max_entries=1)
        by_key = dict(store)
        assert pruned(result) == {"u0": "age", "u1": "age", "u2": "age", "u3": "age", "c": "cap"}
        for pruned_entry, revision in result.prune:
            json_bytes = by_key[pruned_entry.key].json_bytes
            assert revision == hashlib.blake2b(json_bytes, digest_size=8).hexdigest()
        assert len({revision for _, revision in result.prune}) == len(result.prune)

    def test_mode_does_not_change_the_plan(self) -> None:
        store = [
            (MAIN, idle(90 * DAY)),
            ("pin:1", idle(90 * DAY)),
            ("nots", entry()),
            *((f"u{i}", idle(i * DAY)) for i in range(1, 40)),
        ]
        plans = [
            plan(store, mode=mode, prune_after_days=30, max_entries=10, protect=["pin:*"])
            for mode in ("off", "warn", "enforce")
        ]
        assert plans[0].prune  # a plan with something in it
        assert plans[0] == plans[1] == plans[2]

    def test_items_may_be_a_one_shot_iterator(self) -> None:
        store = [("a", idle(40 * DAY)), ("b", idle(1 * DAY))]
        result = plan(iter(store), prune_after_days=30)
        assert pruned(result) == {"a": "age"}
        assert result.remaining == 1

    def test_empty_store(self) -> None:
        result = plan([], prune_after_days=1, max_entries=0)
        assert result == RetentionPlan(prune=[], kept=[], remaining=0, over_cap=False)


# -- property ------------------------------------------------------------------------------

PATTERNS = ["pin:*", "*:keep", "agent:?:x", "[ab]*"]
KEYS = st.one_of(
    st.sampled_from([MAIN, GLOBAL, "agent:a:x", "agent:bb:x", "pin:1", "z:keep"]),
    st.from_regex(r"[a-z]{1,3}(:[a-z0-9]{1,3}){0,2}", fullmatch=True),
)
# updatedAt as minutes before NOW (negative: in the future), or not a number at all
ACTIVITY = st.one_of(
    st.integers(min_value=-60, max_value=200 * 24 * 60),
    st.sampled_from([None, "x", _MISSING]),
)


@st.composite
def stores(draw: st.DrawFn) -> list[tuple[str, StoredEntry]]:
    keyed = draw(st.dictionaries(KEYS, ACTIVITY, max_size=30))
    result = []
    for key, minutes in keyed.items():
        if isinstance(minutes, int):
            result.append((key, entry(NOW - minutes * MINUTE, k=key)))
        else:
            result.append((key, entry(minutes, k=key)))
    return result


CONFIGS = st.builds(
    RetentionConfig,
    mode=st.sampled_from(["off", "warn", "enforce"]),
    prune_after_days=st.one_of(st.none(), st.floats(min_value=0, max_value=150)),
    max_entries=st.one_of(st.none(), st.integers(min_value=0, max_value=35)),
    protect=st.lists(st.sampled_from(PATTERNS), max_size=3),
    min_idle_minutes=st.floats(min_value=0, max_value=3 * 24 * 60),
)


def activity_of(stored: StoredEntry) -> float | None:
    """The entry's numeric ``updatedAt``, read from its JSON independently of the module."""
    value = stored.value()
    if not isinstance(value, dict):
        return None
    updated_at = value.get("updatedAt")
    if isinstance(updated_at, bool) or not isinstance(updated_at, int | float):
        return None
    return float(updated_at)


def kept_reasons(key: str, activity: float | None, config: RetentionConfig) -> set[str]:
    """Every reason that keeps ``key`` (empty: a rule may take it)."""
    reasons = set()
    if key in ALWAYS:
        reasons.add("main")
    if activity is None:
        reasons.add("no updatedAt")
    if any(fnmatch.fnmatchcase(key, pattern) for pattern in config.protect):
        reasons.add("protected")
    if activity is not None and NOW - activity < config.min_idle_minutes * MINUTE:
        reasons.add("recent")
    return reasons


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(store=stores(), config=CONFIGS)
def test_plan_properties(store: list[tuple[str, StoredEntry]], config: RetentionConfig) -> None:
    result = plan_retention(store, config, now_ms=NOW, always_kept=ALWAYS)
    activity = {key: activity_of(stored) for key, stored in store}
    why = {key: kept_reasons(key, activity[key], config) for key, _ in store}
    kept_keys = {key for key, _ in store if why[key]}
    unprotected = {key for key, _ in store if key not in kept_keys}
    age_ms = None if config.prune_after_days is None else config.prune_after_days * DAY
    reasons = pruned(result)
    total = len(store)

    # each entry planned at most once, only known keys
    assert len(reasons) == len(result.prune)
    assert set(reasons) <= set(activity)
    # never a main/global, protected, recent or no-updatedAt entry
    assert kept_keys.isdisjoint(reasons)
    # the remaining count is what is left
    assert result.remaining == total - len(result.prune)

    age_pruned = {k for k, r in reasons.items() if r == "age"}
    cap_pruned = {k for k, r in reasons.items() if r == "cap"}
    assert age_pruned | cap_pruned == set(reasons)

    # the age rule: exactly the unprotected entries idle for more than the limit
    too_old = {k for k in unprotected if age_ms is not None and NOW - (activity[k] or 0.0) > age_ms}
    assert age_pruned == too_old

    # the cap: exactly as many as needed, least recently active first
    cap = config.max_entries
    if cap is None:
        assert cap_pruned == set()
    else:
        needed = max(0, total - len(age_pruned) - cap)
        candidates = unprotected - age_pruned
        assert len(cap_pruned) == min(needed, len(candidates))
        survivors = candidates - cap_pruned
        if cap_pruned and survivors:
            assert max(activity[k] or 0.0 for k in cap_pruned) <= min(
                activity[k] or 0.0 for k in survivors
            )
        cap_order = [activity[p.key] or 0.0 for p, _ in result.prune if p.reason == "cap"]
        assert cap_order == sorted(cap_order)
        assert result.over_cap == (result.remaining > cap)
        if age_ms is None:
            assert result.remaining == min(total, max(cap, len(kept_keys)))
    if cap is None:
        assert result.over_cap is False

    # kept: only protected entries, each with the reason that protects it
    for k in result.kept:
        assert k.reason in why[k.key]
        assert k.updated_at == activity[k.key]
    # every protected entry the age rule would have taken is reported
    if age_ms is not None:
        for key in kept_keys:
            if activity[key] is None or NOW - (activity[key] or 0.0) > age_ms:
                assert key in kept(result)

    # revisions are the entries' own
    by_key = dict(store)
    for p, revision in result.prune:
        assert revision == by_key[p.key].revision
