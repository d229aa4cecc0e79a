"""The shape of a session entry, shared by the daemon and its clients. Pure: no I/O.

An entry is a JSON object with camelCase field names, stored exactly as given. This
module names the fields sessiond knows and their types:

- :class:`SessionEntry` is the typed view clients get (snake_case attributes, unknown
  fields kept in ``extra`` so nothing written by a newer gateway is lost).
- :data:`EntryFields` is the validation type for writes: every known field optional,
  checked for type; unknown fields are not its business and pass through untouched.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

__all__ = [
    "KNOWN_FIELD_NAMES",
    "EntryFields",
    "SessionEntry",
    "validate_entry_fields",
]

ChatType = Literal["direct", "group", "room"]
Number = int | float


class SessionEntry(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """Typed view of one entry. ``None`` means the field is absent from the stored object.

    Every stored entry has ``sessionId`` and ``updatedAt``; the defaults (``""``, ``0``) only
    appear for a hand-edited entry that lacks them, and :meth:`to_dict` leaves them out
    again. For an exact copy of what is stored use ``Session.data``.
    """

    session_id: str = ""
    updated_at: Number = 0
    session_file: str | None = None
    spawned_by: str | None = None
    system_sent: bool | None = None
    aborted_last_run: bool | None = None
    chat_type: ChatType | None = None
    thinking_level: str | None = None
    verbose_level: str | None = None
    reasoning_level: str | None = None
    elevated_level: str | None = None
    response_usage: str | None = None
    provider_override: str | None = None
    model_override: str | None = None
    auth_profile_override: str | None = None
    group_activation: str | None = None
    group_activation_needs_system_intro: bool | None = None
    send_policy: str | None = None
    queue_mode: str | None = None
    queue_debounce_ms: Number | None = None
    queue_cap: Number | None = None
    queue_drop: str | None = None
    input_tokens: Number | None = None
    output_tokens: Number | None = None
    total_tokens: Number | None = None
    model_provider: str | None = None
    model: str | None = None
    context_tokens: Number | None = None
    compaction_count: Number | None = None
    claude_cli_session_id: str | None = None
    label: str | None = None
    display_name: str | None = None
    provider: str | None = None
    subject: str | None = None
    room: str | None = None
    space: str | None = None
    last_provider: str | None = None
    last_to: str | None = None
    last_account_id: str | None = None
    skills_snapshot: dict[str, Any] | None = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict, name="__extra__")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionEntry:
        """Build the typed view of a stored object.

        Fields whose stored value does not have the documented type (a hand-edited
        file, say) are moved to ``extra`` instead of failing the whole read.
        """
        known = {name: value for name, value in data.items() if name in KNOWN_FIELD_NAMES}
        extra = {name: value for name, value in data.items() if name not in KNOWN_FIELD_NAMES}
        try:
            entry = msgspec.convert(known, cls)
        except msgspec.ValidationError:
            entry, misfits = _convert_field_by_field(cls, known)
            extra.update(misfits)
        entry.extra = extra
        return entry

    def to_dict(self) -> dict[str, Any]:
        """The stored JSON object: camelCase known fields plus the unknown ones."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        data.pop("__extra__", None)
        data.update(self.extra)
        return data


def _convert_field_by_field(
    cls: type[SessionEntry], known: dict[str, Any]
) -> tuple[SessionEntry, dict[str, Any]]:
    valid: dict[str, Any] = {}
    misfits: dict[str, Any] = {}
    for name, value in known.items():
        try:
            msgspec.convert({**valid, name: value}, cls)
        except msgspec.ValidationError:
            misfits[name] = value
        else:
            valid[name] = value
    return msgspec.convert(valid, cls), misfits


KNOWN_FIELD_NAMES: Final[frozenset[str]] = frozenset(
    field.encode_name for field in msgspec.structs.fields(SessionEntry) if field.name != "extra"
)

EntryFields: Final = msgspec.defstruct(
    "EntryFields",
    [
        (field.name, field.type | msgspec.UnsetType, msgspec.UNSET)
        for field in msgspec.structs.fields(SessionEntry)
        if field.name != "extra"
    ],
    kw_only=True,
    rename="camel",
    forbid_unknown_fields=False,
)


def validate_entry_fields(fields: dict[str, Any]) -> None:
    """Type-check the known fields of a patch or entry; unknown fields are ignored.

    ``None`` values are not checked: on the wire a ``null`` deletes the field.
    Raises :class:`msgspec.ValidationError` naming the first bad field.
    """
    present = {name: value for name, value in fields.items() if value is not None}
    msgspec.convert(present, EntryFields)
