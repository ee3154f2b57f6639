"""Properties of the diff over random guilds: it converges, is idempotent, never deletes, force is harmless."""

from __future__ import annotations

import datetime

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.domain import (
    FingerprintMemo,
    GuildSnapshot,
    MemberState,
    MemberStatus,
    RoleState,
    Scope,
    StoredFingerprints,
    StoredMember,
    StoredRole,
    StoredSnapshot,
    apply_to,
    compare_fingerprints,
    fingerprint,
    plan_changes,
)

GUILD = 7
USER_IDS = st.integers(min_value=1, max_value=12)
ROLE_IDS = st.integers(min_value=100, max_value=106)
TEXT = st.text(max_size=4)
MAYBE_TEXT = st.none() | TEXT
DATES = st.none() | st.datetimes(
    min_value=datetime.datetime(2015, 1, 1), max_value=datetime.datetime(2030, 1, 1), timezones=st.just(datetime.UTC)
)


@st.composite
def member_states(draw: st.DrawFn, user_id: int) -> MemberState:
    return MemberState(
        user_id=user_id,
        username=draw(st.sampled_from(["a", "b"]) | TEXT),
        global_name=draw(MAYBE_TEXT),
        avatar_hash=draw(st.none() | st.sampled_from(["h1", "h2"])),
        is_bot=draw(st.booleans()),
        nickname=draw(MAYBE_TEXT),
        joined_at=draw(DATES),
        role_ids=draw(st.frozensets(ROLE_IDS, max_size=4)),
    )


@st.composite
def role_states(draw: st.DrawFn, role_id: int) -> RoleState:
    return RoleState(
        role_id=role_id,
        name=draw(st.sampled_from(["mods", "fans"])),
        color=draw(st.integers(0, 2)),
        position=draw(st.integers(0, 2)),
        permissions=draw(st.sampled_from([0, 8, 2**40])),
        managed=draw(st.booleans()),
    )


@st.composite
def scopes(draw: st.DrawFn) -> Scope:
    if draw(st.booleans()):
        return Scope(user_ids=None, roles=draw(st.booleans()))
    return Scope.of_users(draw(st.frozensets(USER_IDS)), roles=draw(st.booleans()))


@st.composite
def desired_snapshots(draw: st.DrawFn, scope: Scope) -> GuildSnapshot:
    ids = draw(st.frozensets(USER_IDS))
    role_ids = draw(st.frozensets(ROLE_IDS))
    return GuildSnapshot(
        guild_id=GUILD,
        members={uid: draw(member_states(uid)) for uid in ids if scope.includes(uid)},
        roles={rid: draw(role_states(rid)) for rid in role_ids},
        scope=scope,
    )


@st.composite
def stored_snapshots(draw: st.DrawFn, like: GuildSnapshot | None = None) -> StoredSnapshot:
    """A whole guild's rows; with `like`, many rows equal the desired ones (unchanged members)."""
    members: dict[int, StoredMember] = {}
    for uid in draw(st.frozensets(USER_IDS)):
        if like is not None and uid in like.members and draw(st.booleans()):
            state = like.members[uid]
        else:
            state = draw(member_states(uid))
        fp = fingerprint(state) if draw(st.booleans()) else draw(st.integers(-(2**63), 2**63 - 1))
        members[uid] = StoredMember(state=state, status=draw(st.sampled_from(MemberStatus)), fingerprint=fp)
    roles = {
        rid: StoredRole(state=draw(role_states(rid)), deleted=draw(st.booleans()))
        for rid in draw(st.frozensets(ROLE_IDS))
    }
    return StoredSnapshot(guild_id=GUILD, members=members, roles=roles)


@st.composite
def cases(draw: st.DrawFn) -> tuple[GuildSnapshot, StoredSnapshot]:
    scope = draw(scopes())
    desired = draw(desired_snapshots(scope))
    return desired, draw(stored_snapshots(desired))


def read(stored: StoredSnapshot, scope: Scope) -> StoredSnapshot:
    """What the store's load_snapshot returns for `scope`."""
    return StoredSnapshot(
        guild_id=stored.guild_id,
        members=dict(scope.select(stored.members)),
        roles=dict(stored.roles) if scope.roles else {},
        scope=scope,
    )


def present(stored: StoredSnapshot, scope: Scope) -> dict[int, MemberState]:
    return {uid: row.state for uid, row in scope.select(stored.members) if row.status is not MemberStatus.LEFT}


