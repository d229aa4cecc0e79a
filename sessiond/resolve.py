"""The ``resolve`` operation: message context → session key → get-or-create its session,
with reset triggers, idle expiry and group metadata. Pure: no I/O.

This is the original's ``resolveSessionKey`` + ``initSessionState`` done as one atomic
step inside the daemon, so two processes resolving the same new key at the same moment
get the same session id. Rules (DESIGN.md §4):

1. The key comes from :func:`sessiond_client.keys.resolve_session_key`; a legacy group key
   (``group:<id>``) present while the new key is absent is moved to the new key.
2. Reset trigger: the body (``RawBody``, else ``Body``) with structural prefixes removed
   (``[...]`` stamps, ``Name:`` line prefixes) and lowercased; an exact trigger or trigger +
   space resets when the sender is ``authorized``, and ``body_stripped`` is the rest of that
   normalized text. Mention stripping of the original needs the gateway's mention patterns,
   which the daemon does not have; it is not done.
3. Fresh = the entry exists and ``now - updatedAt <= idle_minutes`` minutes. Not fresh, or
   reset: a new ``sessionId``, ``systemSent``/``abortedLastRun`` false, per-session settings
   cleared; every other field is kept.
4. Group metadata, ``chatType``, display names, thread labels, and ``sessionFile`` (the
   transcript beside the store: ``<sessionId>.jsonl`` or ``<sessionId>-topic-<id>.jsonl``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec

from sessiond.config import AgentSessionConfig
from sessiond.entries import encode_entry
from sessiond.store import SessionStore
from sessiond_client.jscompat import js_lower, js_to_string, js_trim
from sessiond_client.keys import (
    DEFAULT_IDLE_MINUTES,
    DEFAULT_RESET_TRIGGERS,
    GroupKeyResolution,
    build_group_display_name,
    resolve_group_session_key,
    resolve_session_key,
)
from sessiond_client.protocol import ResolveRequest, ResolveResult

__all__ = ["PER_SESSION_FIELDS", "ResolveOptions", "detect_reset", "resolve_session"]

PER_SESSION_FIELDS = (
    "thinkingLevel",
    "verboseLevel",
    "reasoningLevel",
    "elevatedLevel",
    "responseUsage",
    "providerOverride",
    "modelOverride",
    "authProfileOverride",
    "sendPolicy",
    "queueMode",
    "queueDebounceMs",
    "queueCap",
    "queueDrop",
)
ROOM_PROVIDERS = frozenset({"discord", "slack"})
SAFE_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_JS_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_STAMP = re.compile(r"\[[^\]]+\][" + _JS_SPACE + "]*")
_SPEAKER = re.compile(r"^[ \t]*[A-Za-z0-9+()\-_. ]+:[" + _JS_SPACE + "]*", re.MULTILINE)
_SPACE_RUN = re.compile("[" + _JS_SPACE + "]+")
_JS_SPACE_CHARS = "\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff" + "".join(
    chr(code) for code in range(0x2000, 0x200B)
)


class ResolveOptions(msgspec.Struct, frozen=True, kw_only=True):
    scope: str = "per-sender"
    main_key: str | None = None
    idle_minutes: float = DEFAULT_IDLE_MINUTES
    reset_triggers: tuple[str, ...] = tuple(DEFAULT_RESET_TRIGGERS)
    authorized: bool = True

    @classmethod
    def from_request(cls, request: ResolveRequest, agent: AgentSessionConfig) -> ResolveOptions:
        """Per-request overrides on top of the agent's configured session settings."""
        triggers = request.reset_triggers if request.reset_triggers else agent.reset_triggers
        idle = request.idle_minutes if request.idle_minutes is not None else agent.idle_minutes
        return cls(
            scope=request.scope or agent.scope,
            main_key=request.main_key if request.main_key is not None else agent.main_key,
            idle_minutes=max(idle, 1.0),
            reset_triggers=tuple(triggers),
            authorized=request.authorized,
        )


def strip_structural_prefixes(text: str) -> str:
    """Drop ``[...]`` stamps and ``Name:`` line prefixes, collapse whitespace, trim."""
    without_stamps = _STAMP.sub("", text)
    without_speakers = _SPEAKER.sub("", without_stamps)
    return js_trim(_SPACE_RUN.sub(" ", without_speakers))


def detect_reset(body: str, triggers: tuple[str, ...], *, authorized: bool) -> str | None:
    """``body_stripped`` if a reset trigger matches (``""`` for a bare trigger), else None."""
    if not authorized:
        return None
    trimmed = js_trim(body)
    normalized = js_lower(strip_structural_prefixes(body))
    for trigger in triggers:
        if not trigger:
            continue
        if trigger in (trimmed, normalized):
            return ""
        prefix = f"{trigger} "
        if trimmed.startswith(prefix) or normalized.startswith(prefix):
            return normalized[len(trigger) :].lstrip(_JS_SPACE_CHARS)
    return None


