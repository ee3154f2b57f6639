"""The pure diff: desired and stored state in, the writes that make them equal out."""

from __future__ import annotations

__all__ = ["ChangeCounts", "ChangeSet", "MemberChange", "apply_to", "plan_changes"]

import logging
import typing

import attrs

from reconciler.domain.fingerprints import fingerprint
from reconciler.domain.state import MemberStatus, StoredMember, StoredRole, StoredSnapshot

if typing.TYPE_CHECKING:
    from collections.abc import Iterator
    from collections.abc import Set as AbstractSet

    from reconciler.domain.state import GuildSnapshot, MemberState, RoleState, Scope

_LOGGER: typing.Final = logging.getLogger(__name__)


@attrs.define(frozen=True, kw_only=True, slots=True)
class ChangeCounts:
    """What a change set does, for the run report and the metrics."""

    created: int = 0
    updated: int = 0
    """Members rewritten; includes `rewritten`."""
    unchanged: int = 0
    left: int = 0
    rejoined: int = 0
    links_added: int = 0
    links_removed: int = 0
    roles_created: int = 0
    roles_updated: int = 0
    roles_deleted: int = 0
    rewritten: int = 0
    """Members rewritten only because the plan was forced (their stored row was already equal)."""

    @property
    def members_changed(self) -> int:
        """Members whose row is written (created, updated, left or rejoined)."""
        return self.created + self.updated + self.left + self.rejoined

    def __add__(self, other: ChangeCounts) -> ChangeCounts:
        return ChangeCounts(
            **{field.name: getattr(self, field.name) + getattr(other, field.name) for field in _COUNT_FIELDS}
        )


_COUNT_FIELDS: typing.Final = attrs.fields(ChangeCounts)


@attrs.define(frozen=True, kw_only=True, slots=True)
class MemberChange:
    """An existing member row to rewrite with `state`, and its role links to add and remove."""

    state: MemberState
    roles_added: frozenset[int] = frozenset()
    roles_removed: frozenset[int] = frozenset()
    user_changed: bool = True
    """Whether the user's own fields (username, global name, avatar, bot flag) differ: if not, the
    store leaves the shared `users` row alone."""
    previous: MemberState | None = attrs.field(default=None, eq=False, repr=False)
    """The stored state this change replaces (for the member's history); None when not known.
    Not part of the change's value: two changes that write the same thing are equal."""

    @property
    def user_id(self) -> int:
        """The member's user id."""
        return self.state.user_id


