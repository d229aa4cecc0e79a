"""Store and transcript paths as the original gateway computed them. Pure: no I/O.

A port of clawdbot (2026-01-10) ``resolveStateDir`` (``src/config/paths.ts``) and the
path helpers of ``src/config/sessions.ts``. Nothing here touches the filesystem: the
environment, the home directory and the working directory are keyword parameters
(``env``, ``home``, ``cwd``) that default to ``os.environ``, the process's home
(``$HOME``, else the password database, like Node's ``os.homedir()``) and
``os.getcwd()``.

Rules carried over on purpose, because existing installations depend on them:

- the state dir is ``$CLAWDBOT_STATE_DIR``, else ``$CLAWDIS_STATE_DIR`` (trimmed, ``~``
  expanded, resolved against ``cwd``), else ``<home>/.clawdbot`` (not resolved: a
  relative ``HOME`` stays relative);
- only ``~``, ``~/...`` and ``~\\...`` are expanded, never ``~user``;
- joins normalise ``..`` like Node's ``path.join``, so ``../../etc/passwd`` as a
  session id stays under the home directory, and an absolute session id does not
  restart the path. Callers that must confine paths check the result themselves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Final, TypeAlias

from sessiond_client.jscompat import (
    UNDEFINED,
    is_nullish,
    js_get,
    js_optional_get,
    js_path_join,
    js_path_resolve,
    js_substitution,
    js_to_string,
    js_trim,
    js_truthy,
)
from sessiond_client.keys import DEFAULT_AGENT_ID, normalize_agent_id

__all__ = [
    "AGENT_ID_PLACEHOLDER",
    "STATE_DIR_ENV_VARS",
    "resolve_default_session_store_path",
    "resolve_session_file_path",
    "resolve_session_transcript_path",
    "resolve_session_transcripts_dir",
    "resolve_session_transcripts_dir_for_agent",
    "resolve_state_dir",
    "resolve_store_path",
]

STATE_DIR_ENV_VARS: Final = ("CLAWDBOT_STATE_DIR", "CLAWDIS_STATE_DIR")
"""Environment variables that override the state dir, first non-blank wins."""

AGENT_ID_PLACEHOLDER: Final = "{agentId}"
"""Replaced by the normalised agent id in a configured store path."""

_STATE_DIR_NAME: Final = ".clawdbot"
_STORE_FILE_NAME: Final = "sessions.json"
_HOME_PREFIX = re.compile(r"~(?=$|[\\/])")

Env: TypeAlias = Mapping[str, object]


def _default_home() -> str:
    """Node's ``os.homedir()``: ``$HOME`` if set (even empty), else the passwd entry."""
    home = os.environ.get("HOME")
    if home is not None:
        return home
    import pwd  # only needed when HOME is unset

    return pwd.getpwuid(os.getuid()).pw_dir


def _expand_home(path: str, home: str) -> str:
    """``path.replace(/^~(?=$|[\\\\/])/, home)``, ``$``-patterns in ``home`` included."""
    if _HOME_PREFIX.match(path) is None:
        return path
    return js_substitution(home, "~", "", path[1:]) + path[1:]


def _resolve_user_path(path: str, *, home: str, cwd: str) -> str:
    trimmed = js_trim(path)
    if not trimmed:
        return trimmed
    return js_path_resolve(_expand_home(trimmed, home), cwd=cwd)


def _state_dir_override(env: Env) -> str:
    for name in STATE_DIR_ENV_VARS:
        value = js_get(env, name)
        if is_nullish(value):
            continue
        if not isinstance(value, str):
            raise TypeError(f"env.{name}?.trim is not a function")
        if js_trim(value):
            return js_trim(value)
    return ""


def resolve_state_dir(
    env: Env | None = None, *, home: str | None = None, cwd: str | None = None
) -> str:
    """The gateway's state directory (see the module docstring for the rule)."""
    home_dir = _default_home() if home is None else home
    override = _state_dir_override(os.environ if env is None else env)
    if override:
        return _resolve_user_path(override, home=home_dir, cwd=os.getcwd() if cwd is None else cwd)
    return js_path_join(home_dir, _STATE_DIR_NAME)


