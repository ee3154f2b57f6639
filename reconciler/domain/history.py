"""A member's history: which `member_events` rows a change writes, decided from plain values.

The store writes these rows in the transaction of the change they record; this module only says
what they are. A member's first sync is the baseline and writes nothing (see `created_events`).
"""

from __future__ import annotations

__all__ = [
    "EVENT_WIDTH",
    "NAME_KINDS",
    "EventKind",
    "EventOrigin",
    "EventSource",
    "MemberEvent",
    "add_change_events",
    "add_created_events",
    "change_events",
    "created_events",
    "event_text",
    "redact",
]

import datetime
import enum
import logging
import typing

import attrs

if typing.TYPE_CHECKING:
    from reconciler.domain.changes import MemberChange
    from reconciler.domain.state import MemberState

_LOGGER: typing.Final = logging.getLogger(__name__)


class EventKind(enum.StrEnum):
    """What changed: stored in `member_events.kind` (documented in docs/schema.md)."""

    JOINED = "joined"
    LEFT = "left"
    REJOINED = "rejoined"
    NICKNAME_CHANGED = "nickname_changed"
    USERNAME_CHANGED = "username_changed"
    GLOBAL_NAME_CHANGED = "global_name_changed"
    ROLE_ADDED = "role_added"
    ROLE_REMOVED = "role_removed"
    BECAME_INACTIVE = "became_inactive"
    BECAME_ACTIVE = "became_active"
    PREMIUM_SINCE_CHANGED = "premium_since_changed"
    TIMEOUT_CHANGED = "timeout_changed"
    PENDING_CHANGED = "pending_changed"
    FLAGS_CHANGED = "flags_changed"
    GUILD_AVATAR_CHANGED = "guild_avatar_changed"
    FORGOTTEN = "forgotten"
    """The user's personal values were erased on request (`reconciler user forget`)."""


NAME_KINDS: typing.Final = frozenset(
    {
        EventKind.NICKNAME_CHANGED,
        EventKind.USERNAME_CHANGED,
        EventKind.GLOBAL_NAME_CHANGED,
        EventKind.GUILD_AVATAR_CHANGED,
    }
)
"""Kinds whose old and new values are personal names or avatars (erased by forget and retention)."""


class EventSource(enum.StrEnum):
    """How the change was observed: stored in `member_events.source`.

    `gateway`: a run asked for by gateway events only (or a message, for `became_active`);
    `repair`: a run asked for by the scheduler, a command or start-up found the change (with its run id);
    `relist`: the run after a relist of the member list from Discord;
    `command`: an operator's command outside a run (`reconciler user forget`).
    """

    GATEWAY = "gateway"
    REPAIR = "repair"
    RELIST = "relist"
    COMMAND = "command"


@attrs.frozen(kw_only=True)
class EventOrigin:
    """Where the events of one apply come from."""

    source: EventSource
    run_id: int | None = None


class MemberEvent(typing.NamedTuple):
    """One `member_events` row of a guild, before it is stored (the store adds guild, time and origin).

    A plain tuple in column order: a drift run writes tens of thousands, and the store binds them as
    they are (`kind` is an `EventKind`, itself a `str`).
    """

    user_id: int
    kind: str
    old_value: str | None = None
    new_value: str | None = None
    role_id: int | None = None


