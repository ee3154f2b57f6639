"""Plain values for both sides of a reconcile: what Discord says (desired) and what the database holds."""

from __future__ import annotations

__all__ = [
    "GuildSnapshot",
    "MemberState",
    "MemberStatus",
    "RoleState",
    "Scope",
    "StoredMember",
    "StoredRole",
    "StoredSnapshot",
]

import enum
import logging
import typing

import attrs

if typing.TYPE_CHECKING:
    import datetime
    from collections.abc import Iterable, Mapping

_LOGGER: typing.Final = logging.getLogger(__name__)
_T = typing.TypeVar("_T")


class MemberStatus(enum.StrEnum):
    """Lifecycle of a member row; rows are never deleted."""

    ACTIVE = "active"
    """Present on Discord."""
    INACTIVE = "inactive"
    """Present on Discord, but no activity for a while (set by cleanup only, undone by a message)."""
    LEFT = "left"
    """No longer in the guild (left, kicked or banned); the row keeps its last known state."""


@attrs.define(frozen=True, kw_only=True, slots=True)
class MemberState:
    """Everything the replica keeps about one member of one guild, as Discord reports it.

    `joined_at` is a timezone-aware datetime (UTC); `role_ids` excludes the guild's @everyone role,
    as Discord does. The fields after `role_ids` are the ones admins ask about (boost, timeout,
    screening, member flags, guild avatar); they are stored and fingerprinted like the others.
    """

    user_id: int
    username: str
    global_name: str | None = None
    avatar_hash: str | None = None
    is_bot: bool = False
    nickname: str | None = None
    joined_at: datetime.datetime | None = None
    role_ids: frozenset[int] = frozenset()
    premium_since: datetime.datetime | None = None
    """Since when the member boosts the guild (None: not boosting)."""
    communication_disabled_until: datetime.datetime | None = None
    """Until when the member is timed out, as Discord sends it (may lie in the past)."""
    pending: bool = False
    """Has not passed membership screening yet."""
    flags: int = 0
    """The guild member flags bit set (DID_REJOIN 1<<0, COMPLETED_ONBOARDING 1<<1, ...)."""
    guild_avatar_hash: str | None = None
    """The member's guild-specific avatar (None: the user's avatar is shown)."""
    # Memo for `fingerprint()`: the same desired state is fingerprinted once when the engine looks for
    # dirty members and reused when the store writes it. Not part of the value (no eq/hash/repr).
    _fingerprint: int | None = attrs.field(default=None, init=False, eq=False, repr=False, hash=False)


@attrs.define(frozen=True, kw_only=True, slots=True)
class RoleState:
    """A guild role as Discord reports it."""

    role_id: int
    name: str
    color: int = 0
    position: int = 0
    permissions: int = 0
    managed: bool = False


@attrs.define(frozen=True, kw_only=True, slots=True)
class StoredMember:
    """A member row: its last written state, its status and the fingerprint stored beside it.

    `fingerprint` is None when unknown (hand-built snapshots); the store always fills it.
    """

    state: MemberState
    status: MemberStatus = MemberStatus.ACTIVE
    fingerprint: int | None = None


@attrs.define(frozen=True, kw_only=True, slots=True)
class StoredRole:
    """A role row; `deleted` when Discord deleted the role (the row is kept with `deleted_at`)."""

    state: RoleState
    deleted: bool = False


@attrs.define(frozen=True, kw_only=True, slots=True)
class Scope:
    """What a reconcile looks at in one guild: every member or a set of user ids, and the roles or not.

    Requests for one guild merge while queued (`merge`); the diff only ever touches what is in scope,
    so a partial scope never marks anyone outside it as left.
    """

    user_ids: frozenset[int] | None = None
    """None means every member of the guild; an empty set means no member."""
    roles: bool = True
    """Whether the guild's roles are compared too."""

    @classmethod
    def everything(cls) -> Scope:
        """Every member and the roles."""
        return _EVERYTHING

    @classmethod
    def of_users(cls, user_ids: Iterable[int], *, roles: bool = False) -> Scope:
        """These members only (and the roles if asked)."""
        return cls(user_ids=frozenset(user_ids), roles=roles)

    @classmethod
    def roles_only(cls) -> Scope:
        """The roles and no member."""
        return _ROLES_ONLY

    @property
    def all_members(self) -> bool:
        """True when every member of the guild is in scope."""
        return self.user_ids is None

    @property
    def is_empty(self) -> bool:
        """True when nothing is in scope (no member, no role)."""
        return not self.roles and self.user_ids is not None and not self.user_ids

    def includes(self, user_id: int) -> bool:
        """Whether the member with this id is in scope."""
        return self.user_ids is None or user_id in self.user_ids

    def select(self, items: Mapping[int, _T]) -> Iterable[tuple[int, _T]]:
        """The entries of a mapping keyed by user id whose member is in scope."""
        user_ids = self.user_ids
        if user_ids is None:
            return items.items()
        # Keep the mapping's order (usually sorted or arrival order; a set's order is hash order,
        # which scatters writes over the database's b-trees) unless the scope is much smaller.
        if len(user_ids) * 8 >= len(items):
            return ((user_id, value) for user_id, value in items.items() if user_id in user_ids)
        return ((user_id, items[user_id]) for user_id in user_ids if user_id in items)

    def merge(self, other: Scope) -> Scope:
        """The union of two requests: everything absorbs the rest, id sets add up, roles if either asks."""
        if self.user_ids is None or other.user_ids is None:
            return Scope(user_ids=None, roles=self.roles or other.roles)
        return Scope(user_ids=self.user_ids | other.user_ids, roles=self.roles or other.roles)

    def intersect(self, other: Scope) -> Scope:
        """What both scopes cover."""
        if self.user_ids is None:
            user_ids = other.user_ids
        elif other.user_ids is None:
            user_ids = self.user_ids
        else:
            user_ids = self.user_ids & other.user_ids
        return Scope(user_ids=user_ids, roles=self.roles and other.roles)

    def narrow(self, user_ids: Iterable[int]) -> Scope:
        """The same roles flag over these members only (the members of `user_ids` this scope includes)."""
        ids = frozenset(user_ids)
        if self.user_ids is not None:
            ids &= self.user_ids
        return Scope(user_ids=ids, roles=self.roles)


_EVERYTHING: typing.Final = Scope(user_ids=None, roles=True)
_ROLES_ONLY: typing.Final = Scope(user_ids=frozenset(), roles=True)


@attrs.define(frozen=True, kw_only=True, slots=True)
class GuildSnapshot:
    """The desired state of a guild (from Discord), for `scope`.

    `members` holds the members in scope that are present on Discord; `roles` every role when
    `scope.roles`. The default scope says the snapshot is complete.
    """

    guild_id: int
    members: Mapping[int, MemberState]
    roles: Mapping[int, RoleState] = attrs.field(factory=dict[int, RoleState])
    scope: Scope = _EVERYTHING


@attrs.define(frozen=True, kw_only=True, slots=True)
class StoredSnapshot:
    """The actual state of a guild (from the database), for `scope`: every row in scope, left ones too."""

    guild_id: int
    members: Mapping[int, StoredMember]
    roles: Mapping[int, StoredRole] = attrs.field(factory=dict[int, StoredRole])
    scope: Scope = _EVERYTHING