def _agent_sessions_dir(
    agent_id: object, env: Env | None, home: str | None, cwd: str | None
) -> str:
    root = resolve_state_dir(env, home=home, cwd=cwd)
    agent = normalize_agent_id(DEFAULT_AGENT_ID if is_nullish(agent_id) else agent_id)
    return js_path_join(root, "agents", agent, "sessions")


def resolve_session_transcripts_dir(
    env: Env | None = None, *, home: str | None = None, cwd: str | None = None
) -> str:
    """``<state dir>/agents/main/sessions``."""
    return _agent_sessions_dir(DEFAULT_AGENT_ID, env, home, cwd)


def resolve_session_transcripts_dir_for_agent(
    agent_id: object = None,
    env: Env | None = None,
    *,
    home: str | None = None,
    cwd: str | None = None,
) -> str:
    """``<state dir>/agents/<normalised agent id>/sessions``."""
    return _agent_sessions_dir(agent_id, env, home, cwd)


def resolve_default_session_store_path(
    agent_id: object = None,
    *,
    env: Env | None = None,
    home: str | None = None,
    cwd: str | None = None,
) -> str:
    """``<state dir>/agents/<normalised agent id>/sessions/sessions.json``."""
    return js_path_join(_agent_sessions_dir(agent_id, env, home, cwd), _STORE_FILE_NAME)


def resolve_session_transcript_path(
    session_id: object,
    agent_id: object = None,
    topic_id: object = UNDEFINED,
    *,
    env: Env | None = None,
    home: str | None = None,
    cwd: str | None = None,
) -> str:
    """``<sessions dir>/<session_id>.jsonl``, or ``<session_id>-topic-<topic_id>.jsonl``.

    Values are formatted like a JS template literal. As in the original, only an
    omitted ``topic_id`` (:data:`UNDEFINED`) means "no topic": ``None`` is written as
    ``-topic-null``.
    """
    session = js_to_string(session_id)
    if topic_id is UNDEFINED:
        file_name = f"{session}.jsonl"
    else:
        file_name = f"{session}-topic-{js_to_string(topic_id)}.jsonl"
    return js_path_join(_agent_sessions_dir(agent_id, env, home, cwd), file_name)


def resolve_session_file_path(
    session_id: object,
    entry: object = None,
    *,
    agent_id: object = None,
    env: Env | None = None,
    home: str | None = None,
    cwd: str | None = None,
) -> str:
    """The entry's ``sessionFile`` (trimmed, used as is) or its default transcript path."""
    candidate = js_optional_get(entry, "sessionFile")
    if not is_nullish(candidate):
        if not isinstance(candidate, str):
            raise TypeError("entry?.sessionFile?.trim is not a function")
        if js_trim(candidate):
            return js_trim(candidate)
    return resolve_session_transcript_path(session_id, agent_id, env=env, home=home, cwd=cwd)


def resolve_store_path(
    store: object = None,
    *,
    agent_id: object = None,
    env: Env | None = None,
    home: str | None = None,
    cwd: str | None = None,
) -> str:
    """The absolute path of a store, from the configured ``store`` path or the default.

    ``{agentId}`` in ``store`` becomes the normalised agent id; a leading ``~`` is the
    home directory; relative paths resolve against ``cwd``.
    """
    agent = normalize_agent_id(DEFAULT_AGENT_ID if is_nullish(agent_id) else agent_id)
    if not js_truthy(store):
        return resolve_default_session_store_path(agent, env=env, home=home, cwd=cwd)
    if not isinstance(store, str):
        raise TypeError("store.includes is not a function")
    expanded = store.replace(AGENT_ID_PLACEHOLDER, agent)
    if expanded.startswith("~"):
        expanded = _expand_home(expanded, _default_home() if home is None else home)
    return js_path_resolve(expanded, cwd=os.getcwd() if cwd is None else cwd)
