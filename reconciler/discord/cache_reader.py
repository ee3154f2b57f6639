"""The desired state: what hikari's gateway cache says about a guild, as plain domain values.

hikari updates its cache before it dispatches an event, so a listener that reads here sees the state
the event produced. Reading is synchronous and never awaits: a snapshot is one consistent instant.
"""

from __future__ import annotations

__all__ = ["CacheReader"]

import collections.abc
import logging
import typing

from reconciler.domain import GuildSnapshot, MemberState, RoleState, Scope

if typing.TYPE_CHECKING:
    from collections.abc import Container, Iterable, Iterator, Mapping
    from collections.abc import Set as AbstractSet

    import hikari

    from reconciler.discord.readiness import GuildReadiness

_LOGGER: typing.Final = logging.getLogger(__name__)


def member_state(member: hikari.Member, known_roles: Container[int]) -> MemberState:
    """One hikari member as the replica stores it.

    @everyone is implied, never a link. Role ids the guild does not have (a role deleted since the
    member was cached: Discord sends no member update for that) are dropped, as Discord itself would.
    """
    user = member.user
    guild_id = member.guild_id
    return MemberState(
        user_id=int(user.id),
        username=user.username,
        global_name=user.global_name,
        avatar_hash=user.avatar_hash,
        is_bot=user.is_bot,
        nickname=member.nickname,
        joined_at=member.joined_at,
        role_ids=frozenset(int(r) for r in member.role_ids if r != guild_id and r in known_roles),
        premium_since=member.premium_since,
        communication_disabled_until=member.raw_communication_disabled_until,
        pending=member.is_pending is True,
        flags=int(member.guild_flags),
        guild_avatar_hash=member.guild_avatar_hash,
    )


def role_state(role: hikari.Role) -> RoleState:
    return RoleState(
        role_id=int(role.id),
        name=role.name,
        color=int(role.color),
        position=role.position,
        permissions=int(role.permissions),
        managed=role.is_managed,
    )


class CacheReader:
    """Reads guild state out of hikari's cache (the narrow read-only `hikari.api.Cache`), behind the gate."""

    def __init__(self, cache: hikari.api.Cache, readiness: GuildReadiness) -> None:
        self._cache = cache
        self._readiness = readiness

    def is_ready(self, guild_id: int) -> bool:
        return self._readiness.is_ready(guild_id)

    def ready_token(self, guild_id: int) -> int | None:
        """None while the guild is loading; otherwise a value that changes whenever the cache is refilled.

        hikari clears the cache on GUILD_CREATE synchronously but tells our listener a moment later,
        so a run compares the token taken with its snapshot to the one after its first database
        round trip (by then the listener has run): equal tokens prove the snapshot was complete.
        """
        if not self._readiness.is_ready(guild_id):
            return None
        return self._readiness.generation(guild_id)

    def snapshot(self, guild_id: int, scope: Scope) -> GuildSnapshot:
        """Members in scope that are on the guild now, and its roles if the scope includes them."""
        cached_roles = self._cache.get_roles_view_for_guild(guild_id)
        known_roles = frozenset(int(r) for r in cached_roles)
        members: dict[int, MemberState] = {}
        records = _member_records(self._cache, guild_id)
        # A scope's members come out in user id order (its set's order is hash order): the writes they
        # turn into then walk the database's b-trees in key order.
        if records is not None:
            if scope.user_ids is not None:
                records = {uid: records[uid] for uid in sorted(scope.user_ids) if uid in records}
            members = _states_from_records(records, guild_id, known_roles)
        elif scope.user_ids is None:
            for member in self._cache.get_members_view_for_guild(guild_id).values():
                state = member_state(member, known_roles)
                members[state.user_id] = state
        else:
            for user_id in sorted(scope.user_ids):
                member = self._cache.get_member(guild_id, user_id)
                if member is not None:
                    members[user_id] = member_state(member, known_roles)
        roles: dict[int, RoleState] = {}
        if scope.roles:
            roles = {int(r.id): role_state(r) for r in cached_roles.values()}
        return GuildSnapshot(guild_id=guild_id, members=members, roles=roles, scope=scope)

    def member_ids(self, guild_id: int) -> AbstractSet[int]:
        """The user ids of the guild's members in the cache, read when asked: a run about one member
        looks one id up, not a million."""
        records = _member_records(self._cache, guild_id)
        if records is not None:
            return _MemberIds(records)
        return {int(uid) for uid in self._cache.get_members_view_for_guild(guild_id)}

    def member_count(self, guild_id: int) -> int:
        """Members in the cache now (what Discord says while the guild is ready)."""
        records = _member_records(self._cache, guild_id)
        if records is not None:
            return sum(1 for cell in records.values() if not cell.object.has_been_deleted)
        return len(self._cache.get_members_view_for_guild(guild_id))

    def reported_member_count(self, guild_id: int) -> int | None:
        """The member count Discord put in the guild's last GUILD_CREATE."""
        guild = self._cache.get_guild(guild_id)
        return None if guild is None else guild.member_count

    def guild_name(self, guild_id: int) -> str | None:
        guild = self._cache.get_guild(guild_id)
        return None if guild is None else guild.name

    def guild_ids(self) -> list[int]:
        return [int(g) for g in self._cache.get_available_guilds_view()]


