"""plan_changes and apply_to on hand-written cases: each row is a situation and the exact expected writes."""

from __future__ import annotations

import datetime

import attrs
import pytest

from reconciler.domain import (
    ChangeCounts,
    GuildSnapshot,
    MemberChange,
    MemberState,
    MemberStatus,
    RoleState,
    Scope,
    StoredMember,
    StoredRole,
    StoredSnapshot,
    apply_to,
    fingerprint,
    plan_changes,
)

GUILD = 100
JOINED = datetime.datetime(2023, 4, 5, 6, 7, 8, tzinfo=datetime.UTC)


def member(user_id: int, *, nickname: str | None = None, roles: tuple[int, ...] = ()) -> MemberState:
    return MemberState(
        user_id=user_id,
        username=f"user{user_id}",
        global_name=f"User {user_id}",
        nickname=nickname,
        joined_at=JOINED,
        role_ids=frozenset(roles),
    )


def stored(state: MemberState, status: MemberStatus = MemberStatus.ACTIVE) -> StoredMember:
    return StoredMember(state=state, status=status, fingerprint=fingerprint(state))


def desired(*members: MemberState, roles: tuple[RoleState, ...] = (), scope: Scope | None = None) -> GuildSnapshot:
    return GuildSnapshot(
        guild_id=GUILD,
        members={m.user_id: m for m in members},
        roles={r.role_id: r for r in roles},
        scope=scope or Scope.everything(),
    )


def actual(*rows: StoredMember, roles: tuple[StoredRole, ...] = (), scope: Scope | None = None) -> StoredSnapshot:
    return StoredSnapshot(
        guild_id=GUILD,
        members={r.state.user_id: r for r in rows},
        roles={r.state.role_id: r for r in roles},
        scope=scope or Scope.everything(),
    )


def test_new_member_is_created_with_its_links() -> None:
    new = member(1, roles=(10, 11))

    changes = plan_changes(desired(new), actual())

    assert changes.members_to_create == (new,)
    assert sorted(changes.role_links_to_add()) == [(1, 10), (1, 11)]
    assert changes.counts == ChangeCounts(created=1, links_added=2)


def test_changed_nickname_is_an_update() -> None:
    before = member(1, nickname="old")
    after = member(1, nickname="new")

    changes = plan_changes(desired(after), actual(stored(before)))

    assert changes.members_to_update == (MemberChange(state=after, user_changed=False),)
    assert changes.counts == ChangeCounts(updated=1)


def test_a_changed_user_is_flagged_for_the_shared_users_row() -> None:
    before = member(1)
    renamed = attrs.evolve(member(1), username="new name")

    changes = plan_changes(desired(renamed), actual(stored(before)))

    assert changes.members_to_update == (MemberChange(state=renamed, user_changed=True),)


def test_role_changes_are_link_operations() -> None:
    before = member(1, roles=(10, 11))
    after = member(1, roles=(11, 12))

    changes = plan_changes(desired(after), actual(stored(before)))

    assert changes.members_to_update == (
        MemberChange(state=after, roles_added=frozenset({12}), roles_removed=frozenset({10}), user_changed=False),
    )
    assert list(changes.role_links_to_add()) == [(1, 12)]
    assert list(changes.role_links_to_remove()) == [(1, 10)]
    assert changes.counts == ChangeCounts(updated=1, links_added=1, links_removed=1)


def test_member_gone_from_discord_is_marked_left_and_kept() -> None:
    gone = member(1, roles=(10,))

    changes = plan_changes(desired(), actual(stored(gone)))
    after = apply_to(actual(stored(gone)), changes)

    assert changes.members_to_leave == (1,)
    assert changes.departures == 1
    assert changes.counts == ChangeCounts(left=1)
    assert after.members[1].status is MemberStatus.LEFT
    assert after.members[1].state == gone


def test_member_already_left_and_still_gone_is_untouched() -> None:
    changes = plan_changes(desired(), actual(stored(member(1), MemberStatus.LEFT)))

    assert changes.is_empty
    assert changes.counts == ChangeCounts()


def test_left_member_who_comes_back_rejoins() -> None:
    before = member(1, nickname="old", roles=(10,))
    back = member(1, roles=(11,))

    changes = plan_changes(desired(back), actual(stored(before, MemberStatus.LEFT)))
    after = apply_to(actual(stored(before, MemberStatus.LEFT)), changes)

    assert changes.members_to_rejoin == (
        MemberChange(state=back, roles_added=frozenset({11}), roles_removed=frozenset({10}), user_changed=False),
    )
    assert changes.counts == ChangeCounts(rejoined=1, links_added=1, links_removed=1)
    assert after.members[1] == stored(back)


def test_left_member_back_with_the_same_state_still_rejoins() -> None:
    same = member(1)

    changes = plan_changes(desired(same), actual(stored(same, MemberStatus.LEFT)))

    assert changes.members_to_rejoin == (MemberChange(state=same, user_changed=False),)
    assert changes.counts == ChangeCounts(rejoined=1)


def test_inactive_member_present_is_unchanged_and_stays_inactive() -> None:
    same = member(1)

    changes = plan_changes(desired(same), actual(stored(same, MemberStatus.INACTIVE)))

    assert changes.is_empty
    assert changes.counts == ChangeCounts(unchanged=1)


