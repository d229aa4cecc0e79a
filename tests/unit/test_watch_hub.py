"""Unit tests for sessiond.watch.WatchHub: the window of recent changes and its watchers.

Proven against the module docstring (the spec):

- ``since=None`` starts a watcher at the hub's seq; ``since=N`` delivers every change after
  N that the window holds, in order, exactly once, then the live ones with no gap and no
  duplicate, also when live changes arrive while the watcher is still catching up;
- a ``since`` older than the window or newer than the hub's seq raises CompactedError whose
  ``oldest_seq`` is the oldest ``since`` that works (and that one does work);
- the window holds at most ``max_changes`` changes and ``max_bytes`` of entries, dropping the
  oldest first; the hub's ``history`` is a window a watch can start from after a restart;
- a watcher that refuses an offer is behind: ``record`` no longer offers it anything, and
  ``catch_up`` delivers what it missed, in order, once it accepts again; if the window moved
  past its position it is dropped with LaggedError and unsubscribed;
- ``unsubscribe`` stops delivery;
- a hypothesis state machine interleaves records, subscriptions, refusals, catch-ups and
  unsubscriptions and checks that every watcher that was not dropped has received exactly
  the changes after its ``since``, in seq order, and that a drop happened only when the
  window no longer reached back to the watcher's position.

Pure: no I/O, no event loop; watchers are in-memory objects.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sessiond.entries import encode_entry
from sessiond.store import Change
from sessiond.watch import WatchHub
from sessiond_client.errors import CompactedError, LaggedError

BIG = 1 << 40


class FakeWatcher:
    """A watcher that records what it is offered. ``budget`` is how many more offers it
    accepts (None: all); at 0 it refuses, as a connection that stopped reading does."""

    def __init__(self, name: str = "w", budget: int | None = None) -> None:
        self.name = name
        self.position = -12345  # the hub must set it on subscribe
        self.budget = budget
        self.received: list[Change] = []
        self.offers = 0
        self.refused = 0
        self.errors: list[LaggedError] = []

    def offer(self, change: Change) -> bool:
        self.offers += 1
        if self.budget is not None:
            if self.budget <= 0:
                self.refused += 1
                return False
            self.budget -= 1
        self.received.append(change)
        self.position = change.seq
        return True

    def dropped(self, error: LaggedError) -> None:
        self.errors.append(error)

    def accept(self, budget: int | None = None) -> None:
        self.budget = budget

    def refuse(self) -> None:
        self.budget = 0

    @property
    def seqs(self) -> list[int]:
        return [change.seq for change in self.received]

    def __repr__(self) -> str:
        return f"FakeWatcher({self.name}, at {self.position}, got {self.seqs})"


def change(seq: int, *, size: int = 0, delete: bool = False, key: str | None = None) -> Change:
    """Change ``seq``; its entry's JSON is ``size`` bytes or more (``{"p":"..."}``)."""
    key = key if key is not None else f"k{seq}"
    if delete:
        return Change(seq, key, None, f"t{seq}", "delete")
    entry = encode_entry({"p": "x" * max(0, size - 8)})
    return Change(seq, key, entry, f"t{seq}", "patch")


def hub_with(
    seqs: range, *, seq: int = 0, max_changes: int = 1000, max_bytes: int = BIG
) -> tuple[WatchHub, list[Change]]:
    """A hub starting at ``seq`` that recorded a change for each of ``seqs``."""
    hub = WatchHub(seq=seq, max_changes=max_changes, max_bytes=max_bytes)
    changes = [change(s) for s in seqs]
    for c in changes:
        hub.record(c)
    return hub, changes


def watch(hub: WatchHub, since: int | None, watcher: FakeWatcher | None = None) -> FakeWatcher:
    """Subscribe and catch up, as the server does."""
    watcher = watcher if watcher is not None else FakeWatcher()
    hub.subscribe(watcher, since)
    hub.catch_up(watcher)
    return watcher


# -- starting a watch ------------------------------------------------------------------------


