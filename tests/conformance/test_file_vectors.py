"""Runs every file-based reference vector against the daemon's store core and loader.

One test per vector (``loadSessionStore``, ``updateLastRoute``, ``updateSessionStoreEntry``,
``sessionStoreSequence``): :mod:`.fileharness` lays out the vector's files in a fresh
directory and runs its calls on :class:`~sessiond.store.SessionStore` +
:class:`~sessiond.persistence.StorePersistence`; this module compares what happened
with the record: each call's return value (and for ``updateSessionStoreEntry`` whether
the callback ran and what it received), whether it threw, the final ``sessions.json``
as JSON (key order ignored; an untouched file byte for byte), and the directory listing.

Expectations and comparisons live in :mod:`.fileexpect` (one convention: a returned
entry's ``undefined``-valued key counts as absent, as it is in the file and on the wire).

**Deviation rules.** Only DESIGN.md §10's deliberate deviations, plus the wire's
``null`` convention of §2, may change what is expected. Each rule below is a predicate
on the vector (its setup and arguments) and on what the daemon observably did; when
one holds, the expected outcome is what the original would have done on a plain object
store without the hazard: :class:`.reference_store.ReferenceStore` computes it (that
model is checked against every vector no rule touches, so it cannot drift). Vector ids
never appear here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import json5
import pytest

from sessiond_client.jscompat import UNDEFINED

from .fileexpect import (
    Context,
    Expected,
    expected_files,
    model_expectation,
    observed_files,
    recorded_expectation,
    steps_difference,
    store_difference,
)
from .fileharness import DEFAULT_STORE_NAME, operations_of, run_on_daemon, store_path_of
from .vectorfile import (
    CONFORMANCE_FN_PROPERTY,
    FILE_BASED_FNS,
    Vector,
    load_vectors,
)

OBJECT_PROTOTYPE_KEYS: Final = frozenset(
    {
        "__proto__",
        "__defineGetter__",
        "__defineSetter__",
        "__lookupGetter__",
        "__lookupSetter__",
        "constructor",
        "hasOwnProperty",
        "isPrototypeOf",
        "propertyIsEnumerable",
        "toLocaleString",
        "toString",
        "valueOf",
    }
)
CORRUPT_NAME: Final = "<moved aside>"
_JSON5_TRIVIA: Final = re.compile(r"(?:\s|//[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)


# --- the rules ------------------------------------------------------------------------


def store_file_was_unusable(ctx: Context) -> bool:
    """RULE (DESIGN §6/§10): a corrupt or non-object store file is moved aside, never
    overwritten, and the store starts empty (an empty or whitespace-only file is just an
    empty store and is not moved). The original returned ``{}`` for any parse failure and
    then silently overwrote the file (losing every entry), and used an array file as
    the store, dropping every update. Recognised by the daemon having moved the file
    aside; the premise is then checked against the original in :func:`check_premises`
    (it read nothing, or the file is an array)."""
    return any(path in ctx.run.moved_aside for path in _store_paths(ctx))


def names_an_inherited_key(ctx: Context) -> bool:
    """RULE (DESIGN §10): ``__proto__``, ``constructor``, ``toString``... are ordinary
    keys. The original's ``store[key]`` found ``Object.prototype`` members: it passed a
    function to the update callback and created the entry, and an update of
    ``__proto__`` replaced the store's prototype instead of storing anything."""
    return any(op.get("sessionKey") in OBJECT_PROTOTYPE_KEYS for op in operations_of(ctx.vector))


def finds_a_lock_file(ctx: Context) -> bool:
    """RULE (DESIGN §10): sessiond takes no ``.lock`` files and ignores one left in the
    directory. Where the original waited for, timed out on, or evicted a lock, only the
    resulting store contents and return values are compared (with what the original
    does without a lock), and lock files are left out of the directory listing."""
    names = _setup_names(ctx)
    return any(
        f"{path.relative_to(ctx.root).as_posix()}.lock" in names for path in _store_paths(ctx)
    )


def passes_a_js_null(ctx: Context) -> bool:
    """RULE (DESIGN §2, the wire's one "no value"): a ``null`` patch value deletes the
    field, as JS ``undefined`` did. The original also had ``null``, which it wrote to the
    file; a sessiond client cannot send that distinction, so a JS ``null`` in a patch,
    a saved entry's field or a route argument is expected to behave as ``undefined``."""
    return any(_js_nulls(op) for op in operations_of(ctx.vector))


def loads_non_finite_numbers(ctx: Context) -> bool:
    """RULE (JSON has no NaN/Infinity; DESIGN §6 "JSON a human can read"): the
    non-finite numbers of a JSON5 store file are held as ``null`` from the moment the
    store loads, the value the original's next save wrote for them. The original kept
    them in memory until that save, so its first update of such an entry still saw
    ``Infinity`` (and ``Math.max`` kept it). sessiond keeps one consistent view, so the
    expectation is the original's behaviour on the file as its next save would write it."""
    return any(_has_non_finite(_loose_parse(ctx.setup_bytes(path))) for path in _store_paths(ctx))


Rule = Callable[[Context], bool]
RULES: Final[tuple[Rule, ...]] = (
    store_file_was_unusable,
    names_an_inherited_key,
    finds_a_lock_file,
    passes_a_js_null,
    loads_non_finite_numbers,
)


def _loose_parse(data: bytes | None) -> object:
    """The file's value by the json5 package (independent of the daemon's loader)."""
    if data is None:
        return None
    try:
        return json5.loads(data.decode("utf-8", "replace").removeprefix("\ufeff"))
    except (ValueError, RecursionError):
        return None