def test_inactive_member_with_a_change_is_updated_and_stays_inactive() -> None:
    before = member(1, nickname="a")
    after_state = member(1, nickname="b")

    changes = plan_changes(desired(after_state), actual(stored(before, MemberStatus.INACTIVE)))
    after = apply_to(actual(stored(before, MemberStatus.INACTIVE)), changes)

    assert changes.counts == ChangeCounts(updated=1)
    assert after.members[1].status is MemberStatus.INACTIVE
    assert after.members[1].state == after_state


def test_inactive_member_gone_is_marked_left() -> None:
    changes = plan_changes(desired(), actual(stored(member(1), MemberStatus.INACTIVE)))

    assert changes.members_to_leave == (1,)


def test_partial_scope_never_touches_members_outside_it() -> None:
    # Discord lists 1 and 3; the request is about users 1 and 2 only; the database has 2 and 4.
    scope = Scope.of_users({1, 2})
    discord = desired(member(1), member(3), scope=scope)
    database = actual(stored(member(2)), stored(member(4)), scope=scope)

    changes = plan_changes(discord, database)

    assert [m.user_id for m in changes.members_to_create] == [1]
    assert changes.members_to_leave == (2,)
    assert changes.counts == ChangeCounts(created=1, left=1)


def test_scope_is_what_both_snapshots_cover() -> None:
    # A complete desired snapshot against a database read for user 2 only: 1 is outside the diff.
    changes = plan_changes(
        desired(member(1), member(2, nickname="n")), actual(stored(member(2)), scope=Scope.of_users({2}))
    )

    assert changes.scope == Scope.of_users({2})
    assert changes.counts == ChangeCounts(updated=1)


def test_unchanged_member_with_stale_fingerprint_gets_it_refreshed() -> None:
    same = member(1)
    row = StoredMember(state=same, fingerprint=12345)

    changes = plan_changes(desired(same), actual(row))

    assert changes.fingerprints_to_refresh == ((1, fingerprint(same)),)
    assert not changes.is_empty
    assert changes.counts == ChangeCounts(unchanged=1)


def test_force_rewrites_unchanged_members() -> None:
    same = member(1)
    changed = member(2, nickname="new")
    discord = desired(same, changed)
    database = actual(stored(same), stored(member(2)))

    normal = plan_changes(discord, database)
    forced = plan_changes(discord, database, force=True)

    assert normal.counts == ChangeCounts(updated=1, unchanged=1)
    assert forced.counts == ChangeCounts(updated=2, rewritten=1)
    assert apply_to(database, forced) == apply_to(database, normal)


ROLE = RoleState(role_id=10, name="mods", color=0xFF0000, position=3, permissions=8, managed=False)


@pytest.mark.parametrize(
    ("discord_roles", "stored_roles", "expected"),
    [
        pytest.param((ROLE,), (), {"roles_to_create": (ROLE,)}, id="new role"),
        pytest.param(
            (attrs.evolve(ROLE, name="admins"),),
            (StoredRole(state=ROLE),),
            {"roles_to_update": (attrs.evolve(ROLE, name="admins"),)},
            id="renamed role",
        ),
        pytest.param((), (StoredRole(state=ROLE),), {"roles_to_delete": (10,)}, id="deleted role"),
        pytest.param((), (StoredRole(state=ROLE, deleted=True),), {}, id="already deleted"),
        pytest.param((ROLE,), (StoredRole(state=ROLE, deleted=True),), {"roles_to_update": (ROLE,)}, id="restored"),
        pytest.param((ROLE,), (StoredRole(state=ROLE),), {}, id="same role"),
    ],
)
def test_roles(
    discord_roles: tuple[RoleState, ...], stored_roles: tuple[StoredRole, ...], expected: dict[str, object]
) -> None:
    changes = plan_changes(desired(roles=discord_roles), actual(roles=stored_roles))

    for name in ("roles_to_create", "roles_to_update", "roles_to_delete"):
        assert getattr(changes, name) == expected.get(name, ())
    assert changes.is_empty == (not expected)


def test_roles_are_ignored_when_out_of_scope() -> None:
    scope = Scope.of_users({1})
    changes = plan_changes(
        desired(roles=(ROLE,), scope=scope), actual(roles=(StoredRole(state=attrs.evolve(ROLE, name="x")),))
    )

    assert changes.is_empty


def test_snapshots_of_different_guilds_are_refused() -> None:
    with pytest.raises(ValueError, match="different guilds"):
        plan_changes(desired(), StoredSnapshot(guild_id=GUILD + 1, members={}))


def test_add_unchanged_only_moves_the_count() -> None:
    changes = plan_changes(desired(member(1)), actual())

    more = changes.add_unchanged(5)

    assert more.counts == attrs.evolve(changes.counts, unchanged=5)
    assert more.members_to_create == changes.members_to_create
    assert changes.add_unchanged(0) is changes


def test_counts_add_up() -> None:
    total = ChangeCounts(created=1, left=2, links_added=3) + ChangeCounts(created=4, unchanged=5)

    assert total == ChangeCounts(created=5, left=2, links_added=3, unchanged=5)
    assert total.members_changed == 7