class TestSince:
    def test_none_starts_at_the_hub_seq(self) -> None:
        hub, _ = hub_with(range(8, 11), seq=7)
        watcher = FakeWatcher()
        hub.subscribe(watcher, None)
        assert watcher.position == 10
        hub.catch_up(watcher)
        assert watcher.received == []
        live = change(11)
        hub.record(live)
        assert watcher.received == [live]

    def test_none_on_a_fresh_hub(self) -> None:
        hub = WatchHub(seq=42, max_changes=10, max_bytes=BIG)
        watcher = watch(hub, None)
        assert watcher.position == 42
        hub.record(change(43))
        assert watcher.seqs == [43]

    def test_since_n_gets_the_changes_after_n_then_live_ones(self) -> None:
        hub, changes = hub_with(range(1, 11))
        watcher = watch(hub, 4)
        assert watcher.received == changes[4:]  # 5..10, the very objects recorded
        live = [change(11), change(12)]
        for c in live:
            hub.record(c)
        assert watcher.received == changes[4:] + live

    def test_since_the_hub_seq_gets_only_live_ones(self) -> None:
        hub, _ = hub_with(range(1, 6))
        watcher = watch(hub, 5)
        assert watcher.received == []
        hub.record(change(6))
        assert watcher.seqs == [6]

    def test_subscribe_alone_delivers_nothing_until_catch_up(self) -> None:
        hub, _ = hub_with(range(1, 6))
        watcher = FakeWatcher()
        hub.subscribe(watcher, 2)
        assert watcher.position == 2
        assert watcher.offers == 0

    def test_live_changes_before_catch_up_are_neither_lost_nor_doubled(self) -> None:
        hub, _ = hub_with(range(1, 6))
        watcher = FakeWatcher()
        hub.subscribe(watcher, 2)
        hub.record(change(6))  # arrives between subscribe and catch_up
        hub.record(change(7))
        hub.catch_up(watcher)
        hub.record(change(8))
        assert watcher.seqs == [3, 4, 5, 6, 7, 8]

    def test_live_changes_while_catching_up_in_pieces(self) -> None:
        hub, _ = hub_with(range(1, 11))
        watcher = FakeWatcher(budget=3)  # takes three, then stops reading
        hub.subscribe(watcher, 0)
        hub.catch_up(watcher)
        assert watcher.seqs == [1, 2, 3]
        hub.record(change(11))
        hub.record(change(12))
        watcher.accept(budget=4)
        hub.catch_up(watcher)
        assert watcher.seqs == [1, 2, 3, 4, 5, 6, 7]
        hub.record(change(13))  # still behind: not offered
        watcher.accept()
        hub.catch_up(watcher)
        hub.record(change(14))
        assert watcher.seqs == list(range(1, 15))

    def test_repeated_catch_up_delivers_nothing_twice(self) -> None:
        hub, _ = hub_with(range(1, 4))
        watcher = watch(hub, 0)
        hub.catch_up(watcher)
        hub.catch_up(watcher)
        hub.record(change(4))
        hub.catch_up(watcher)
        assert watcher.seqs == [1, 2, 3, 4]

    def test_deletes_are_delivered_too(self) -> None:
        hub = WatchHub(seq=0, max_changes=10, max_bytes=BIG)
        put, gone = change(1, key="a"), change(2, key="a", delete=True)
        hub.record(put)
        watcher = watch(hub, 0)
        hub.record(gone)
        assert watcher.received == [put, gone]
        assert watcher.received[1].entry is None


class TestCompacted:
    def test_since_older_than_the_window(self) -> None:
        hub, _ = hub_with(range(1, 11), max_changes=3)  # holds 8, 9, 10
        assert hub.oldest_since == 7
        with pytest.raises(CompactedError) as caught:
            hub.subscribe(FakeWatcher(), 6)
        assert caught.value.oldest_seq == 7
        assert watch(hub, 7).seqs == [8, 9, 10]  # the oldest since that works

    def test_since_newer_than_the_hub_seq(self) -> None:
        hub, _ = hub_with(range(1, 11), max_changes=3)
        with pytest.raises(CompactedError) as caught:
            hub.subscribe(FakeWatcher(), 11)
        assert caught.value.oldest_seq == 7

    def test_a_refused_watcher_is_not_subscribed(self) -> None:
        hub, _ = hub_with(range(1, 11), max_changes=3)
        watcher = FakeWatcher()
        with pytest.raises(CompactedError):
            hub.subscribe(watcher, 2)
        assert watcher not in hub.watchers
        hub.record(change(11))
        hub.catch_up(watcher)
        assert watcher.offers == 0

    def test_fresh_hub_only_now_works(self) -> None:
        hub = WatchHub(seq=5, max_changes=10, max_bytes=BIG)
        assert hub.oldest_since == 5
        for since in (4, 6, -1):
            with pytest.raises(CompactedError) as caught:
                hub.subscribe(FakeWatcher(), since)
            assert caught.value.oldest_seq == 5
        assert watch(hub, 5).received == []

    def test_window_never_full_keeps_everything_since_the_start(self) -> None:
        hub, _ = hub_with(range(4, 9), seq=3)
        assert hub.oldest_since == 3
        assert watch(hub, 3).seqs == [4, 5, 6, 7, 8]

    def test_the_code_is_compacted(self) -> None:
        hub = WatchHub(seq=0, max_changes=10, max_bytes=BIG)
        with pytest.raises(CompactedError) as caught:
            hub.subscribe(FakeWatcher(), 3)
        assert caught.value.code == "compacted"


