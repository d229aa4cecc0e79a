"""The ``resolve`` operation's rules: message context → session key → the session's new
entry, with reset triggers, idle expiry and group metadata. Pure: no I/O, no store.

This is the original's ``resolveSessionKey`` + ``initSessionState`` (clawdbot
``src/auto-reply/reply/session.ts`` as of 2026-01-10, the provider-era version that reads
``CommandBody ?? RawBody ?? Body``). Whoever holds the store makes it one atomic step:
the daemon applies it inside its single writer (``sessiond.resolve``), the client's Redis
backend in a compare-and-set script that it retries on conflict, so two processes
resolving the same new key at the same moment get the same session id. Where the
original and PROTOCOL.md differ, PROTOCOL.md wins. The steps: :func:`plan_resolution`
(key, group, reset), :func:`legacy_key_to_move`, then :func:`resolved_entry`. Rules:

1. The key comes from :func:`sessiond_client.keys.resolve_session_key`, spelled for the
   request's agent by :func:`session_key_for` (a returned key names its store). A legacy group key
   (``group:<id>``) holding an entry while the new key holds none is moved to the new key.
2. Reset trigger. The command text is ``CommandBody ?? RawBody ?? Body ?? ""`` (JS ``??``:
   an empty string is used, not skipped). It is normalized as the original's
   ``stripStructuralPrefixes``: the text after a ``[Current message - respond to this]``
   marker, ``[...]`` stamps and ``Name:`` line prefixes removed (``^`` after any JS line
   terminator), whitespace collapsed, trimmed, lowercased. For a group message
   (``ChatType`` "group", or a group key) mentions are also stripped as ``stripMentions``
   did with what the context carries: the provider's own patterns (WhatsApp: the bot's
   number from ``To``; Discord: ``<@id>``) and ``@`` + 5 or more digits. The gateway's
   configured ``mentionPatterns`` are not known to the daemon and are not applied. A
   trigger equal to the trimmed raw text or to the normalized text, or followed by a space
   in either, resets if ``authorized``; ``body_stripped`` is the normalized text after the
   trigger (sliced in UTF-16 units, start trimmed), ``""`` for a bare trigger. Empty
   triggers are skipped; an empty trigger list means the defaults, as in the original.
3. Fresh = the entry exists (JS-truthy) and ``now - updatedAt <= idle_minutes`` minutes,
   ``updatedAt`` coerced as JS ``-`` does (a numeric string counts; missing never fresh).
   A fresh entry keeps everything, ``systemSent``/``abortedLastRun`` included. Not fresh,
   or reset: a new ``sessionId`` (uuid4), ``systemSent``/``abortedLastRun`` false, and the
   per-session settings the original reset cleared (:data:`PER_SESSION_FIELDS`: thinking,
   verbose and reasoning levels, model/provider overrides, queue settings,
   ``responseUsage``, ``sendPolicy``). Every other field is kept. The
   original also dropped ``displayName``, ``chatType``, ``provider``, ``subject``,
   ``room`` and ``space`` on a new session and re-derived only what the message carried;
   sessiond keeps them ("every other field is kept") and re-derives on top.
   ``elevatedLevel`` and ``authProfileOverride`` survive a reset, as they did.
4. Group metadata when the group has a provider: ``chatType`` ("group", or "room" for
   channels), ``provider``, ``subject`` unless the message names a room, ``room`` (an
   explicit ``GroupRoom``, else a ``#``-subject on a provider with channels: Telegram,
   Discord, Slack, MS Teams), ``space``, and ``displayName`` from
   :func:`~sessiond_client.keys.build_group_display_name`. Otherwise a missing or empty
   ``chatType`` becomes "direct" (a provider-less legacy group too, as in the original).
   ``ThreadLabel`` sets ``displayName``. ``sessionFile`` is set when missing or empty and
   on every new session: ``<transcripts dir>/<sessionId>.jsonl``, or
   ``<sessionId>-topic-<MessageThreadId>.jsonl`` (number formatted as a template literal).

Decisions beyond the original: a fresh entry whose ``sessionId`` is missing, empty or not
a string starts a new session (the original wrote an entry without one); a stored value
that is not an object counts as no entry (the original spread a string into indexed
keys); a session id unsafe as a file name gets no ``sessionFile``; forking a
new session from ``ParentSessionKey``'s transcript needs the transcript files and is
not done; a non-string text field is ``invalid_request``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple, Protocol

import msgspec

from sessiond_client.errors import InvalidRequestError
from sessiond_client.jscompat import (
    JS_WHITESPACE,
    js_length,
    js_lower,
    js_slice,
    js_to_number,
    js_to_string,
    js_trim,
)
from sessiond_client.keys import (
    DEFAULT_AGENT_ID,
    DEFAULT_IDLE_MINUTES,
    DEFAULT_RESET_TRIGGERS,
    GroupKeyResolution,
    build_group_display_name,
    resolve_agent_id_from_session_key,
    resolve_group_session_key,
    resolve_session_key,
)
from sessiond_client.protocol import ResolveRequest

__all__ = [
    "BUILT_IN_SESSION_DEFAULTS",
    "PER_SESSION_FIELDS",
    "ResolveOptions",
    "ResolvePlan",
    "ResolvedSession",
    "SessionDefaults",
    "detect_reset",
    "legacy_key_to_move",
    "plan_resolution",
    "resolved_entry",
    "session_key_for",
    "strip_mentions",
    "strip_structural_prefixes",
]

PER_SESSION_FIELDS: Final = (
    "thinkingLevel",
    "verboseLevel",
    "reasoningLevel",
    "responseUsage",
    "providerOverride",
    "modelOverride",
    "sendPolicy",
    "queueMode",
    "queueDebounceMs",
    "queueCap",
    "queueDrop",
)
CHANNEL_PROVIDERS: Final = frozenset({"telegram", "discord", "slack", "msteams"})
"""Providers whose chat types include channels: their ``#``-subjects are rooms."""
CURRENT_MESSAGE_MARKER: Final = "[Current message - respond to this]"
SAFE_SESSION_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

