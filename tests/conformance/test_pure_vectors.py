"""Runs every pure-function reference vector against the Python port, one test each.

Each original function name maps to an adapter that calls the port the way the
original was called: positional JS arguments become the port's parameters, the
recorded environment (``env``: HOME, cwd, state-dir variables) becomes the injected
``env`` / ``home`` / ``cwd``, and results are turned back into the JS shape before the
strict comparison of :func:`vectorfile.first_difference` (key order included).
File-based functions are run by their own module; any other unknown ``fn`` fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import count
from typing import Final, TypedDict

import pytest

from sessiond_client import keys, merge, paths
from sessiond_client.jscompat import UNDEFINED, js_get, js_optional_get

from .vectorfile import (
    CONFORMANCE_FN_PROPERTY,
    FILE_BASED_FNS,
    Vector,
    first_difference,
    load_vectors,
)

RECORDED_HOME: Final = "/home/tester"
RECORDED_CWD: Final = "/tmp/cb-cwd/a/b"
RECORDED_NOW_MS: Final = 1_700_000_000_000

Adapter = Callable[[Vector], object]


class ProcessKwargs(TypedDict):
    env: Mapping[str, object]
    home: str
    cwd: str


class _Process:
    """The environment a vector was recorded in, as the port's keyword arguments."""

    def __init__(self, vector: Vector) -> None:
        recorded = dict(vector.env or {})
        self.home = recorded.pop("HOME", RECORDED_HOME)
        self.cwd = recorded.pop("cwd", RECORDED_CWD)
        self.env: Mapping[str, object] = recorded

    def kwargs(self) -> ProcessKwargs:
        return {"env": self.env, "home": self.home, "cwd": self.cwd}

    def env_argument(self, value: object) -> Mapping[str, object]:
        """An explicit ``env`` argument: omitted means the process env; null throws."""
        if value is UNDEFINED:
            return self.env
        if value is None:
            raise TypeError("Cannot read properties of null (reading 'CLAWDBOT_STATE_DIR')")
        return value if isinstance(value, Mapping) else {}


def _constants(_: Vector) -> object:
    return {
        "DEFAULT_AGENT_ID": keys.DEFAULT_AGENT_ID,
        "DEFAULT_MAIN_KEY": keys.DEFAULT_MAIN_KEY,
        "DEFAULT_RESET_TRIGGER": keys.DEFAULT_RESET_TRIGGER,
        "DEFAULT_RESET_TRIGGERS": list(keys.DEFAULT_RESET_TRIGGERS),
        "DEFAULT_IDLE_MINUTES": keys.DEFAULT_IDLE_MINUTES,
    }


def _resolve_group_session_key(v: Vector) -> object:
    resolved = keys.resolve_group_session_key(v.arg(0))
    return None if resolved is None else resolved.to_js()


def _build_group_display_name(v: Vector) -> object:
    params = v.arg(0)
    return keys.build_group_display_name(
        js_get(params, "key"),
        provider=js_get(params, "provider"),
        subject=js_get(params, "subject"),
        room=js_get(params, "room"),
        space=js_get(params, "space"),
        group_id=js_get(params, "id"),
    )


def _parse_agent_session_key(v: Vector) -> object:
    parsed = keys.parse_agent_session_key(v.arg(0))
    return None if parsed is None else parsed.to_js()


def _build_agent_main_session_key(v: Vector) -> object:
    params = v.arg(0)
    return keys.build_agent_main_session_key(
        agent_id=js_get(params, "agentId"), main_key=js_get(params, "mainKey")
    )


def _resolve_agent_main_session_key(v: Vector) -> object:
    params = v.arg(0)
    return keys.resolve_agent_main_session_key(
        cfg=js_get(params, "cfg"), agent_id=js_get(params, "agentId")
    )


def _resolve_store_path(v: Vector) -> object:
    agent_id = js_optional_get(v.arg(1), "agentId")
    return paths.resolve_store_path(v.arg(0), agent_id=agent_id, **_Process(v).kwargs())


def _resolve_session_transcript_path(v: Vector) -> object:
    return paths.resolve_session_transcript_path(
        v.arg(0),
        v.arg(1),
        v.arg(2),
        **_Process(v).kwargs(),
    )