class TestWindowBounds:
    def test_max_changes_drops_the_oldest(self) -> None:
        hub, changes = hub_with(range(1, 8), max_changes=4)
        assert list(hub.window) == changes[-4:]
        assert hub.oldest_since == 3

    def test_max_bytes_drops_the_oldest(self) -> None:
        # each entry is 40 bytes of JSON with a 2-character key: two fit in 100, not three
        hub = WatchHub(seq=0, max_changes=1000, max_bytes=100)
        changes = [change(s, size=40) for s in range(1, 6)]
        assert all(len(c.entry.json_bytes) == 40 for c in changes if c.entry is not None)
        for c in changes:
            hub.record(c)
            assert sum(len(w.entry.json_bytes) for w in hub.window if w.entry) <= 100
        assert list(hub.window) == changes[-2:]
        assert hub.oldest_since == 3
        with pytest.raises(CompactedError) as caught:
            hub.subscribe(FakeWatcher(), 2)
        assert caught.value.oldest_seq == 3
        assert watch(hub, 3).seqs == [4, 5]

    def test_the_window_is_always_the_newest_suffix(self) -> None:
        hub = WatchHub(seq=0, max_changes=5, max_bytes=300)
        recorded: list[Change] = []
        sizes = [10, 200, 30, 30, 250, 10, 10, 10, 10, 10, 10, 120, 90]
        for seq, size in enumerate(sizes, start=1):
            c = change(seq, size=size)
            recorded.append(c)
            hub.record(c)
            window = list(hub.window)
            assert len(window) <= 5
            assert sum(len(w.entry.json_bytes) for w in window if w.entry) <= 300
            assert window == recorded[len(recorded) - len(window) :]
            assert hub.oldest_since == seq - len(window)

    def test_a_change_larger_than_the_window_is_still_delivered_live(self) -> None:
        hub, _ = hub_with(range(1, 4), max_bytes=200)
        live = watch(hub, 3)
        slow = watch(hub, 3, FakeWatcher("slow"))
        slow.refuse()
        huge = change(4, size=500)
        hub.record(huge)
        assert live.received == [huge]
        assert list(hub.window) == []
        assert hub.oldest_since == 4
        # the slow watcher missed it and the window cannot give it back
        slow.accept()
        hub.catch_up(slow)
        assert len(slow.errors) == 1
        assert slow.received == []
        # a new watch can start after it
        assert watch(hub, 4).received == []


