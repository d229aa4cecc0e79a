"""Session keys: the original gateway's derivation and normalisation rules. Pure: no I/O.

A port of clawdbot (2026-01-10) ``src/config/sessions.ts`` (group keys, group display
names, ``deriveSessionKey``, ``resolveSessionKey``, main-session keys),
``src/routing/session-key.ts`` (agent ids, ``agent:<id>:<rest>`` keys) and
``normalizeE164`` from ``src/utils.ts``. It reproduces the original exactly, JS string
semantics included (see :mod:`sessiond_client.jscompat`), because existing stores are
keyed by what that code produced.

Arguments typed ``object`` take whatever the caller has. ``None`` and
:data:`~sessiond_client.jscompat.UNDEFINED` both mean "not given". Where the original
threw on a non-string (``x.trim is not a function``) these functions raise
:class:`TypeError`. Mappings stand in for the original's objects: ``ctx`` has the
message fields ``From``, ``ChatType``, ``Provider`` and ``SessionKey``; ``cfg`` has
``session.scope``, ``session.mainKey`` and ``agents.list[].id`` / ``.default``.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from sessiond_client.jscompat import (
    JS_WHITESPACE,
    UNDEFINED,
    Undefined,
    is_nullish,
    js_get,
    js_length,
    js_lower,
    js_optional_get,
    js_slice,
    js_trim,
    js_truthy,
)

__all__ = [
    "DEFAULT_AGENT_ID",
    "DEFAULT_IDLE_MINUTES",
    "DEFAULT_MAIN_KEY",
    "DEFAULT_RESET_TRIGGER",
    "DEFAULT_RESET_TRIGGERS",
    "GROUP_PROVIDERS",
    "GroupKeyResolution",
    "ParsedAgentSessionKey",
    "build_agent_main_session_key",
    "build_group_display_name",
    "derive_session_key",
    "normalize_agent_id",
    "normalize_e164",
    "normalize_main_key",
    "parse_agent_session_key",
    "resolve_agent_id_from_session_key",
    "resolve_agent_main_session_key",
    "resolve_group_session_key",
    "resolve_main_session_key",
    "resolve_session_key",
]

DEFAULT_AGENT_ID: Final = "main"
DEFAULT_MAIN_KEY: Final = "main"
DEFAULT_RESET_TRIGGER: Final = "/new"
DEFAULT_RESET_TRIGGERS: Final = ("/new", "/reset")
DEFAULT_IDLE_MINUTES: Final = 60

GROUP_PROVIDERS: Final = frozenset(
    {"whatsapp", "telegram", "discord", "slack", "signal", "imessage", "webchat"}
)
"""Providers recognised as the first segment of a group ``From`` (``slack:channel:C1``)."""

_GROUP_KINDS: Final = ("group", "channel")
_LEGACY_GROUP_PREFIX: Final = "group:"
_MAX_AGENT_ID_LENGTH: Final = 64
_SHORT_GROUP_ID_LENGTH: Final = 14

# JS regexes without the ``u``/``i`` flags: ASCII classes, anchored by fullmatch.
_VALID_AGENT_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}")
_INVALID_AGENT_ID_CHARS = re.compile(r"[^a-z0-9_-]+")
_NON_PHONE_CHARS = re.compile(r"[^0-9+]")
_WHITESPACE_RUN = re.compile(f"[{re.escape(JS_WHITESPACE)}]+")
_INVALID_LABEL_CHARS = re.compile(r"[^a-z0-9#@._+-]+")
_DASH_RUN = re.compile(r"-{2,}")


class ParsedAgentSessionKey(NamedTuple):
    """An ``agent:<agent_id>:<rest>`` key split into its parts (case kept)."""

    agent_id: str
    rest: str

    def to_js(self) -> dict[str, object]:
        """The object the original returned."""
        return {"agentId": self.agent_id, "rest": self.rest}


class GroupKeyResolution(NamedTuple):
    """Where a group message belongs: its session key and what it was derived from.

    ``provider`` is None when no provider was known; the key is then the legacy
    ``group:<id>`` form and ``legacy_key`` equals it.
    """

    key: str
    id: str
    chat_type: str  # "group" or "room"
    provider: str | None = None
    legacy_key: str | None = None

    def to_js(self) -> dict[str, object]:
        """The object the original returned, keys in its order."""
        if self.provider is None:
            return {
                "key": self.key,
                "id": self.id,
                "legacyKey": self.legacy_key,
                "chatType": "group",
            }
        return {
            "key": self.key,
            "legacyKey": UNDEFINED if self.legacy_key is None else self.legacy_key,
            "provider": self.provider,
            "id": self.id,
            "chatType": self.chat_type,
        }


# --- JS idioms the original uses on possibly-non-string values ------------------------


def _trim_or_empty(value: object, expression: str) -> str:
    """``(value ?? "").trim()``."""
    if is_nullish(value):
        return ""
    if isinstance(value, str):
        return js_trim(value)
    raise TypeError(f"{expression}.trim is not a function")


def _optional_trim(value: object, expression: str) -> str | Undefined:
    """``value?.trim()``."""
    if is_nullish(value):
        return UNDEFINED
    if isinstance(value, str):
        return js_trim(value)
    raise TypeError(f"{expression}?.trim is not a function")


def _optional_trim_lower(value: object, expression: str) -> str | Undefined:
    """``value?.trim().toLowerCase()``."""
    trimmed = _optional_trim(value, expression)
    return UNDEFINED if trimmed is UNDEFINED else js_lower(trimmed)


# --- agent ids and agent keys ---------------------------------------------------------


def normalize_agent_id(value: object = None) -> str:
    """A filesystem-safe agent id: valid ids are kept (case too), others cleaned up.

    Blank or unusable input gives :data:`DEFAULT_AGENT_ID`.
    """
    trimmed = _trim_or_empty(value, "value")
    if not trimmed:
        return DEFAULT_AGENT_ID
    if _VALID_AGENT_ID.fullmatch(trimmed):
        return trimmed
    cleaned = _INVALID_AGENT_ID_CHARS.sub("-", js_lower(trimmed)).strip("-")
    return cleaned[:_MAX_AGENT_ID_LENGTH] or DEFAULT_AGENT_ID


def normalize_main_key(value: object = None) -> str:
    """The trimmed main key (case kept), or :data:`DEFAULT_MAIN_KEY` when blank."""
    return _trim_or_empty(value, "value") or DEFAULT_MAIN_KEY


def parse_agent_session_key(session_key: object) -> ParsedAgentSessionKey | None:
    """Split ``agent:<id>:<rest>``; None for any other shape. Empty segments are dropped."""
    raw = _trim_or_empty(session_key, "sessionKey")
    if not raw:
        return None
    parts = [part for part in raw.split(":") if part]
    if len(parts) < 3 or parts[0] != "agent":
        return None
    agent_id = js_trim(parts[1])
    rest = ":".join(parts[2:])
    if not agent_id or not rest:
        return None
    return ParsedAgentSessionKey(agent_id, rest)


def resolve_agent_id_from_session_key(session_key: object) -> str:
    """The normalised agent of ``agent:<id>:...`` keys, else :data:`DEFAULT_AGENT_ID`."""
    parsed = parse_agent_session_key(session_key)
    return normalize_agent_id(DEFAULT_AGENT_ID if parsed is None else parsed.agent_id)


def build_agent_main_session_key(*, agent_id: object, main_key: object = None) -> str:
    """``agent:<normalised agent id>:<normalised main key>``."""
    return f"agent:{normalize_agent_id(agent_id)}:{normalize_main_key(main_key)}"


def resolve_agent_main_session_key(*, agent_id: object, cfg: object = None) -> str:
    """The main session key of ``agent_id`` under ``cfg.session.mainKey``."""
    main_key = normalize_main_key(js_optional_get(js_optional_get(cfg, "session"), "mainKey"))
    return build_agent_main_session_key(agent_id=agent_id, main_key=main_key)


def resolve_main_session_key(cfg: object = None) -> str:
    """The default agent's main session key, or ``"global"`` for the global scope.

    The default agent is the first ``agents.list`` entry with a truthy ``default``;
    if that entry has no ``id``, the first entry's ``id`` is used, then ``main``.
    """
    session = js_optional_get(cfg, "session")
    if js_optional_get(session, "scope") == "global":
        return "global"
    agents = js_optional_get(js_optional_get(cfg, "agents"), "list")
    if is_nullish(agents):
        agents = []
    if not isinstance(agents, list):
        raise TypeError("agents.find is not a function")
    chosen = next((agent for agent in agents if js_truthy(js_optional_get(agent, "default"))), None)
    default_id = js_optional_get(chosen, "id")
    if is_nullish(default_id):
        default_id = js_optional_get(agents[0], "id") if agents else UNDEFINED
    if is_nullish(default_id):
        default_id = DEFAULT_AGENT_ID
    agent_id = normalize_agent_id(default_id)
    main_key = normalize_main_key(js_optional_get(session, "mainKey"))
    return build_agent_main_session_key(agent_id=agent_id, main_key=main_key)


# --- phone numbers --------------------------------------------------------------------


def normalize_e164(number: object) -> str:
    """Loose E.164: drop one ``whatsapp:`` prefix, keep ASCII digits and ``+``, lead with ``+``.

    Never empty: input without digits gives ``"+"``. Non-strings raise TypeError.
    This is the 2026-01-10 rule: only a literal lowercase ``whatsapp:`` is stripped
    (later gateway versions strip any ``scheme:`` and drop ``+`` signs).
    """
    if not isinstance(number, str):
        raise TypeError("number.replace is not a function")
    digits = _NON_PHONE_CHARS.sub("", js_trim(number.removeprefix("whatsapp:")))
    return "+" + digits.removeprefix("+")


# --- groups ---------------------------------------------------------------------------


def _parse_group_parts(parts: list[str]) -> tuple[str | None, str | None, str]:
    """``(provider, kind, id)`` from ``<provider>[:<kind>]:<id>`` or ``<kind>:<id>``."""
    if len(parts) >= 2 and parts[0] in GROUP_PROVIDERS:
        if len(parts) == 2:
            return parts[0], None, parts[1]
        if parts[1] in _GROUP_KINDS:
            return parts[0], parts[1], ":".join(parts[2:])
        return parts[0], None, ":".join(parts[1:])
    if len(parts) >= 2 and parts[0] in _GROUP_KINDS:
        return None, parts[0], ":".join(parts[1:])
    return None, None, ""


def _parse_group_sender(sender: str, raw: str) -> tuple[str | None, str | None, str]:
    """``(provider, kind, id)`` for a group sender; ``raw`` is it without ``group:``."""
    if sender.startswith(_LEGACY_GROUP_PREFIX):
        legacy_parts = [part for part in raw.split(":") if part]
        if len(legacy_parts) > 1:
            return _parse_group_parts(legacy_parts)
        return None, None, raw
    if "@g.us" in sender and ":" not in sender:
        return None, None, sender
    provider, kind, group_id = _parse_group_parts([part for part in sender.split(":") if part])
    return provider, kind, group_id or raw or sender


def _is_group_sender(sender: str, chat_type: str | Undefined) -> bool:
    return (
        chat_type == "group"
        or sender.startswith(_LEGACY_GROUP_PREFIX)
        or "@g.us" in sender
        or ":group:" in sender
        or ":channel:" in sender
    )


def resolve_group_session_key(ctx: object) -> GroupKeyResolution | None:
    """The group session of a message context, or None for a direct message.

    Note ``ChatType: "channel"`` / ``"room"`` do not make a message a group; only
    ``"group"`` or the shape of ``From`` do.
    """
    from_value = js_get(ctx, "From")
    sender = js_trim(from_value) if isinstance(from_value, str) else ""
    if not sender:
        return None
    chat_type = _optional_trim_lower(js_get(ctx, "ChatType"), "ctx.ChatType")
    if not _is_group_sender(sender, chat_type):
        return None
    provider_hint = _optional_trim_lower(js_get(ctx, "Provider"), "ctx.Provider")
    has_legacy_prefix = sender.startswith(_LEGACY_GROUP_PREFIX)
    raw = js_trim(sender[len(_LEGACY_GROUP_PREFIX) :]) if has_legacy_prefix else sender
    provider, kind, group_id = _parse_group_sender(sender, raw)
    resolved_provider = provider if provider is not None else provider_hint
    if not resolved_provider:
        legacy = f"group:{raw}" if has_legacy_prefix else f"group:{sender}"
        return GroupKeyResolution(
            key=legacy, id=raw or sender, chat_type="group", legacy_key=legacy
        )
    final_id = group_id or raw or sender
    resolved_kind = "channel" if kind == "channel" else "group"
    legacy_key = f"group:{final_id}" if has_legacy_prefix or "@g.us" in sender else None
    return GroupKeyResolution(
        key=f"{resolved_provider}:{resolved_kind}:{final_id}",
        id=final_id,
        chat_type="room" if resolved_kind == "channel" else "group",
        provider=resolved_provider,
        legacy_key=legacy_key,
    )


def _normalize_group_label(raw: str) -> str:
    lowered = js_lower(js_trim(raw))
    if not lowered:
        return ""
    dashed = _WHITESPACE_RUN.sub("-", lowered)
    cleaned = _INVALID_LABEL_CHARS.sub("-", dashed)
    return _DASH_RUN.sub("-", cleaned).strip("-.")


def _shorten_group_id(value: str) -> str:
    trimmed = js_trim(value)
    if js_length(trimmed) <= _SHORT_GROUP_ID_LENGTH:
        return trimmed
    return f"{js_slice(trimmed, 0, 6)}...{js_slice(trimmed, -4)}"


def _group_label_detail(
    room: str | Undefined, space: str | Undefined, subject: str | Undefined
) -> str:
    if room and space:
        return f"{space}{'' if room.startswith('#') else '#'}{room}"
    return room or subject or space or ""


def build_group_display_name(
    key: object,
    *,
    provider: object = None,
    subject: object = None,
    room: object = None,
    space: object = None,
    group_id: object = None,
) -> str:
    """A short label such as ``discord:#general`` or ``whatsapp:g-family``.

    ``key`` is only used (minus a ``group:`` prefix) when ``group_id`` is blank.
    """
    provider_key = js_trim(_optional_trim_lower(provider, "params.provider") or "group")
    room_text = _optional_trim(room, "params.room")
    space_text = _optional_trim(space, "params.space")
    subject_text = _optional_trim(subject, "params.subject")
    detail = _group_label_detail(room_text, space_text, subject_text)
    fallback_id = _optional_trim(group_id, "params.id") or _key_without_group_prefix(key)
    raw_label = detail or fallback_id
    token = _normalize_group_label(raw_label) or _normalize_group_label(
        _shorten_group_id(raw_label)
    )
    if not js_truthy(room) and token.startswith("#"):
        token = token.lstrip("#")
    if token and token[0] not in "@#" and not token.startswith("g-") and "#" not in token:
        token = f"g-{token}"
    return f"{provider_key}:{token}" if token else provider_key


def _key_without_group_prefix(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError("params.key.replace is not a function")
    return key.removeprefix(_LEGACY_GROUP_PREFIX)


# --- message → session ----------------------------------------------------------------


def derive_session_key(scope: object, ctx: object) -> str:
    """The raw bucket of a message: ``global``, a group key, an E.164 sender or ``unknown``."""
    if scope == "global":
        return "global"
    group = resolve_group_session_key(ctx)
    if group is not None:
        return group.key
    from_value = js_get(ctx, "From")
    return normalize_e164(from_value) if js_truthy(from_value) else "unknown"


def resolve_session_key(scope: object, ctx: object, main_key: object = None) -> str:
    """The store key of a message: an explicit ``SessionKey`` wins; direct chats share
    ``agent:main:<main key>``; groups get ``agent:main:<group key>``."""
    explicit = _optional_trim(js_get(ctx, "SessionKey"), "ctx.SessionKey")
    if explicit:
        return explicit
    raw = derive_session_key(scope, ctx)
    if scope == "global":
        return raw
    canonical = build_agent_main_session_key(
        agent_id=DEFAULT_AGENT_ID, main_key=normalize_main_key(main_key)
    )
    if raw.startswith(_LEGACY_GROUP_PREFIX) or ":group:" in raw or ":channel:" in raw:
        return f"agent:{DEFAULT_AGENT_ID}:{raw}"
    return canonical