_SPACE: Final = "[" + re.escape(JS_WHITESPACE) + "]"
_LINE_START: Final = r"(?:^|(?<=[\n\r\u2028\u2029]))"
_STAMP: Final = re.compile(r"\[[^\]]+\]" + _SPACE + "*")
_SPEAKER: Final = re.compile(_LINE_START + r"[ \t]*[A-Za-z0-9+()\-_. ]+:" + _SPACE + "*")
_SPACE_RUN: Final = re.compile(_SPACE + "+")
_DISCORD_MENTION: Final = re.compile(r"<@!?[0-9]+>", re.IGNORECASE)
_NUMBER_MENTION: Final = re.compile(r"@[0-9+]{5,}")
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


class SessionDefaults(Protocol):
    """An agent's configured ``resolve`` settings (the daemon's ``[session]`` table, or the
    built-in defaults where no configuration exists, as over Redis)."""

    @property
    def scope(self) -> str: ...

    @property
    def main_key(self) -> str | None: ...

    @property
    def idle_minutes(self) -> float: ...

    @property
    def reset_triggers(self) -> Sequence[str]: ...


class BuiltInSessionDefaults(msgspec.Struct, frozen=True):
    """The defaults of an agent without configuration."""

    scope: str = "per-sender"
    main_key: str | None = None
    idle_minutes: float = float(DEFAULT_IDLE_MINUTES)
    reset_triggers: tuple[str, ...] = tuple(DEFAULT_RESET_TRIGGERS)


BUILT_IN_SESSION_DEFAULTS: Final = BuiltInSessionDefaults()


class ResolveOptions(msgspec.Struct, frozen=True, kw_only=True):
    scope: str = "per-sender"
    main_key: str | None = None
    idle_minutes: float = DEFAULT_IDLE_MINUTES
    reset_triggers: tuple[str, ...] = tuple(DEFAULT_RESET_TRIGGERS)
    authorized: bool = True

    @classmethod
    def from_request(
        cls, request: ResolveRequest, agent: SessionDefaults = BUILT_IN_SESSION_DEFAULTS
    ) -> ResolveOptions:
        """Per-request overrides on top of the agent's configured session settings."""
        triggers = request.reset_triggers or agent.reset_triggers or DEFAULT_RESET_TRIGGERS
        idle = request.idle_minutes if request.idle_minutes is not None else agent.idle_minutes
        return cls(
            scope=request.scope or agent.scope,
            main_key=request.main_key if request.main_key is not None else agent.main_key,
            idle_minutes=max(idle, 1.0),
            reset_triggers=tuple(triggers),
            authorized=request.authorized,
        )


def strip_structural_prefixes(text: str) -> str:
    """The original's ``stripStructuralPrefixes``: the text after the current-message
    marker, without ``[...]`` stamps and ``Name:`` line prefixes, whitespace collapsed."""
    if CURRENT_MESSAGE_MARKER in text:
        text = text[text.index(CURRENT_MESSAGE_MARKER) + len(CURRENT_MESSAGE_MARKER) :]
    without_stamps = _STAMP.sub("", text)
    without_speakers = _SPEAKER.sub("", without_stamps)
    return js_trim(_SPACE_RUN.sub(" ", without_speakers))