class TestHistory:
    """``history``: the changes the journal still held at load, so a watch can resume
    after a restart from a seq it saw before (see LoadedStore.history)."""

    def history(self, seqs: range) -> list[Change]:
        return [change(s) for s in seqs]

    def test_history_is_the_window(self) -> None:
        history = self.history(range(1, 6))
        hub = WatchHub(seq=5, max_changes=100, max_bytes=BIG, history=history)
        assert list(hub.window) == history
        assert hub.seq == 5

    def test_a_watch_can_resume_from_the_history(self) -> None:
        """The window holds changes 1..5: every since from 0 works (an earlier version
        kept first_seq at seq + 1 and refused ``since=2`` as compacted)."""
        history = self.history(range(1, 6))
        hub = WatchHub(seq=5, max_changes=100, max_bytes=BIG, history=history)
        assert hub.oldest_since == 0
        watcher = watch(hub, 2)
        assert watcher.received == history[2:]

    def test_oldest_since_never_moves_back(self) -> None:
        """An earlier version reported oldest_since 5 before any change and 1 after one."""
        hub = WatchHub(seq=5, max_changes=5, max_bytes=BIG, history=self.history(range(1, 6)))
        before = hub.oldest_since
        hub.record(change(6))
        assert hub.oldest_since >= before

    @pytest.mark.parametrize(
        ("seq", "seqs", "oldest"),
        [
            (10, [1, 2, 3, 4, 5], 10),  # the history stops short of the hub's seq
            (8, [1, 2, 3, 7, 8], 6),  # changes 4..6 are missing from it
        ],
    )
    def test_a_history_with_a_gap_serves_no_since_before_the_gap(
        self, seq: int, seqs: list[int], oldest: int
    ) -> None:
        """BUG: the window must hold *every* change after ``since`` (the store numbers its
        changes consecutively), but the oldest since is taken from the first history change
        alone: ``since=2`` is accepted and the watcher gets 3, 4, 5 (or 3, 7, 8), a gap."""
        hub = WatchHub(seq=seq, max_changes=100, max_bytes=BIG, history=[change(s) for s in seqs])
        assert hub.oldest_since == oldest
        with pytest.raises(CompactedError) as caught:
            hub.subscribe(FakeWatcher(), 2)
        assert caught.value.oldest_seq == oldest
        assert watch(hub, oldest).seqs == [s for s in seqs if s > oldest]

    def test_history_longer_than_the_window_keeps_the_newest(self) -> None:
        history = self.history(range(1, 11))
        hub = WatchHub(seq=10, max_changes=3, max_bytes=BIG, history=history)
        assert list(hub.window) == history[-3:]
        assert hub.oldest_since == 7
        assert watch(hub, 7).seqs == [8, 9, 10]


# -- behind, lagged, unsubscribed -------------------------------------------------------------


class TestBehind:
    def test_a_refusing_watcher_is_skipped_by_record(self) -> None:
        hub, _ = hub_with(range(1, 3))
        watcher = watch(hub, 2)
        watcher.refuse()
        hub.record(change(3))
        assert watcher.offers == 1  # offered once, refused
        assert watcher in hub.behind
        hub.record(change(4))
        hub.record(change(5))
        assert watcher.offers == 1  # behind: not offered again
        assert watcher.position == 2

    def test_catches_up_in_order_when_it_accepts_again(self) -> None:
        hub, _ = hub_with(range(1, 3), max_changes=10)
        watcher = watch(hub, 2)
        watcher.refuse()
        later = [change(s) for s in range(3, 8)]
        for c in later:
            hub.record(c)
        watcher.accept()
        hub.catch_up(watcher)
        assert watcher.received == later
        assert watcher not in hub.behind
        hub.record(change(8))
        assert watcher.seqs == [3, 4, 5, 6, 7, 8]
        assert watcher.errors == []

    def test_catch_up_while_still_refusing_keeps_it_behind(self) -> None:
        hub, _ = hub_with(range(1, 3))
        watcher = watch(hub, 2)
        watcher.refuse()
        hub.record(change(3))
        hub.catch_up(watcher)
        assert watcher in hub.behind
        assert watcher.received == []
        assert watcher.position == 2

    def test_at_the_edge_of_the_window_it_is_not_lagged(self) -> None:
        hub, _ = hub_with(range(1, 3), max_changes=3)
        watcher = watch(hub, 2)
        watcher.refuse()
        for s in range(3, 6):  # window 3, 4, 5: exactly what it missed
            hub.record(change(s))
        assert hub.oldest_since == watcher.position
        watcher.accept()
        hub.catch_up(watcher)
        assert watcher.errors == []
        assert watcher.seqs == [3, 4, 5]

    def test_dropped_with_lagged_when_the_window_moved_past_it(self) -> None:
        hub, _ = hub_with(range(1, 3), max_changes=3)
        watcher = watch(hub, 2)
        watcher.refuse()
        for s in range(3, 7):  # window 4, 5, 6: change 3 is gone
            hub.record(change(s))
        assert hub.oldest_since == 3 > watcher.position
        watcher.accept()
        hub.catch_up(watcher)
        assert len(watcher.errors) == 1
        assert isinstance(watcher.errors[0], LaggedError)
        assert watcher.errors[0].code == "lagged"
        assert watcher.received == []  # nothing after a gap
        assert watcher not in hub.watchers
        assert watcher not in hub.behind
        hub.record(change(7))
        hub.catch_up(watcher)
        assert watcher.received == []
        assert len(watcher.errors) == 1  # dropped once

    def test_lagged_after_a_partial_catch_up(self) -> None:
        hub, _ = hub_with(range(1, 5), max_changes=4)
        watcher = FakeWatcher(budget=2)
        watch(hub, 0, watcher)
        assert watcher.seqs == [1, 2]
        for s in range(5, 8):  # window 4..7: 3 is gone
            hub.record(change(s))
        watcher.accept()
        hub.catch_up(watcher)
        assert watcher.seqs == [1, 2]
        assert len(watcher.errors) == 1

    def test_a_slow_watcher_does_not_hold_back_the_others(self) -> None:
        hub, _ = hub_with(range(1, 2), max_changes=2)
        slow = watch(hub, 1, FakeWatcher("slow"))
        fast = watch(hub, 1, FakeWatcher("fast"))
        slow.refuse()
        for s in range(2, 10):
            hub.record(change(s))
        assert fast.seqs == list(range(2, 10))
        assert len(hub.window) == 2


