"""Expectations for the file-based vectors: what the record says, what the reference
model says, and how the daemon's outcome is compared with either. Test support: reads
the files the daemon left in the vector's directory.

:func:`recorded_expectation` reads a record's ``result``; :func:`model_expectation` asks
:class:`.reference_store.ReferenceStore` (used where a deviation rule applies);
:func:`steps_difference` and :func:`store_difference` compare, with one convention: a
returned entry's ``undefined``-valued key counts as absent, as it does in the file and
on the wire. Directory listings name a file the daemon moved aside ``<moved aside>``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sessiond.snapshot import CorruptStoreError, parse_store
from sessiond_client.jscompat import UNDEFINED
from sessiond_client.merge import strip_undefined

from .fileharness import (
    DaemonRun,
    RecordedClock,
    SessionIds,
    list_files,
    operations_of,
    store_path_of,
)
from .reference_store import ReferenceStore
from .vectorfile import Vector, first_difference

__all__ = [
    "CORRUPT_NAME",
    "Context",
    "Expected",
    "expected_files",
    "model_expectation",
    "observed_files",
    "recorded_expectation",
    "steps_difference",
    "store_difference",
]

CORRUPT_NAME: Final = "<moved aside>"


@dataclass
class Context:
    """A vector, where it ran, and what the daemon did."""

    vector: Vector
    root: Path
    run: DaemonRun
    store_path: Path

    def setup_bytes(self, path: Path) -> bytes | None:
        files = (self.vector.setup or {}).get("files") or {}
        assert isinstance(files, Mapping)
        spec = files.get(path.relative_to(self.root).as_posix())
        if not isinstance(spec, Mapping) or spec.get("dir"):
            return None
        if "base64" in spec:
            return base64.b64decode(str(spec["base64"]))
        return str(spec.get("text", "")).encode("utf-8", "surrogatepass")


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


def model_expectation(
    ctx: Context,
    *,
    unusable: bool,
    transform: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> Expected:
    """What the original does on a plain object store (see :mod:`.reference_store`):
    files the daemon moved aside count as empty when ``unusable``; each call is passed
    through ``transform`` first when given."""
    clock, ids = RecordedClock(ctx.vector.raw.get("now")), SessionIds()
    models: dict[Path, ReferenceStore] = {}
    steps: list[dict[str, object]] = []
    for op in operations_of(ctx.vector):
        path = store_path_of(ctx.root, op.get("storePath"))
        if path not in models:
            initial = _initial_store(ctx, path, unusable=unusable)
            models[path] = ReferenceStore(initial, clock_ms=clock, new_session_id=ids)
        try:
            steps.append(models[path].apply(transform(op) if transform else op))
        except Exception as error:
            steps.append({"return": None, "throws": f"{type(error).__name__}: {error}"})
    return Expected(steps=steps, **_model_store(ctx, models.get(ctx.store_path)))


def _model_store(ctx: Context, model: ReferenceStore | None) -> dict[str, Any]:
    if model is not None and model.written:
        return {"store_json": model.view}
    moved = ctx.store_path in ctx.run.moved_aside
    data = None if moved else ctx.setup_bytes(ctx.store_path)
    return {"store_text": None if data is None else data.decode("utf-8", "surrogatepass")}


def expected_files(ctx: Context, recorded: list[str], model_store_written: bool) -> list[str]:
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


def observed_files(ctx: Context, *, drop_locks: bool) -> list[str]:
    moved = [path.relative_to(ctx.root).as_posix() for path in ctx.run.moved_aside.values()]
    names = {
        CORRUPT_NAME if any(_names_path(name, aside) for aside in moved) else name
        for name in list_files(ctx.root)
    }
    return sorted(name for name in names if not (drop_locks and name.endswith(".lock")))


def _comparable_return(value: object) -> object:
    return strip_undefined(value) if isinstance(value, dict) else value


def steps_difference(
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


def store_difference(ctx: Context, expected: Expected) -> str | None:
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