def strip_mentions(text: str, ctx: Mapping[str, Any]) -> str:
    """The original's ``stripMentions`` with the patterns a message context carries."""
    provider = js_lower(js_trim(_text(ctx, "Provider") or ""))
    if provider == "whatsapp":
        own_number = (_text(ctx, "To") or "").removeprefix("whatsapp:")
        if own_number:
            escaped = re.escape(own_number)
            for pattern in (escaped, f"@{escaped}"):
                text = re.sub(pattern, " ", text, flags=re.IGNORECASE)
    elif provider == "discord":
        text = _DISCORD_MENTION.sub(" ", text)
    text = _NUMBER_MENTION.sub(" ", text)
    return js_trim(_SPACE_RUN.sub(" ", text))


def detect_reset(
    body: str,
    triggers: tuple[str, ...],
    *,
    authorized: bool,
    group_ctx: Mapping[str, Any] | None = None,
) -> str | None:
    """``body_stripped`` if a reset trigger matches (``""`` for a bare trigger), else None.

    ``group_ctx`` is the context of a group message, whose mentions are stripped too."""
    if not authorized:
        return None
    trimmed = js_trim(body)
    normalized = js_lower(strip_structural_prefixes(body))
    if group_ctx is not None:
        normalized = strip_mentions(normalized, group_ctx)
    for trigger in triggers:
        if not trigger:
            continue
        if trigger in (trimmed, normalized):
            return ""
        prefix = f"{trigger} "
        if trimmed.startswith(prefix) or normalized.startswith(prefix):
            rest = js_slice(normalized, js_length(trigger)).lstrip(JS_WHITESPACE)
            return _LONE_SURROGATE.sub("\ufffd", rest)  # a slice may split a pair
    return None


def _text(ctx: Mapping[str, Any], name: str) -> str | None:
    value = ctx.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"ctx.{name} must be a string")
    return value


def _command_text(ctx: Mapping[str, Any]) -> str:
    for name in ("CommandBody", "RawBody", "Body"):
        value = _text(ctx, name)
        if value is not None:
            return value
    return ""


def _is_group(ctx: Mapping[str, Any], group: GroupKeyResolution | None) -> bool:
    chat_type = _text(ctx, "ChatType")
    return group is not None or (chat_type is not None and js_lower(js_trim(chat_type)) == "group")


def _is_fresh(existing: dict[str, Any], now_ms: int, idle_minutes: float) -> bool:
    if "updatedAt" not in existing:
        return False
    age_ms = now_ms - js_to_number(existing["updatedAt"])
    return not math.isnan(age_ms) and age_ms <= idle_minutes * 60_000


def _usable_session_id(existing: dict[str, Any]) -> str | None:
    session_id = existing.get("sessionId")
    return session_id if isinstance(session_id, str) and session_id else None


def _apply_group_metadata(
    entry: dict[str, Any], ctx: Mapping[str, Any], group: GroupKeyResolution | None, key: str
) -> None:
    if group is None or group.provider is None:
        if not entry.get("chatType"):
            entry["chatType"] = "direct"
        return
    subject = js_trim(_text(ctx, "GroupSubject") or "") or None
    space = js_trim(_text(ctx, "GroupSpace") or "") or None
    explicit_room = _text(ctx, "GroupRoom")
    room = js_trim(explicit_room) if explicit_room is not None else None
    if room is None and group.provider in CHANNEL_PROVIDERS and subject and subject[0] == "#":
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


def _transcript_file(transcripts_dir: str, session_id: str, ctx: Mapping[str, Any]) -> str | None:
    if not SAFE_SESSION_ID.match(session_id):
        return None
    topic = ctx.get("MessageThreadId")
    suffix = "" if topic is None else f"-topic-{js_to_string(topic)}"
    return f"{transcripts_dir}/{session_id}{suffix}.jsonl"


def _renewed(existing: dict[str, Any], session_id: str, now_ms: int) -> dict[str, Any]:
    entry = {name: value for name, value in existing.items() if name not in PER_SESSION_FIELDS}
    entry.pop("sessionFile", None)
    entry.update(sessionId=session_id, updatedAt=now_ms, systemSent=False, abortedLastRun=False)
    return entry


def _continued(existing: dict[str, Any], now_ms: int) -> dict[str, Any]:
    entry = dict(existing)
    entry["updatedAt"] = now_ms
    for flag in ("systemSent", "abortedLastRun"):
        if entry.get(flag) is None:  # ``entry.flag ?? false``
            entry[flag] = False
    return entry