class _MemberIds(collections.abc.Set[int]):
    """A live view of the ids in hikari's member records (those not marked deleted)."""

    __slots__ = ("_records",)

    def __init__(self, records: Mapping[int, typing.Any]) -> None:
        self._records = records

    def __contains__(self, user_id: object) -> bool:
        cell = self._records.get(user_id)  # pyright: ignore[reportArgumentType, reportCallIssue]
        return cell is not None and not cell.object.has_been_deleted

    def __iter__(self) -> Iterator[int]:
        return (int(uid) for uid, cell in self._records.items() if not cell.object.has_been_deleted)

    def __len__(self) -> int:
        return sum(1 for cell in self._records.values() if not cell.object.has_been_deleted)

    @classmethod
    def _from_iterable(cls, values: Iterable[int]) -> set[int]:  # pyright: ignore[reportIncompatibleMethodOverride]
        # Results of set operations (`ids & view`) are plain sets, not views.
        return set(values)


def _member_records(cache: hikari.api.Cache, guild_id: int) -> Mapping[int, typing.Any] | None:
    """hikari's own member records of a guild, or None where this hikari does not keep them so.

    The public view builds a `Member` (copying its user) for every record: about 20 us a member,
    most of a 1M-member reconcile's read. The records hold the same values; a test checks that both
    roads give the same snapshot, so a hikari upgrade that changes them is caught, and any surprise
    falls back to the public view.
    """
    entries: object = getattr(cache, "_guild_entries", None)
    if not isinstance(entries, collections.abc.Mapping):
        return None
    record: object = typing.cast("Mapping[int, object]", entries).get(guild_id)
    members: object = getattr(record, "members", None)
    if record is None or members is None:
        return {}
    if not isinstance(members, collections.abc.Mapping):
        return None
    return typing.cast("Mapping[int, typing.Any]", members)


def _states_from_records(
    records: Mapping[int, typing.Any], guild_id: int, known_roles: Iterable[int]
) -> dict[int, MemberState]:
    # Role id (hikari's Snowflake, or an int: equal and hashed alike) -> the plain int the domain keeps;
    # @everyone and roles the guild no longer has map to nothing (see `member_state`).
    role_id = {int(r): int(r) for r in known_roles if r != guild_id}.get
    members: dict[int, MemberState] = {}
    for cell in records.values():
        data = cell.object
        if data.has_been_deleted:
            continue
        user = data.user.object
        user_id = int(user.id)
        members[user_id] = MemberState(
            user_id=user_id,
            username=user.username,
            global_name=user.global_name,
            avatar_hash=user.avatar_hash,
            is_bot=user.is_bot,
            nickname=data.nickname,
            joined_at=data.joined_at,
            role_ids=_known(frozenset(map(role_id, data.role_ids))),
            premium_since=data.premium_since,
            communication_disabled_until=data.raw_communication_disabled_until,
            pending=data.is_pending is True,
            flags=int(data.guild_flags),
            guild_avatar_hash=data.guild_avatar_hash,
        )
    return members


def _known(role_ids: frozenset[int | None]) -> frozenset[int]:
    return typing.cast("frozenset[int]", role_ids - {None} if None in role_ids else role_ids)
