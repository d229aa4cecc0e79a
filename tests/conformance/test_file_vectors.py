"""Runs every file-based reference vector against the daemon's store core and loader.

One test per vector (``loadSessionStore``, ``updateLastRoute``, ``updateSessionStoreEntry``,
``sessionStoreSequence``): :mod:`.fileharness` lays out the vector's files in a fresh
directory and runs its calls on :class:`~sessiond.store.SessionStore` +
:class:`~sessiond.persistence.StorePersistence`; this module compares what happened
with the record: each call's return value (and for ``updateSessionStoreEntry`` whether
the callback ran and what it received), whether it threw, the final ``sessions.json``
as JSON (key order ignored; an untouched file byte for byte), and the directory listing.

Comparison conventions (representation, not behaviour): a returned entry's
``undefined``-valued key counts as absent, as it is in the file and on the wire.

**Deviation rules.** Only DESIGN.md §10's deliberate deviations, plus the wire's
``null`` convention of §2, may change what is expected. Each rule below is a predicate
on the vector (its setup and arguments) and on what the daemon observably did; when
one holds, the expected outcome is what the original would have done on a plain object
store without the hazard: :class:`.reference_store.ReferenceStore` computes it (that
model is checked against every vector no rule touches, so it cannot drift). Vector ids
never appear here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import json5
import pytest

from sessiond.snapshot import CorruptStoreError, parse_store
from sessiond_client.jscompat import UNDEFINED
from sessiond_client.merge import strip_undefined

from .fileharness import (
    DEFAULT_STORE_NAME,
    DaemonRun,
    RecordedClock,
    SessionIds,
    list_files,
    operations_of,
    run_on_daemon,
    store_path_of,
)
from .reference_store import ReferenceStore
from .vectorfile import (
    CONFORMANCE_FN_PROPERTY,
    FILE_BASED_FNS,
    Vector,
    first_difference,
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


@dataclass
class Context:
    """A vector, where it ran, and what the daemon did."""

    vector: Vector
    root: Path
    run: DaemonRun
    store_path: Path
    applied: list[str] = field(default_factory=list)

    def setup_bytes(self, path: Path) -> bytes | None:
        files = (self.vector.setup or {}).get("files") or {}
        assert isinstance(files, Mapping)
        spec = files.get(path.relative_to(self.root).as_posix())
        if not isinstance(spec, Mapping) or spec.get("dir"):
            return None
        if "base64" in spec:
            import base64

            return base64.b64decode(str(spec["base64"]))
        return str(spec.get("text", "")).encode("utf-8", "surrogatepass")


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


# --- expectations -----------------------------------------------------------------------


@dataclass
class Expected:
    steps: list[dict[str, object]]
    store_json: object = UNDEFINED
    """The final store as JSON; UNDEFINED when the file is untouched or absent."""
    store_text: str | None = None
    """The untouched file's text, or None when there is no file."""
    store_is_directory: bool = False
    files: list[str] = field(default_factory=list)


def recorded_expectation(vector: Vector) -> Expected:
    result = vector.result
    assert isinstance(result, dict), f"{vector.test_id}: result must be an object"
    if vector.fn == "sessionStoreSequence":
        steps = [dict(step) for step in result.get("steps") or []]
    else:
        steps = [{k: v for k, v in result.items() if k in _STEP_KEYS}]
    text = result.get("storeText")
    return Expected(
        steps=steps,
        store_json=result.get("storeJson", UNDEFINED),
        store_text=text if isinstance(text, str) else None,
        store_is_directory=bool(result.get("storeIsDirectory")),
        files=[str(name) for name in result.get("files") or []],
    )


_STEP_KEYS: Final = frozenset({"return", "throws", "errorName", "updateCalled", "received"})


def _initial_store(ctx: Context, path: Path, *, unusable: bool) -> dict[str, object]:
    data = ctx.setup_bytes(path)
    if data is None or (unusable and path in ctx.run.moved_aside):
        return {}
    try:
        parsed = parse_store(data)
    except CorruptStoreError:
        return {}
    return {key: entry.exact_value() for key, entry in parsed.entries.items()}


def model_expectation(ctx: Context, *, transform_nulls: bool, unusable: bool) -> Expected:
    """What the original does on a plain object store (see :mod:`.reference_store`)."""
    clock, ids = RecordedClock(ctx.vector.raw.get("now")), SessionIds()
    models: dict[Path, ReferenceStore] = {}
    steps: list[dict[str, object]] = []
    for op in operations_of(ctx.vector):
        path = store_path_of(ctx.root, op.get("storePath"))
        if path not in models:
            initial = _initial_store(ctx, path, unusable=unusable)
            models[path] = ReferenceStore(initial, clock_ms=clock, new_session_id=ids)
        try:
            steps.append(models[path].apply(_nulls_as_undefined(op) if transform_nulls else op))
        except Exception as error:
            steps.append({"return": None, "throws": f"{type(error).__name__}: {error}"})
    return Expected(steps=steps, **_model_store(ctx, models.get(ctx.store_path)))


