"""Unit tests for the pure text helpers of sessiond.resolve (reset-trigger detection).

Pure string functions. ``resolve`` end to end is covered elsewhere; these pin the rules of
DESIGN.md §4 step 2: strip ``[...]`` stamps and ``Name:`` prefixes, lowercase, then an
exact trigger or trigger + space resets and yields the rest as ``body_stripped``.
"""

from __future__ import annotations

import pytest

from sessiond.resolve import detect_reset, strip_structural_prefixes

TRIGGERS = ("/new", "/reset")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", "hello"),
        ("[Jan 1 10:00] hello", "hello"),
        ("[Jan 1 10:00] Peter: hello", "hello"),
        ("[a] [b]   x", "x"),
        ("Peter: hi", "hi"),
        ("  spaced \t out \n text  ", "spaced out text"),
        ("no-colon here", "no-colon here"),
        ("", ""),
    ],
)
def test_strip_structural_prefixes(text: str, expected: str) -> None:
    assert strip_structural_prefixes(text) == expected


def test_the_designs_example() -> None:
    body = "[Jan 1 10:00] Peter: /NEW Hello World"
    assert detect_reset(body, TRIGGERS, authorized=True) == "hello world"


@pytest.mark.parametrize("body", ["/new", "/reset", "  /new  ", "/NEW", "[stamp] Ann: /reset"])
def test_a_bare_trigger_resets_with_an_empty_rest(body: str) -> None:
    assert detect_reset(body, TRIGGERS, authorized=True) == ""


@pytest.mark.parametrize(
    ("body", "rest"),
    [
        ("/new let's start over", "let's start over"),
        ("/reset   Spaced   Out", "spaced out"),
        ("Bob: /new Topic", "topic"),
    ],
)
def test_trigger_plus_space_resets_and_returns_the_rest(body: str, rest: str) -> None:
    assert detect_reset(body, TRIGGERS, authorized=True) == rest


@pytest.mark.parametrize(
    "body", ["/newer", "/new-thing", "say /new", "hello", "", "/ new", "new", "/resetting now"]
)
def test_non_triggers_do_not_reset(body: str) -> None:
    assert detect_reset(body, TRIGGERS, authorized=True) is None


def test_unauthorized_senders_never_reset() -> None:
    assert detect_reset("/new", TRIGGERS, authorized=False) is None
    assert detect_reset("/reset now", TRIGGERS, authorized=False) is None


def test_custom_and_empty_triggers() -> None:
    assert detect_reset("!fresh start", ("", "!fresh"), authorized=True) == "start"
    assert detect_reset("/new", ("!fresh",), authorized=True) is None
    assert detect_reset("anything", ("",), authorized=True) is None
    assert detect_reset("/new", (), authorized=True) is None