@attrs.define(frozen=True, kw_only=True, slots=True)
class ChangeSet:
    """The writes that make the stored state of one guild equal to Discord's, for one scope.

    Members are never deleted: departures become `members_to_leave` (status 'left'). A created member's
    role links are its `role_ids`; an updated or rejoined member carries its link changes. A member's
    row, user and links are written together, so the store can cut the members into batches freely.
    """

    guild_id: int
    scope: Scope
    members_to_create: tuple[MemberState, ...] = ()
    members_to_update: tuple[MemberChange, ...] = ()
    members_to_rejoin: tuple[MemberChange, ...] = ()
    """Members marked left that are back: status 'active', `left_at` cleared, state rewritten."""
    members_to_leave: tuple[int, ...] = ()
    """User ids of present members no longer on Discord: status 'left', `left_at` set, row kept."""
    fingerprints_to_refresh: tuple[tuple[int, int], ...] = ()
    """(user id, fingerprint) of unchanged members whose stored fingerprint is stale (not counted)."""
    roles_to_create: tuple[RoleState, ...] = ()
    roles_to_update: tuple[RoleState, ...] = ()
    """Changed roles, and deleted roles that Discord lists again (their `deleted_at` is cleared)."""
    roles_to_delete: tuple[int, ...] = ()
    """Role ids gone from Discord: `deleted_at` set, row kept."""
    counts: ChangeCounts = attrs.field(factory=ChangeCounts)

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to write."""
        return not (
            self.members_to_create
            or self.members_to_update
            or self.members_to_rejoin
            or self.members_to_leave
            or self.fingerprints_to_refresh
            or self.roles_to_create
            or self.roles_to_update
            or self.roles_to_delete
        )

    @property
    def departures(self) -> int:
        """How many members this change set marks as left (for the mass-departure guard)."""
        return len(self.members_to_leave)

    @property
    def member_operations(self) -> int:
        """Member rows this change set writes (the unit of `Store.apply` progress)."""
        return (
            len(self.members_to_create)
            + len(self.members_to_update)
            + len(self.members_to_rejoin)
            + len(self.members_to_leave)
            + len(self.fingerprints_to_refresh)
        )

    def role_links_to_add(self) -> Iterator[tuple[int, int]]:
        """Every (user id, role id) link this change set adds, created members' included."""
        for member in self.members_to_create:
            for role_id in member.role_ids:
                yield member.user_id, role_id
        for change in (*self.members_to_update, *self.members_to_rejoin):
            for role_id in change.roles_added:
                yield change.user_id, role_id

    def role_links_to_remove(self) -> Iterator[tuple[int, int]]:
        """Every (user id, role id) link this change set removes."""
        for change in (*self.members_to_update, *self.members_to_rejoin):
            for role_id in change.roles_removed:
                yield change.user_id, role_id

    def keep_departures(self, allowed: AbstractSet[int]) -> ChangeSet:
        """This change set marking left only the members in `allowed`, the rest of its writes as they are.

        A run counts its departures before it writes anything (the mass-departure guard decides on
        them); a member who vanished from the cache while the run went on is left to its own event.
        """
        kept = tuple(user_id for user_id in self.members_to_leave if user_id in allowed)
        if len(kept) == len(self.members_to_leave):
            return self
        return attrs.evolve(self, members_to_leave=kept, counts=attrs.evolve(self.counts, left=len(kept)))

    def add_unchanged(self, count: int) -> ChangeSet:
        """This change set with `count` more unchanged members (those a fingerprint match left out)."""
        if not count:
            return self
        return attrs.evolve(self, counts=attrs.evolve(self.counts, unchanged=self.counts.unchanged + count))