def _resolve_session_file_path(v: Vector) -> object:
    agent_id = js_optional_get(v.arg(2), "agentId")
    return paths.resolve_session_file_path(
        v.arg(0),
        v.arg(1),
        agent_id=agent_id,
        **_Process(v).kwargs(),
    )


def _resolve_default_session_store_path(v: Vector) -> object:
    return paths.resolve_default_session_store_path(v.arg(0), **_Process(v).kwargs())


def _resolve_session_transcripts_dir(v: Vector) -> object:
    process = _Process(v)
    env = process.env_argument(v.arg(0))
    return paths.resolve_session_transcripts_dir(env, home=process.home, cwd=process.cwd)


def _resolve_session_transcripts_dir_for_agent(v: Vector) -> object:
    process = _Process(v)
    env = process.env_argument(v.arg(1))
    return paths.resolve_session_transcripts_dir_for_agent(
        v.arg(0), env, home=process.home, cwd=process.cwd
    )


def _resolve_state_dir(v: Vector) -> object:
    process = _Process(v)
    env = process.env_argument(v.arg(0))
    return paths.resolve_state_dir(env, home=process.home, cwd=process.cwd)


def _merge_session_entry(v: Vector) -> object:
    counter = count(1)
    return merge.merge_session_entry(
        v.arg(0),
        v.arg(1),
        now_ms=v.now if v.now is not None else RECORDED_NOW_MS,
        new_session_id=lambda: f"uuid-{next(counter)}",
    )


ADAPTERS: Final[dict[str, Adapter]] = {
    "constants": _constants,
    "resolveGroupSessionKey": _resolve_group_session_key,
    "buildGroupDisplayName": _build_group_display_name,
    "deriveSessionKey": lambda v: keys.derive_session_key(v.arg(0), v.arg(1)),
    "resolveSessionKey": lambda v: keys.resolve_session_key(v.arg(0), v.arg(1), v.arg(2)),
    "resolveMainSessionKey": lambda v: keys.resolve_main_session_key(v.arg(0)),
    "resolveAgentMainSessionKey": _resolve_agent_main_session_key,
    "resolveAgentIdFromSessionKey": lambda v: keys.resolve_agent_id_from_session_key(v.arg(0)),
    "parseAgentSessionKey": _parse_agent_session_key,
    "normalizeAgentId": lambda v: keys.normalize_agent_id(v.arg(0)),
    "normalizeMainKey": lambda v: keys.normalize_main_key(v.arg(0)),
    "normalizeE164": lambda v: keys.normalize_e164(v.arg(0)),
    "buildAgentMainSessionKey": _build_agent_main_session_key,
    "resolveStorePath": _resolve_store_path,
    "resolveSessionTranscriptPath": _resolve_session_transcript_path,
    "resolveSessionFilePath": _resolve_session_file_path,
    "resolveDefaultSessionStorePath": _resolve_default_session_store_path,
    "resolveSessionTranscriptsDir": _resolve_session_transcripts_dir,
    "resolveSessionTranscriptsDirForAgent": _resolve_session_transcripts_dir_for_agent,
    "resolveStateDir": _resolve_state_dir,
    "mergeSessionEntry": _merge_session_entry,
}


def _pure_vectors() -> list[object]:
    return [
        pytest.param(vector, id=vector.test_id)
        for vector in load_vectors()
        if vector.fn not in FILE_BASED_FNS
    ]


@pytest.mark.parametrize("vector", _pure_vectors())
def test_pure_vector(vector: Vector, record_property: Callable[[str, object], None]) -> None:
    record_property(CONFORMANCE_FN_PROPERTY, vector.fn)
    adapter = ADAPTERS.get(vector.fn)
    if adapter is None:
        pytest.fail(f"no port registered for original function {vector.fn!r}")
    if vector.throws is not None:
        with pytest.raises(Exception):  # noqa: B017 - the original threw; wording is engine-specific
            result = adapter(vector)
            pytest.fail(f"expected a raise ({vector.throws}), got {result!r}")
        return
    difference = first_difference(adapter(vector), vector.result, check_order=True)
    assert difference is None, f"{vector.test_id} args={vector.args!r}: {difference}"