def _text(ctx: dict[str, Any], name: str) -> str | None:
    value = ctx.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"ctx.{name} must be a string")
    return value


def _migrate_legacy_key(
    store: SessionStore, group: GroupKeyResolution | None, session_key: str
) -> None:
    legacy = group.legacy_key if group is not None else None
    if legacy and legacy != session_key and store.get(session_key) is None:
        legacy_entry = store.get(legacy)
        if legacy_entry is not None:
            store.set(session_key, legacy_entry)
            store.remove(legacy)


def _apply_group_metadata(
    entry: dict[str, Any], ctx: dict[str, Any], group: GroupKeyResolution | None, key: str
) -> None:
    if group is None or group.provider is None:
        entry.setdefault("chatType", "direct")
        return
    subject = js_trim(_text(ctx, "GroupSubject") or "") or None
    space = js_trim(_text(ctx, "GroupSpace") or "") or None
    explicit_room = _text(ctx, "GroupRoom")
    room = js_trim(explicit_room) if explicit_room is not None else None
    if room is None and group.provider in ROOM_PROVIDERS and subject and subject.startswith("#"):
        room = subject
    entry["chatType"] = group.chat_type or "group"
    entry["provider"] = group.provider
    if room:
        entry["room"] = room
    elif subject:
        entry["subject"] = subject
    if space:
        entry["space"] = space
    entry["displayName"] = build_group_display_name(
        key,
        provider=group.provider,
        subject=entry.get("subject"),
        room=entry.get("room"),
        space=entry.get("space"),
        group_id=group.id,
    )


def _transcript_file(transcripts_dir: str, session_id: str, ctx: dict[str, Any]) -> str | None:
    if not SAFE_SESSION_ID.match(session_id):
        return None
    topic = ctx.get("MessageThreadId")
    suffix = "" if topic is None else f"-topic-{js_to_string(topic)}"
    return f"{transcripts_dir}/{session_id}{suffix}.jsonl"


def _fresh_value(current: Any, now_ms: int, idle_minutes: float) -> dict[str, Any] | None:
    if not isinstance(current, dict):
        return None
    updated_at = current.get("updatedAt")
    if not isinstance(updated_at, int | float) or isinstance(updated_at, bool):
        return None
    return current if now_ms - updated_at <= idle_minutes * 60_000 else None


def resolve_session(
    store: SessionStore,
    ctx: dict[str, Any],
    options: ResolveOptions,
    *,
    check_key: Callable[[str], str],
    transcripts_dir: str,
    token: str | None = None,
) -> ResolveResult:
    """Resolve ``ctx`` to its session in ``store``, creating or renewing it."""
    session_key = check_key(resolve_session_key(options.scope, ctx, options.main_key))
    group = resolve_group_session_key(ctx)
    _migrate_legacy_key(store, group, session_key)
    current = store.get(session_key)
    existing = current.value() if current is not None else None
    now_ms = store.clock_ms()
    body = _text(ctx, "RawBody") or _text(ctx, "Body") or ""
    body_stripped = detect_reset(body, options.reset_triggers, authorized=options.authorized)
    fresh = _fresh_value(existing, now_ms, options.idle_minutes)
    entry: dict[str, Any] = dict(existing) if isinstance(existing, dict) else {}
    is_new = body_stripped is not None or fresh is None
    if is_new:
        for name in PER_SESSION_FIELDS:
            entry.pop(name, None)
        session_id = store.new_session_id()
    else:
        session_id = str(entry.get("sessionId") or store.new_session_id())
    entry.update(
        sessionId=session_id,
        updatedAt=now_ms,
        systemSent=False if is_new else bool(entry.get("systemSent", False)),
        abortedLastRun=False if is_new else bool(entry.get("abortedLastRun", False)),
    )
    _apply_group_metadata(entry, ctx, group, session_key)
    thread_label = js_trim(_text(ctx, "ThreadLabel") or "")
    if thread_label:
        entry["displayName"] = thread_label
    if is_new or not isinstance(entry.get("sessionFile"), str):
        session_file = _transcript_file(transcripts_dir, session_id, ctx)
        if session_file is not None:
            entry["sessionFile"] = session_file
    stored = store.set(session_key, encode_entry(entry), token)
    return ResolveResult(
        session_key=session_key,
        session_id=session_id,
        is_new=is_new,
        reset_triggered=body_stripped is not None,
        body_stripped=body_stripped,
        entry=stored.value(),
        revision=stored.revision,
    )