class TestUnsubscribe:
    def test_stops_delivery(self) -> None:
        hub, _ = hub_with(range(1, 3))
        watcher = watch(hub, 0)
        hub.record(change(3))
        hub.unsubscribe(watcher)
        hub.record(change(4))
        hub.catch_up(watcher)
        assert watcher.seqs == [1, 2, 3]
        assert watcher not in hub.watchers

    def test_of_a_behind_watcher(self) -> None:
        hub, _ = hub_with(range(1, 3))
        watcher = watch(hub, 2)
        watcher.refuse()
        hub.record(change(3))
        hub.unsubscribe(watcher)
        assert watcher not in hub.behind
        watcher.accept()
        hub.catch_up(watcher)
        hub.record(change(4))
        assert watcher.received == []
        assert watcher.errors == []

    def test_before_catch_up(self) -> None:
        hub, _ = hub_with(range(1, 5))
        watcher = FakeWatcher()
        hub.subscribe(watcher, 0)
        hub.unsubscribe(watcher)
        hub.catch_up(watcher)
        assert watcher.offers == 0

    def test_leaves_the_others(self) -> None:
        hub, _ = hub_with(range(1, 2))
        a, b = watch(hub, 1, FakeWatcher("a")), watch(hub, 1, FakeWatcher("b"))
        hub.unsubscribe(a)
        hub.unsubscribe(a)  # twice: harmless
        hub.record(change(2))
        assert (a.seqs, b.seqs) == ([], [2])


class TestChangesAfter:
    def test_in_order_after_since(self) -> None:
        hub, changes = hub_with(range(1, 8), max_changes=5)
        assert list(hub.changes_after(4)) == changes[4:]
        assert list(hub.changes_after(0)) == changes[2:]
        assert list(hub.changes_after(7)) == []


# -- interleavings ---------------------------------------------------------------------------