def plan_changes(desired: GuildSnapshot, actual: StoredSnapshot, *, force: bool = False) -> ChangeSet:
    """Diff Discord's state of a guild against the stored one, over the scope both snapshots cover.

    Only members and roles inside `desired.scope ∩ actual.scope` are considered, so a partial scope
    never marks anyone outside it as left. 'inactive' members present on Discord stay inactive
    (only activity makes them active again); 'left' members present on Discord rejoin. `force`
    rewrites present members whose row is already equal: it changes the counts, not the result.
    """
    if desired.guild_id != actual.guild_id:
        msg = f"snapshots of different guilds: {desired.guild_id} != {actual.guild_id}"
        raise ValueError(msg)
    scope = desired.scope.intersect(actual.scope)
    wanted = desired.members
    stored = actual.members
    creates: list[MemberState] = []
    updates: list[MemberChange] = []
    rejoins: list[MemberChange] = []
    leaves: list[int] = []
    refreshes: list[tuple[int, int]] = []
    unchanged = rewritten = links_added = links_removed = 0

    for user_id, want in scope.select(wanted):
        row = stored.get(user_id)
        if row is None:
            creates.append(want)
            links_added += len(want.role_ids)
            continue
        have = row.state
        if row.status is not MemberStatus.LEFT and have == want:
            if force:
                updates.append(MemberChange(state=want, user_changed=True, previous=have))
                rewritten += 1
            else:
                unchanged += 1
                if row.fingerprint is not None and row.fingerprint != (value := fingerprint(want)):
                    refreshes.append((user_id, value))
            continue
        added = want.role_ids - have.role_ids
        removed = have.role_ids - want.role_ids
        links_added += len(added)
        links_removed += len(removed)
        user_changed = (
            have.username != want.username
            or have.global_name != want.global_name
            or have.avatar_hash != want.avatar_hash
            or have.is_bot != want.is_bot
        )
        change = MemberChange(
            state=want, roles_added=added, roles_removed=removed, user_changed=user_changed, previous=have
        )
        (rejoins if row.status is MemberStatus.LEFT else updates).append(change)

    for user_id, row in scope.select(stored):
        if row.status is not MemberStatus.LEFT and user_id not in wanted:
            leaves.append(user_id)

    role_creates: list[RoleState] = []
    role_updates: list[RoleState] = []
    role_deletes: list[int] = []
    if scope.roles:
        for role_id, role in desired.roles.items():
            stored_role = actual.roles.get(role_id)
            if stored_role is None:
                role_creates.append(role)
            elif stored_role.deleted or stored_role.state != role:
                role_updates.append(role)
        role_deletes.extend(
            role_id
            for role_id, stored_role in actual.roles.items()
            if not stored_role.deleted and role_id not in desired.roles
        )

    counts = ChangeCounts(
        created=len(creates),
        updated=len(updates),
        unchanged=unchanged,
        left=len(leaves),
        rejoined=len(rejoins),
        links_added=links_added,
        links_removed=links_removed,
        roles_created=len(role_creates),
        roles_updated=len(role_updates),
        roles_deleted=len(role_deletes),
        rewritten=rewritten,
    )
    return ChangeSet(
        guild_id=desired.guild_id,
        scope=scope,
        members_to_create=tuple(creates),
        members_to_update=tuple(updates),
        members_to_rejoin=tuple(rejoins),
        members_to_leave=tuple(leaves),
        fingerprints_to_refresh=tuple(refreshes),
        roles_to_create=tuple(role_creates),
        roles_to_update=tuple(role_updates),
        roles_to_delete=tuple(role_deletes),
        counts=counts,
    )


def apply_to(actual: StoredSnapshot, change_set: ChangeSet) -> StoredSnapshot:
    """What the store holds after writing `change_set` over `actual` (the pure model of `Store.apply`).

    Raises `KeyError` when the change set updates a member or role that `actual` does not hold.
    """
    if change_set.guild_id != actual.guild_id:
        msg = f"change set for guild {change_set.guild_id} applied to guild {actual.guild_id}"
        raise ValueError(msg)
    members = dict(actual.members)
    for state in change_set.members_to_create:
        members[state.user_id] = StoredMember(state=state, fingerprint=fingerprint(state))
    for change in change_set.members_to_update:
        members[change.user_id] = _rewrite(members[change.user_id], change, members[change.user_id].status)
    for change in change_set.members_to_rejoin:
        members[change.user_id] = _rewrite(members[change.user_id], change, MemberStatus.ACTIVE)
    for user_id in change_set.members_to_leave:
        members[user_id] = attrs.evolve(members[user_id], status=MemberStatus.LEFT)
    for user_id, value in change_set.fingerprints_to_refresh:
        members[user_id] = attrs.evolve(members[user_id], fingerprint=value)

    roles = dict(actual.roles)
    for role in (*change_set.roles_to_create, *change_set.roles_to_update):
        roles[role.role_id] = StoredRole(state=role)
    for role_id in change_set.roles_to_delete:
        roles[role_id] = attrs.evolve(roles[role_id], deleted=True)
    return StoredSnapshot(guild_id=actual.guild_id, members=members, roles=roles, scope=actual.scope)


def _rewrite(row: StoredMember, change: MemberChange, status: MemberStatus) -> StoredMember:
    # The links come from the stored ones plus the change's link operations, as the store writes them.
    role_ids = (row.state.role_ids | change.roles_added) - change.roles_removed
    state = change.state if role_ids == change.state.role_ids else attrs.evolve(change.state, role_ids=role_ids)
    return StoredMember(state=state, status=status, fingerprint=fingerprint(state))