def event_text(value: object) -> str | None:
    """A field value as `member_events` stores it: ISO 8601 times, `true`/`false`, decimal integers."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat()
    return str(value)


# Kinds as plain text: what the database driver binds without a lookup per row.
_JOINED: typing.Final = EventKind.JOINED.value
_REJOINED: typing.Final = EventKind.REJOINED.value
_ROLE_ADDED: typing.Final = EventKind.ROLE_ADDED.value
_ROLE_REMOVED: typing.Final = EventKind.ROLE_REMOVED.value
_MEMBER_FIELDS: typing.Final = (
    ("nickname", EventKind.NICKNAME_CHANGED.value),
    ("premium_since", EventKind.PREMIUM_SINCE_CHANGED.value),
    ("communication_disabled_until", EventKind.TIMEOUT_CHANGED.value),
    ("pending", EventKind.PENDING_CHANGED.value),
    ("flags", EventKind.FLAGS_CHANGED.value),
    ("guild_avatar_hash", EventKind.GUILD_AVATAR_CHANGED.value),
)
_USER_FIELDS: typing.Final = (
    ("username", EventKind.USERNAME_CHANGED.value),
    ("global_name", EventKind.GLOBAL_NAME_CHANGED.value),
)
_ALL_FIELDS: typing.Final = (*_USER_FIELDS, *_MEMBER_FIELDS)


def created_events(state: MemberState) -> list[MemberEvent]:
    """A member the replica did not hold, found after the guild's baseline: `joined`, then its roles.

    Only called once the guild has been reconciled in full before; the first sync writes nothing.
    """
    flat: list[typing.Any] = []
    add_created_events(flat, state)
    return _grouped(flat)


def change_events(change: MemberChange, *, rejoined: bool) -> list[MemberEvent]:
    """The events of an updated or rejoined member, compared with the state it replaces.

    A departure ends every role interval of the member (the store writes `role_removed` for each link
    it holds then); so a rejoin records `role_added` for every role the member has again, whatever
    the stored links say. Username and global name are user-level: recorded once, in the guild whose
    run observed the change (the `users` row is shared, so no other guild sees it change).
    """
    flat: list[typing.Any] = []
    add_change_events(flat, change, rejoined=rejoined)
    return _grouped(flat)


EVENT_WIDTH: typing.Final = len(MemberEvent._fields)
"""Values per event in the flat form: user_id, kind, old_value, new_value, role_id."""


def _grouped(flat: list[typing.Any]) -> list[MemberEvent]:
    return [MemberEvent(*flat[i : i + EVENT_WIDTH]) for i in range(0, len(flat), EVENT_WIDTH)]


def add_created_events(flat: list[typing.Any], state: MemberState) -> None:
    """`created_events`, appended to `flat` as plain values (`EVENT_WIDTH` per event).

    The store's form: a drift run writes tens of thousands of events, and an object per event is
    work for Python's collector, which walks the whole (million-member) heap now and then.
    """
    user_id = state.user_id
    flat += (user_id, _JOINED, None, None, None)
    for role_id in sorted(state.role_ids):
        flat += (user_id, _ROLE_ADDED, None, None, role_id)


def add_change_events(flat: list[typing.Any], change: MemberChange, *, rejoined: bool) -> None:
    """`change_events`, appended to `flat` as plain values (see `add_created_events`)."""
    user_id = change.user_id
    new = change.state
    old = change.previous
    if rejoined:
        flat += (user_id, _REJOINED, None, None, None)
    if old is not None:
        fields = _ALL_FIELDS if change.user_changed else _MEMBER_FIELDS
        for name, kind in fields:
            before = getattr(old, name)
            after = getattr(new, name)
            if before != after:
                flat += (user_id, kind, event_text(before), event_text(after), None)
    if rejoined:
        for role_id in sorted(new.role_ids):
            flat += (user_id, _ROLE_ADDED, None, None, role_id)
        return
    if change.roles_removed:
        for role_id in sorted(change.roles_removed):
            flat += (user_id, _ROLE_REMOVED, None, None, role_id)
    if change.roles_added:
        for role_id in sorted(change.roles_added):
            flat += (user_id, _ROLE_ADDED, None, None, role_id)


def redact(state: MemberState) -> MemberState:
    """A forgotten user's state: every name and avatar gone, the rest (roles, times, flags) kept.

    The engine hands the store this instead of Discord's state for users on the forgotten list, so
    their names are never stored again (the username column is NOT NULL: an empty string).
    """
    if not (state.username or state.global_name or state.avatar_hash or state.nickname or state.guild_avatar_hash):
        return state
    return attrs.evolve(state, username="", global_name=None, avatar_hash=None, nickname=None, guild_avatar_hash=None)