@settings(max_examples=150, deadline=None)
@given(cases())
def test_applying_the_plan_yields_the_desired_state(case: tuple[GuildSnapshot, StoredSnapshot]) -> None:
    desired, whole = case
    scope = desired.scope

    after = apply_to(whole, plan_changes(desired, read(whole, scope)))

    assert present(after, scope) == dict(desired.members)
    for uid, row in after.members.items():
        before = whole.members.get(uid)
        if not scope.includes(uid):
            assert row == before  # outside the scope nothing moves
        elif before is None or before.status is MemberStatus.LEFT:
            assert row.status is (MemberStatus.ACTIVE if uid in desired.members else MemberStatus.LEFT)
        elif uid in desired.members:
            assert row.status is before.status  # inactive stays inactive, active stays active
        else:
            assert row.status is MemberStatus.LEFT
        if uid in desired.members:
            assert row.fingerprint == fingerprint(row.state)
    if scope.roles:
        assert {rid: r.state for rid, r in after.roles.items() if not r.deleted} == dict(desired.roles)
    else:
        assert after.roles == whole.roles


@settings(max_examples=150, deadline=None)
@given(cases())
def test_a_second_plan_is_empty(case: tuple[GuildSnapshot, StoredSnapshot]) -> None:
    desired, whole = case
    after = apply_to(whole, plan_changes(desired, read(whole, desired.scope)))

    again = plan_changes(desired, read(after, desired.scope))

    assert again.is_empty
    assert again.counts.unchanged == len(desired.members)


@settings(max_examples=150, deadline=None)
@given(cases(), st.booleans())
def test_no_plan_deletes_a_row(case: tuple[GuildSnapshot, StoredSnapshot], force: bool) -> None:
    desired, whole = case

    after = apply_to(whole, plan_changes(desired, read(whole, desired.scope), force=force))

    assert set(after.members) >= set(whole.members)
    assert set(after.roles) >= set(whole.roles)


@settings(max_examples=150, deadline=None)
@given(cases())
def test_force_changes_counts_not_the_result(case: tuple[GuildSnapshot, StoredSnapshot]) -> None:
    desired, whole = case
    actual = read(whole, desired.scope)

    normal = plan_changes(desired, actual)
    forced = plan_changes(desired, actual, force=True)

    assert apply_to(whole, forced) == apply_to(whole, normal)
    assert forced.counts.unchanged == 0
    assert forced.counts.rewritten == normal.counts.unchanged
    assert forced.counts.updated == normal.counts.updated + normal.counts.unchanged
    assert attrs.evolve(forced.counts, updated=0, unchanged=0, rewritten=0) == attrs.evolve(
        normal.counts, updated=0, unchanged=0, rewritten=0
    )


@settings(max_examples=150, deadline=None)
@given(cases())
def test_fingerprint_shortcut_plans_the_same_as_a_full_diff(case: tuple[GuildSnapshot, StoredSnapshot]) -> None:
    # The engine's cheap path: compare fingerprints, load and diff the dirty members only.
    desired, whole = case
    scope = desired.scope
    full = plan_changes(desired, read(whole, scope))
    stored_fps = StoredFingerprints(
        guild_id=GUILD,
        fingerprints={
            uid: row.fingerprint
            for uid, row in scope.select(whole.members)
            if row.status is not MemberStatus.LEFT and row.fingerprint is not None
        },
        scope=scope,
    )

    comparison = compare_fingerprints(desired, stored_fps)
    narrowed = plan_changes(desired, read(whole, scope.narrow(comparison.dirty))).add_unchanged(comparison.clean)

    assert narrowed.counts == full.counts
    assert apply_to(whole, narrowed) == apply_to(whole, full)


@settings(max_examples=100, deadline=None)
@given(cases(), cases())
def test_the_memo_changes_nothing_but_speed(
    first: tuple[GuildSnapshot, StoredSnapshot], second: tuple[GuildSnapshot, StoredSnapshot]
) -> None:
    memo = FingerprintMemo()
    for desired, whole in (first, second, first):
        stored_fps = StoredFingerprints(
            guild_id=GUILD,
            fingerprints={
                uid: row.fingerprint
                for uid, row in whole.members.items()
                if row.status is not MemberStatus.LEFT and row.fingerprint is not None
            },
        )
        fresh = attrs.evolve(desired, members={uid: attrs.evolve(m) for uid, m in desired.members.items()})

        assert compare_fingerprints(fresh, stored_fps, memo=memo) == compare_fingerprints(desired, stored_fps)