class HubMachine(RuleBasedStateMachine):
    """Random interleavings of records, watches, refusals, catch-ups and unsubscriptions.

    The model: ``recorded`` (every change, seqs consecutive from the start); each watcher's
    ``since``; which watchers were dropped (with the oldest since at that moment) or
    unsubscribed."""

    @initialize(
        start=st.integers(min_value=0, max_value=5),
        max_changes=st.integers(min_value=1, max_value=8),
        max_bytes=st.integers(min_value=30, max_value=400),
    )
    def start(self, start: int, max_changes: int, max_bytes: int) -> None:
        self.hub = WatchHub(seq=start, max_changes=max_changes, max_bytes=max_bytes)
        self.start_seq = start
        self.recorded: list[Change] = []
        self.watchers: list[FakeWatcher] = []
        self.since: dict[int, int] = {}
        self.active: set[int] = set()
        self.gone: set[int] = set()  # unsubscribed by the test

    @rule(size=st.integers(min_value=0, max_value=150), delete=st.booleans())
    def record(self, size: int, delete: bool) -> None:
        c = change(self.hub.seq + 1, size=size, delete=delete, key=f"k{size % 4}")
        self.recorded.append(c)
        self.hub.record(c)

    @rule(
        back=st.one_of(st.none(), st.integers(min_value=-2, max_value=12)),
        budget=st.one_of(st.none(), st.integers(min_value=0, max_value=4)),
        catch_up_now=st.booleans(),
    )
    def subscribe(self, back: int | None, budget: int | None, catch_up_now: bool) -> None:
        watcher = FakeWatcher(f"w{len(self.watchers)}", budget)
        since = None if back is None else self.hub.seq - back
        oldest = self.hub.oldest_since
        if since is not None and not oldest <= since <= self.hub.seq:
            with pytest.raises(CompactedError) as caught:
                self.hub.subscribe(watcher, since)
            assert caught.value.oldest_seq == oldest
            return
        self.hub.subscribe(watcher, since)
        index = len(self.watchers)
        self.watchers.append(watcher)
        self.since[index] = self.hub.seq if since is None else since
        self.active.add(index)
        if catch_up_now:
            self.catch_up_one(index)

    def catch_up_one(self, index: int) -> None:
        watcher = self.watchers[index]
        position, oldest = watcher.position, self.hub.oldest_since
        had_errors = len(watcher.errors)
        self.hub.catch_up(watcher)
        if len(watcher.errors) > had_errors:
            assert index in self.active
            assert position < oldest  # dropped only when the window moved past it
            assert watcher not in self.hub.watchers
            self.active.discard(index)
        elif index in self.active:
            assert position >= oldest

    @precondition(lambda self: bool(self.watchers))
    @rule(which=st.integers(min_value=0), budget=st.one_of(st.none(), st.integers(0, 4)))
    def set_budget(self, which: int, budget: int | None) -> None:
        self.watchers[which % len(self.watchers)].accept(budget)

    @precondition(lambda self: bool(self.watchers))
    @rule(which=st.integers(min_value=0))
    def catch_up(self, which: int) -> None:
        self.catch_up_one(which % len(self.watchers))

    @precondition(lambda self: bool(self.watchers))
    @rule(which=st.integers(min_value=0))
    def unsubscribe(self, which: int) -> None:
        index = which % len(self.watchers)
        self.hub.unsubscribe(self.watchers[index])
        if index in self.active:
            self.active.discard(index)
            self.gone.add(index)

    def after(self, since: int) -> list[Change]:
        return [c for c in self.recorded if c.seq > since]

    @invariant()
    def every_watcher_got_a_prefix_of_what_followed_its_since(self) -> None:
        for index, watcher in enumerate(self.watchers):
            expected = self.after(self.since[index])
            assert watcher.received == expected[: len(watcher.received)], watcher
            assert watcher.position == (
                watcher.received[-1].seq if watcher.received else self.since[index]
            )
            assert len(watcher.errors) <= 1
            if index in self.active:
                assert watcher.errors == []
                assert watcher in self.hub.watchers
            else:
                assert watcher not in self.hub.watchers

    @invariant()
    def the_window_is_a_bounded_suffix(self) -> None:
        window = list(self.hub.window)
        assert len(window) <= self.hub.max_changes
        assert sum(len(c.entry.json_bytes) for c in window if c.entry) <= self.hub.max_bytes
        assert window == self.recorded[len(self.recorded) - len(window) :]
        assert self.hub.seq == self.start_seq + len(self.recorded)
        assert self.hub.oldest_since == self.hub.seq - len(window)

    def teardown(self) -> None:
        """Let every watcher read again and catch up: those still watching have then
        received exactly the changes after their since, in order, each once."""
        for index, watcher in enumerate(self.watchers):
            watcher.accept()
            self.catch_up_one(index)
        for index in self.active:
            watcher = self.watchers[index]
            assert watcher.received == self.after(self.since[index]), watcher
            assert watcher not in self.hub.behind
        final = change(self.hub.seq + 1)
        self.recorded.append(final)
        self.hub.record(final)
        for index in self.active:
            assert self.watchers[index].received[-1:] == [final]
        for index in set(range(len(self.watchers))) - self.active:
            assert final not in self.watchers[index].received


HubMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_interleavings = HubMachine.TestCase