def _has_non_finite(value: object) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(item) for item in value)
    return False


def _setup_names(ctx: Context) -> set[str]:
    files = (ctx.vector.setup or {}).get("files") or {}
    assert isinstance(files, Mapping)
    return {str(name) for name in files}


def _store_paths(ctx: Context) -> list[Path]:
    paths = [store_path_of(ctx.root, op.get("storePath")) for op in operations_of(ctx.vector)]
    return list(dict.fromkeys(paths))


def _js_nulls(op: Mapping[str, Any]) -> bool:
    if any(op.get(name, UNDEFINED) is None for name in ("provider", "to", "accountId")):
        return True
    patch = op.get("patch")
    if isinstance(patch, Mapping) and any(value is None for value in patch.values()):
        return True
    store = op.get("store")
    return isinstance(store, Mapping) and any(
        isinstance(entry, Mapping) and any(value is None for value in entry.values())
        for entry in store.values()
    )


def _nulls_as_undefined(op: Mapping[str, Any]) -> dict[str, Any]:
    """``op`` with every JS null the wire cannot carry turned into ``undefined``."""
    changed = {
        name: UNDEFINED if value is None and name in ("provider", "to", "accountId") else value
        for name, value in op.items()
    }
    if isinstance(op.get("patch"), Mapping):
        changed["patch"] = {k: UNDEFINED if v is None else v for k, v in op["patch"].items()}
    if isinstance(op.get("store"), Mapping):
        changed["store"] = {
            key: {k: UNDEFINED if v is None else v for k, v in entry.items()}
            if isinstance(entry, Mapping)
            else entry
            for key, entry in op["store"].items()
        }
    return changed


def check_premises(ctx: Context, model_from_empty: Expected) -> None:
    """The corrupt-file rule is only sound if the original could not read the file
    either: it must have behaved as on an empty store, or the file holds an array, or
    the store path is a directory. What was moved aside must be exactly what was there."""
    for path, moved in ctx.run.moved_aside.items():
        data = ctx.setup_bytes(path)
        if data is None:
            assert moved.is_dir(), f"{path} was moved aside but it was neither a file nor a dir"
        else:
            assert moved.read_bytes() == data, f"the bytes moved aside from {path} changed"
    if _is_setup_directory(ctx, ctx.store_path) or _starts_with_array(
        ctx.setup_bytes(ctx.store_path)
    ):
        return
    recorded = recorded_expectation(ctx.vector)
    difference = steps_difference(model_from_empty.steps, recorded.steps)
    assert difference is None, (
        f"the daemon moved a store file aside that the original could read: {difference}"
    )


def _is_setup_directory(ctx: Context, path: Path) -> bool:
    files = (ctx.vector.setup or {}).get("files") or {}
    assert isinstance(files, Mapping)
    spec = files.get(path.relative_to(ctx.root).as_posix())
    return isinstance(spec, Mapping) and bool(spec.get("dir"))


def _starts_with_array(data: bytes | None) -> bool:
    if data is None:
        return False
    text = data.decode("utf-8", "replace").lstrip("\ufeff")
    return text[_JSON5_TRIVIA.match(text).end() :].startswith("[")  # type: ignore[union-attr]


# --- the test ---------------------------------------------------------------------------


def _file_vectors() -> list[object]:
    return [pytest.param(vector, id=vector.test_id) for vector in load_vectors(fns=FILE_BASED_FNS)]


@pytest.mark.parametrize("vector", _file_vectors())
def test_file_vector(
    vector: Vector, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    record_property(CONFORMANCE_FN_PROPERTY, vector.fn)
    root = tmp_path / "store"
    root.mkdir()
    run = run_on_daemon(vector, root)
    ctx = Context(vector, root, run, root / DEFAULT_STORE_NAME)
    applied = [rule.__name__ for rule in RULES if rule(ctx)]
    recorded = recorded_expectation(vector)
    unusable = store_file_was_unusable(ctx)
    if unusable:
        check_premises(ctx, model_expectation(ctx, unusable=True))
    expected = recorded
    if applied:
        expected = model_expectation(ctx, unusable=unusable, transform=_nulls_as_undefined)
        expected.files = expected_files(
            ctx, recorded.files, model_store_written=expected.store_json is not UNDEFINED
        )
    context = f"{vector.test_id} ({vector.note or 'no note'}; rules: {applied or 'none'})"
    steps = steps_difference(run.steps, expected.steps)
    assert steps is None, f"{context}: {steps}"
    store = store_difference(ctx, expected)
    assert store is None, f"{context}: {store}"
    locks_ignored = finds_a_lock_file(ctx)
    observed = observed_files(ctx, drop_locks=locks_ignored)
    wanted = sorted(
        name for name in expected.files if not (locks_ignored and name.endswith(".lock"))
    )
    assert observed == wanted, f"{context}: files {observed} != {wanted}"
    if not applied:
        check_reference_model(ctx, recorded)


def check_reference_model(ctx: Context, recorded: Expected) -> None:
    """Keep the rules' oracle honest: on a vector no rule touches, the reference model
    must reproduce the record. File-system failures (the original's I/O errors, not
    its TypeErrors) are outside the model and skipped."""
    model = model_expectation(ctx, unusable=False)
    pairs = [
        (got, want)
        for got, want in zip(model.steps, recorded.steps, strict=True)
        if "throws" not in want or want.get("errorName") == "TypeError"
    ]
    drift = steps_difference([got for got, _ in pairs], [want for _, want in pairs])
    assert drift is None, f"reference model disagrees with the record: {drift}"