def session_key_for(agent_id: str, options: ResolveOptions, ctx: Mapping[str, Any]) -> str:
    """The session key of ``ctx`` in ``agent_id``'s store, spelled so that the key alone
    names that store again (``agent:<id>:...``; the default agent keeps the gateway's
    keys, ``global`` included).

    The gateway's ``resolveSessionKey`` builds keys for the default agent; for another
    agent its ``agent:main:`` prefix becomes ``agent:<id>:``, and the global key becomes
    ``agent:<id>:global``. An explicit ``SessionKey`` is used as given, but must belong
    to ``agent_id`` (else it would read back from another store).
    """
    explicit = ctx.get("SessionKey")
    key = resolve_session_key(options.scope, ctx, options.main_key)
    if isinstance(explicit, str) and js_trim(explicit):
        key_agent = resolve_agent_id_from_session_key(key)
        if key_agent != agent_id:
            raise InvalidRequestError(
                f"ctx.SessionKey {key!r} belongs to agent {key_agent!r}, not {agent_id!r}: "
                "send it without agent, or with the agent it names"
            )
        return key
    if agent_id == DEFAULT_AGENT_ID:
        return key
    if key.startswith(_DEFAULT_AGENT_PREFIX):
        return f"agent:{agent_id}:{key.removeprefix(_DEFAULT_AGENT_PREFIX)}"
    return f"agent:{agent_id}:{key}"


_DEFAULT_AGENT_PREFIX: Final = f"agent:{DEFAULT_AGENT_ID}:"


class ResolvePlan(NamedTuple):
    """What a message resolves to before the store is looked at: the session key, the
    group it names (if any), and ``body_stripped`` when a reset trigger matched."""

    session_key: str
    group: GroupKeyResolution | None
    body_stripped: str | None


def plan_resolution(
    agent_id: str,
    ctx: Mapping[str, Any],
    options: ResolveOptions,
    *,
    check_key: Callable[[str], str],
) -> ResolvePlan:
    """Step 1 and 2: the key (checked by ``check_key``), the group, the reset trigger."""
    session_key = check_key(session_key_for(agent_id, options, ctx))
    group = resolve_group_session_key(ctx)
    body_stripped = detect_reset(
        _command_text(ctx),
        options.reset_triggers,
        authorized=options.authorized,
        group_ctx=ctx if _is_group(ctx, group) else None,
    )
    return ResolvePlan(session_key, group, body_stripped)


def legacy_key_to_move(plan: ResolvePlan, has_session: Callable[[str], bool]) -> str | None:
    """The legacy group key (``group:<id>``) whose entry moves to the session key: only
    when it holds a session and the session key holds none. ``has_session(key)``: does
    the store hold a (JS-truthy) entry under ``key``?"""
    legacy = plan.group.legacy_key if plan.group is not None else None
    if not legacy or legacy == plan.session_key or has_session(plan.session_key):
        return None
    return legacy if has_session(legacy) else None


class ResolvedSession(NamedTuple):
    """Step 3 and 4: the entry to store under the session key, its session id, and
    whether it is a new session."""

    entry: dict[str, Any]
    session_id: str
    is_new: bool


def resolved_entry(
    plan: ResolvePlan,
    current: Any,
    ctx: Mapping[str, Any],
    options: ResolveOptions,
    *,
    now_ms: int,
    new_session_id: Callable[[], str],
    transcripts_dir: str,
) -> ResolvedSession:
    """The session's entry after ``resolve``: ``current`` is the value stored under the
    session key (after a legacy key moved there), None when there is no (truthy) entry."""
    existing = current if isinstance(current, dict) else {}
    continuing = (
        plan.body_stripped is None
        and current is not None
        and _usable_session_id(existing) is not None
        and _is_fresh(existing, now_ms, options.idle_minutes)
    )
    if continuing:
        entry = _continued(existing, now_ms)
    else:
        entry = _renewed(existing, new_session_id(), now_ms)
    session_id = str(entry["sessionId"])
    _apply_group_metadata(entry, ctx, plan.group, plan.session_key)
    thread_label = js_trim(_text(ctx, "ThreadLabel") or "")
    if thread_label:
        entry["displayName"] = thread_label
    if not entry.get("sessionFile"):
        session_file = _transcript_file(transcripts_dir, session_id, ctx)
        if session_file is not None:
            entry["sessionFile"] = session_file
    return ResolvedSession(entry, session_id, not continuing)