def _model_store(ctx: Context, model: ReferenceStore | None) -> dict[str, Any]:
    if model is not None and model.written:
        return {"store_json": model.view}
    moved = ctx.store_path in ctx.run.moved_aside
    data = None if moved else ctx.setup_bytes(ctx.store_path)
    return {"store_text": None if data is None else data.decode("utf-8", "surrogatepass")}


def _expected_files(ctx: Context, recorded: list[str], model_store_written: bool) -> list[str]:
    """The recorded listing with the store file's presence and moved-aside copies as the
    rules predict (lock files are left out by the caller when the lock rule applies)."""
    name = ctx.store_path.relative_to(ctx.root).as_posix()
    moved = ctx.store_path in ctx.run.moved_aside
    names = [entry for entry in recorded if not _names_path(entry, name)]
    if model_store_written:
        names.append(name)
    elif not moved:
        names.extend(entry for entry in recorded if _names_path(entry, name))
    if moved:
        names.append(CORRUPT_NAME)
    return sorted(set(names))


def _names_path(entry: str, name: str) -> bool:
    """``entry`` of a listing is ``name`` itself or (for a directory) something in it."""
    return entry == name or entry.startswith(f"{name}/")


def _observed_files(ctx: Context, *, drop_locks: bool) -> list[str]:
    moved = [path.relative_to(ctx.root).as_posix() for path in ctx.run.moved_aside.values()]
    names = {
        CORRUPT_NAME if any(_names_path(name, aside) for aside in moved) else name
        for name in list_files(ctx.root)
    }
    return sorted(name for name in names if not (drop_locks and name.endswith(".lock")))


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
    difference = _steps_difference(model_from_empty.steps, recorded.steps)
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


# --- comparison -------------------------------------------------------------------------


def _comparable_return(value: object) -> object:
    return strip_undefined(value) if isinstance(value, dict) else value


def _steps_difference(
    actual: list[dict[str, object]], expected: list[dict[str, object]]
) -> str | None:
    if len(actual) != len(expected):
        return f"{len(actual)} steps != {len(expected)}"
    for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
        where = f"step {index}"
        if "throws" in want:
            if "throws" not in got:
                return f"{where}: the original threw {want['throws']!r}, the port returned"
            continue
        if "throws" in got:
            return f"{where}: threw {got['throws']!r}"
        found = first_difference(
            _comparable_return(got.get("return")),
            _comparable_return(want.get("return")),
            where=f"{where}/return",
        )
        if found:
            return found
        for name in ("updateCalled", "received"):
            if name in want:
                found = first_difference(
                    got.get(name, UNDEFINED), want[name], where=f"{where}/{name}"
                )
                if found:
                    return found
    return None


def _store_difference(ctx: Context, expected: Expected) -> str | None:
    path = ctx.store_path
    if expected.store_is_directory:
        return None if path.is_dir() else f"{path.name} should be a directory"
    if not path.exists():
        if expected.store_json is UNDEFINED and expected.store_text is None:
            return None
        return f"{path.name} was not written"
    text = path.read_bytes().decode("utf-8", "surrogatepass")
    if expected.store_json is UNDEFINED:
        if expected.store_text is None:
            return f"{path.name} exists but the original left no file"
        return None if text == expected.store_text else f"{path.name} changed: {text!r}"
    try:
        written = json.loads(text)
    except ValueError as error:
        return f"{path.name} is not strict JSON: {error}"
    return first_difference(written, expected.store_json, where=f"/{path.name}")


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
        check_premises(ctx, model_expectation(ctx, transform_nulls=False, unusable=True))
    expected = recorded
    if applied:
        expected = model_expectation(ctx, transform_nulls=True, unusable=unusable)
        expected.files = _expected_files(
            ctx, recorded.files, model_store_written=expected.store_json is not UNDEFINED
        )
    context = f"{vector.test_id} ({vector.note or 'no note'}; rules: {applied or 'none'})"
    steps = _steps_difference(run.steps, expected.steps)
    assert steps is None, f"{context}: {steps}"
    store = _store_difference(ctx, expected)
    assert store is None, f"{context}: {store}"
    observed_files = _observed_files(ctx, drop_locks=finds_a_lock_file(ctx))
    wanted_files = sorted(
        name for name in expected.files if not (finds_a_lock_file(ctx) and name.endswith(".lock"))
    )
    assert observed_files == wanted_files, f"{context}: files {observed_files} != {wanted_files}"
    if not applied:
        check_reference_model(ctx, recorded)


def check_reference_model(ctx: Context, recorded: Expected) -> None:
    """Keep the rules' oracle honest: on a vector no rule touches, the reference model
    must reproduce the record. File-system failures (the original's I/O errors, not
    its TypeErrors) are outside the model and skipped."""
    model = model_expectation(ctx, transform_nulls=False, unusable=False)
    pairs = [
        (got, want)
        for got, want in zip(model.steps, recorded.steps, strict=True)
        if "throws" not in want or want.get("errorName") == "TypeError"
    ]
    drift = _steps_difference([got for got, _ in pairs], [want for _, want in pairs])
    assert drift is None, f"reference model disagrees with the record: {drift}"
