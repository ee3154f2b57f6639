"""The Store contract, run against every backend: what apply writes, what the reads return, and the rest."""

from __future__ import annotations

import asyncio
import datetime
import typing

import attrs
import pytest
import sqlalchemy as sa

from reconciler.domain import (
    ActivityDelta,
    GuildSnapshot,
    MemberState,
    MemberStatus,
    RoleState,
    Scope,
    StoredSnapshot,
    compare_fingerprints,
    fingerprint,
    plan_changes,
)
from reconciler.store import SqlStore

if typing.TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from conftest import Clock, StoreFactory

    from reconciler.domain import ChangeSet
    from reconciler.store import ApplyResult

pytestmark = pytest.mark.asyncio

GUILD = 81384788765712384
JOINED = datetime.datetime(2021, 6, 1, 8, 30, 15, 123456, tzinfo=datetime.UTC)
MODS = RoleState(role_id=1001, name="mods", color=0x1ABC9C, position=2, permissions=(1 << 40) | 8, managed=False)
FANS = RoleState(role_id=1002, name="fans", color=0, position=1, permissions=0, managed=True)


def member(
    user_id: int, *, nickname: str | None = None, roles: tuple[int, ...] = (), **fields: typing.Any
) -> MemberState:
    values: dict[str, typing.Any] = {
        "username": f"user{user_id}",
        "global_name": f"User {user_id}",
        "avatar_hash": f"{user_id:032x}",
        "joined_at": JOINED,
    }
    values.update(fields)
    return MemberState(user_id=user_id, nickname=nickname, role_ids=frozenset(roles), **values)


def guild(
    *members: MemberState, roles: tuple[RoleState, ...] = (MODS, FANS), scope: Scope | None = None
) -> GuildSnapshot:
    return GuildSnapshot(
        guild_id=GUILD,
        members={m.user_id: m for m in members},
        roles={r.role_id: r for r in roles},
        scope=scope or Scope.everything(),
    )


async def sync(store: SqlStore, desired: GuildSnapshot, *, force: bool = False) -> tuple[ChangeSet, ApplyResult]:
    """The engine's recipe: fingerprints, then a full diff of the dirty members only."""
    scope = desired.scope
    if force:
        changes = plan_changes(desired, await store.load_snapshot(GUILD, scope), force=True)
    else:
        comparison = compare_fingerprints(desired, await store.load_fingerprints(GUILD, scope))
        actual = await store.load_snapshot(GUILD, scope.narrow(comparison.dirty))
        changes = plan_changes(desired, actual).add_unchanged(comparison.clean)
    return changes, await store.apply(GUILD, changes)


def present(snapshot: StoredSnapshot) -> dict[int, MemberState]:
    return {uid: row.state for uid, row in snapshot.members.items() if row.status is not MemberStatus.LEFT}


async def query(store: SqlStore, sql: str, **params: typing.Any) -> list[tuple[typing.Any, ...]]:
    async with store._engine.connect() as conn:  # pyright: ignore[reportPrivateUsage]
        return [tuple(row) for row in await conn.execute(sa.text(sql), params)]


async def test_cold_sync_writes_everything_and_a_second_plan_is_empty(store_factory: StoreFactory) -> None:
    store = await store_factory(batch_size=7)
    desired = guild(*(member(i, roles=(1001,) if i % 2 else (1001, 1002)) for i in range(1, 51)))

    _changes, result = await sync(store, desired)
    stored = await store.load_snapshot(GUILD, Scope.everything())

    assert result.ok
    assert result.counts.created == 50
    assert result.counts.links_added == 75
    assert result.counts.roles_created == 2
    assert result.batches == 8
    assert present(stored) == dict(desired.members)
    assert {rid: r.state for rid, r in stored.roles.items()} == dict(desired.roles)
    assert all(row.fingerprint == fingerprint(row.state) for row in stored.members.values())
    assert plan_changes(desired, stored).is_empty
    again, _ = await sync(store, desired)
    assert again.is_empty
    assert again.counts.unchanged == 50


async def test_updates_rewrite_fields_and_links(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await sync(store, guild(member(1, roles=(1001,)), member(2)))
    changed = member(1, nickname="Ally", roles=(1002,), username="alice", avatar_hash=None, is_bot=True)

    changes, result = await sync(store, guild(changed, member(2)))
    stored = await store.load_snapshot(GUILD, Scope.everything())

    assert changes.counts.updated == 1
    assert changes.counts.unchanged == 1
    assert result.counts.links_added == 1
    assert result.counts.links_removed == 1
    assert stored.members[1].state == changed
    assert await query(store, "SELECT role_id FROM member_roles WHERE user_id = 1") == [(1002,)]


async def test_departure_marks_left_keeps_the_row_and_a_return_rejoins(
    store_factory: StoreFactory, clock: Clock
) -> None:
    store = await store_factory()
    await sync(store, guild(member(1, roles=(1001,)), member(2)))
    clock.advance(hours=1)

    changes, result = await sync(store, guild(member(2)))
    stored = await store.load_snapshot(GUILD, Scope.everything())
    rows = await query(store, "SELECT status, left_at FROM members WHERE user_id = 1")
    fingerprints = await store.load_fingerprints(GUILD, Scope.everything())

    assert changes.departures == 1
    assert result.counts.left == 1
    assert stored.members[1].status is MemberStatus.LEFT
    assert stored.members[1].state.role_ids == {1001}  # the last known state is kept
    assert rows[0][0] == "left"
    assert rows[0][1] is not None
    assert set(fingerprints.fingerprints) == {2}

    clock.advance(hours=1)
    back = member(1, nickname="back")
    changes, result = await sync(store, guild(back, member(2)))
    stored = await store.load_snapshot(GUILD, Scope.everything())

    assert changes.counts.rejoined == 1
    assert result.counts.rejoined == 1
    assert result.counts.links_removed == 1
    assert stored.members[1].status is MemberStatus.ACTIVE
    assert stored.members[1].state == back
    assert await query(store, "SELECT left_at FROM members WHERE user_id = 1") == [(None,)]


async def test_a_repeated_join_is_an_upsert(store_factory: StoreFactory) -> None:
    store = await store_factory()
    desired = guild(member(1, roles=(1001,)))
    changes = plan_changes(desired, StoredSnapshot(guild_id=GUILD, members={}))

    first = await store.apply(GUILD, changes)
    second = await store.apply(GUILD, changes)

    assert first.ok
    assert second.ok
    assert present(await store.load_snapshot(GUILD, Scope.everything())) == dict(desired.members)
    assert await query(store, "SELECT COUNT(*) FROM member_roles") == [(1,)]


async def test_partial_scope_reads_and_writes_only_its_members(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await sync(store, guild(member(1), member(2), member(3)))
    scope = Scope.of_users({2, 3})

    # Discord still lists 1 and 2 in full; the request is about 2 and 3 (3 has left).
    changes, _ = await sync(store, guild(member(2, nickname="two"), scope=scope))
    snapshot = await store.load_snapshot(GUILD, scope)
    fingerprints = await store.load_fingerprints(GUILD, scope)
    everyone = await store.load_snapshot(GUILD, Scope.everything())

    assert set(snapshot.members) == {2, 3}
    assert snapshot.roles == {}
    assert set(fingerprints.fingerprints) == {2}
    assert changes.counts.updated == 1
    assert changes.counts.left == 1
    assert everyone.members[1].status is MemberStatus.ACTIVE


async def test_roles_are_created_updated_deleted_and_restored(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await sync(store, guild(roles=(MODS, FANS)))
    renamed = attrs.evolve(MODS, name="moderators", position=5)

    changes, result = await sync(store, guild(roles=(renamed,)))
    stored = await store.load_snapshot(GUILD, Scope.roles_only())

    assert (result.counts.roles_updated, result.counts.roles_deleted) == (1, 1)
    assert stored.roles[1001].state == renamed
    assert stored.roles[1002].deleted
    assert (await query(store, "SELECT deleted_at IS NOT NULL FROM roles WHERE role_id = 1002"))[0][0]

    _, result = await sync(store, guild(roles=(renamed, FANS)))
    stored = await store.load_snapshot(GUILD, Scope.roles_only())

    assert result.counts.roles_updated == 1
    assert not stored.roles[1002].deleted
    assert changes.counts.roles_created == 0


async def test_prune_removes_only_links_to_deleted_roles(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await sync(store, guild(member(1, roles=(1001, 1002)), member(2, roles=(1002,))))
    await sync(store, guild(member(1, roles=(1001, 1002)), member(2, roles=(1002,)), roles=(MODS,)))

    removed = await store.prune_deleted_role_links(GUILD)

    assert removed == 2
    assert await query(store, "SELECT user_id, role_id FROM member_roles") == [(1, 1001)]
    assert await store.prune_deleted_role_links(GUILD) == 0


async def test_present_counts_are_what_discord_would_count(store_factory: StoreFactory, clock: Clock) -> None:
    store = await store_factory()
    everyone = RoleState(role_id=GUILD, name="@everyone", color=0, position=0, permissions=0, managed=False)
    quiet = RoleState(role_id=1003, name="quiet", color=0, position=3, permissions=0, managed=False)
    roles = (everyone, MODS, FANS, quiet)
    await sync(
        store,
        guild(member(1, roles=(1001, 1002)), member(2, roles=(1002,)), member(3, roles=(1003, GUILD)), roles=roles),
    )
    await sync(store, guild(member(2, roles=(1002,)), member(3, roles=(1003, GUILD)), roles=roles))  # 1 left
    clock.advance(days=40)
    assert await store.mark_inactive(GUILD, cutoff=clock.now - datetime.timedelta(days=30)) == 2
    fans_deleted = (everyone, MODS, quiet)
    await sync(store, guild(member(2, roles=(1002,)), member(3, roles=(1003, GUILD)), roles=fans_deleted))

    counts = await store.present_counts(GUILD)

    assert counts.members == 2  # inactive members are present; the one who left is not
    # The leaver's links are kept but not counted; no @everyone, no deleted role, a role nobody holds is 0.
    assert dict(counts.role_members) == {1001: 0, 1003: 1}
    assert await query(store, "SELECT COUNT(*) FROM member_roles WHERE role_id IN (1001, 1002)") == [(3,)]
    assert (await store.present_counts(1)).members == 0


async def test_progress_is_reported_after_each_batch(store_factory: StoreFactory) -> None:
    store = await store_factory(batch_size=4)
    seen: list[tuple[int, int]] = []

    async def on_progress(done: int, total: int) -> None:
        seen.append((done, total))

    changes = plan_changes(guild(*(member(i) for i in range(10))), StoredSnapshot(guild_id=GUILD, members={}))
    await store.apply(GUILD, changes, on_progress=on_progress)
    sync_seen: list[tuple[int, int]] = []
    await store.apply(GUILD, changes, on_progress=lambda done, total: sync_seen.append((done, total)))

    assert seen == [(4, 10), (8, 10), (10, 10)]
    assert sync_seen == seen


def sliced(desired: GuildSnapshot, size: int) -> list[ChangeSet]:
    """A first sync of `desired` as a large run hands it over: the roles, then slices of `size` members."""
    roles = Scope.roles_only()
    parts = [
        plan_changes(
            attrs.evolve(desired, members={}, scope=roles), StoredSnapshot(guild_id=GUILD, members={}, scope=roles)
        )
    ]
    ids = sorted(desired.members)
    for start in range(0, len(ids), size):
        scope = Scope.of_users(ids[start : start + size])
        part = attrs.evolve(
            desired, members={uid: desired.members[uid] for uid in scope.user_ids or ()}, roles={}, scope=scope
        )
        parts.append(plan_changes(part, StoredSnapshot(guild_id=GUILD, members={}, scope=scope)))
    return parts


async def stream(parts: list[ChangeSet], *, fail_after: int | None = None) -> typing.AsyncIterator[ChangeSet]:
    for index, part in enumerate(parts):
        if index == fail_after:
            raise RuntimeError("the cache was reloaded")
        await asyncio.sleep(0)
        yield part


async def test_a_stream_of_parts_is_written_as_one_apply_in_full_batches(store_factory: StoreFactory) -> None:
    store = await store_factory(batch_size=10)
    desired = guild(*(member(i, roles=(1001,) if i % 2 else (1001, 1002)) for i in range(1, 36)))
    seen: list[tuple[int, int]] = []

    result = await store.apply_stream(GUILD, stream(sliced(desired, 7)), on_progress=lambda *p: seen.append(p))
    stored = await store.load_snapshot(GUILD, Scope.everything())

    assert result.ok
    assert (result.counts.created, result.counts.roles_created, result.batches) == (35, 2, 4)
    assert present(stored) == dict(desired.members)
    assert {role_id: row.state for role_id, row in stored.roles.items()} == dict(desired.roles)
    # Done counts committed member writes; the total those of the parts received by then.
    assert [done for done, _ in seen] == [10, 20, 30, 35]
    assert all(done <= total for done, total in seen)
    assert seen[-1] == (35, 35)


async def test_a_stream_whose_producer_fails_keeps_what_was_handed_over(store_factory: StoreFactory) -> None:
    store = await store_factory(batch_size=10)
    desired = guild(*(member(i) for i in range(1, 36)))
    parts = sliced(desired, 7)

    with pytest.raises(RuntimeError, match="reloaded"):
        await store.apply_stream(GUILD, stream(parts, fail_after=3))
    stored = await store.load_snapshot(GUILD, Scope.everything())

    assert sorted(present(stored)) == list(range(1, 15))  # the roles and two slices of seven
    _, result = await sync(store, desired)
    assert (result.counts.created, result.counts.unchanged) == (21, 14)


async def test_a_crash_keeps_committed_batches_and_a_rerun_converges(store_factory: StoreFactory) -> None:
    store = await store_factory(batch_size=5)
    desired = guild(*(member(i, roles=(1001,)) for i in range(23)))

    def crash_after_two_batches(done: int, total: int) -> None:
        if done >= 10:
            raise RuntimeError("process killed")

    changes = plan_changes(desired, await store.load_snapshot(GUILD, Scope.everything()))
    with pytest.raises(RuntimeError, match="killed"):
        await store.apply(GUILD, changes, on_progress=crash_after_two_batches)

    # The two reported batches are committed; one more may have been on its way when the caller stopped.
    kept = len((await store.load_snapshot(GUILD, Scope.everything())).members)
    assert kept in (10, 15)
    rerun, result = await sync(store, desired)
    assert rerun.counts.created == 23 - kept
    assert rerun.counts.unchanged == kept
    assert result.ok
    assert plan_changes(desired, await store.load_snapshot(GUILD, Scope.everything())).is_empty


async def test_a_row_the_database_rejects_is_isolated_counted_and_sampled(store_factory: StoreFactory) -> None:
    store = await store_factory(batch_size=10)
    bad_text = member(5, nickname="broken \ud800 surrogate")
    bad_id = member(2**64, roles=(1001,))
    desired = guild(*(member(i) for i in range(1, 13) if i != 5), bad_text, bad_id)

    changes, result = await sync(store, desired)
    stored = await store.load_snapshot(GUILD, Scope.everything())

    assert changes.counts.created == 13
    assert result.counts.created == 11
    assert result.errors == 2
    assert not result.ok
    assert {key for key, _ in result.error_sample} == {5, 2**64}
    assert all(reason for _, reason in result.error_sample)
    assert set(stored.members) == set(range(1, 13)) - {5}


async def test_text_is_stored_exactly_as_discord_gives_it(store_factory: StoreFactory) -> None:
    store = await store_factory()
    odd = [
        member(1, nickname="👩‍👩‍👧‍👦 family zwj", global_name="\u202eevil rtl"),
        member(
            2,
            nickname="x" * 5000,
            username="a" * 300,
            global_name="\uff26\uff55\uff4c\uff4c fullwidth, \u01c5 \u00df \ufdfd",
        ),
        member(3, nickname="'; DROP TABLE members; --", global_name="tab\tnew\nline"),
        member(4, nickname="", global_name=None, avatar_hash=None, joined_at=None),
    ]

    _, result = await sync(store, guild(*odd))
    stored = await store.load_snapshot(GUILD, Scope.everything())

    assert result.ok
    assert present(stored) == {m.user_id: m for m in odd}


async def test_times_come_back_aware_and_utc(store_factory: StoreFactory) -> None:
    store = await store_factory()
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    joined = datetime.datetime(2020, 2, 29, 23, 59, 59, 999999, tzinfo=plus_two)
    await sync(store, guild(member(1, joined_at=joined)))

    stored = await store.load_snapshot(GUILD, Scope.everything())

    back = stored.members[1].state.joined_at
    assert back == joined
    assert back is not None
    assert back.utcoffset() == datetime.timedelta(0)


async def test_inactive_members_stay_inactive_through_updates(store_factory: StoreFactory, clock: Clock) -> None:
    store = await store_factory()
    await sync(store, guild(member(1), member(2)))
    clock.advance(days=40)

    marked = await store.mark_inactive(GUILD, cutoff=clock.now - datetime.timedelta(days=30))
    changes, _ = await sync(store, guild(member(1, nickname="renamed"), member(2)))
    stored = await store.load_snapshot(GUILD, Scope.everything())

    assert marked == 2
    assert changes.counts.updated == 1
    assert changes.counts.unchanged == 1
    assert {row.status for row in stored.members.values()} == {MemberStatus.INACTIVE}


async def test_activity_counts_add_up_and_wake_inactive_members(store_factory: StoreFactory, clock: Clock) -> None:
    store = await store_factory()
    await sync(store, guild(member(1), member(2), member(3), member(4)))
    await sync(store, guild(member(1), member(2), member(3)))  # 4 left
    clock.advance(days=40)
    await store.mark_inactive(GUILD, cutoff=clock.now - datetime.timedelta(days=30))
    today = clock.now.date()
    at = clock.now

    await store.add_activity(
        [
            ActivityDelta(guild_id=GUILD, user_id=1, day=today, messages=3, last_seen_at=at),
            ActivityDelta(
                guild_id=GUILD, user_id=1, day=today, messages=2, last_seen_at=at - datetime.timedelta(hours=1)
            ),
            ActivityDelta(guild_id=GUILD, user_id=4, day=today, messages=1, last_seen_at=at),
        ]
    )
    await store.add_activity(
        [
            ActivityDelta(
                guild_id=GUILD, user_id=1, day=today, messages=1, last_seen_at=at - datetime.timedelta(hours=2)
            ),
            ActivityDelta(
                guild_id=GUILD,
                user_id=2,
                day=today - datetime.timedelta(days=10),
                messages=7,
                last_seen_at=at - datetime.timedelta(days=10),
            ),
        ]
    )
    await store.add_activity([])

    rows = {
        uid: (status, last_seen)
        for uid, status, last_seen in await query(store, "SELECT user_id, status, last_seen_at FROM members")
    }
    stats = await store.stats(GUILD, now=at)

    assert await query(store, "SELECT messages FROM message_activity WHERE user_id = 1") == [(6,)]
    assert rows[1][0] == "active"
    assert rows[2][0] == "active"  # a message (even an old one) makes it active again
    assert rows[3][0] == "inactive"
    assert rows[4][0] == "left"
    assert stats.members_by_status == {"active": 2, "inactive": 1, "left": 1}
    assert stats.present_members == 3
    assert (stats.messages_today, stats.messages_7d, stats.messages_30d) == (7, 7, 14)
    assert stats.active_users_7d == 2
    assert stats.tracked_since == today - datetime.timedelta(days=10)
    assert stats.roles == 2
    last = (await store.load_snapshot(GUILD, Scope.of_users({1}))).members[1]
    assert last.status is MemberStatus.ACTIVE


async def test_mark_inactive_uses_first_seen_when_never_seen(store_factory: StoreFactory, clock: Clock) -> None:
    store = await store_factory()
    await sync(store, guild(member(1), member(2), member(3)))
    clock.advance(days=20)
    await store.add_activity(
        [ActivityDelta(guild_id=GUILD, user_id=1, day=clock.now.date(), messages=1, last_seen_at=clock.now)]
    )
    clock.advance(days=20)

    marked = await store.mark_inactive(GUILD, cutoff=clock.now - datetime.timedelta(days=30))
    statuses = dict(await query(store, "SELECT user_id, status FROM members"))

    assert marked == 2
    assert statuses == {1: "active", 2: "inactive", 3: "inactive"}
    assert await store.mark_inactive(GUILD, cutoff=clock.now - datetime.timedelta(days=30)) == 0


async def test_views_for_other_readers(store_factory: StoreFactory, clock: Clock) -> None:
    store = await store_factory()
    # The views count UTC days from the database's own clock.
    clock.now = datetime.datetime.now(datetime.UTC)
    await sync(store, guild(member(1, nickname="Ally", roles=(1001, 1002)), member(2, roles=(1002,)), member(3)))
    await sync(store, guild(member(1, nickname="Ally", roles=(1001, 1002)), member(2, roles=(1002,)), roles=(MODS,)))
    today = clock.now.date()
    await store.add_activity(
        [
            ActivityDelta(guild_id=GUILD, user_id=1, day=today, messages=4, last_seen_at=clock.now),
            ActivityDelta(
                guild_id=GUILD, user_id=1, day=today - datetime.timedelta(days=20), messages=6, last_seen_at=clock.now
            ),
            ActivityDelta(
                guild_id=GUILD, user_id=1, day=today - datetime.timedelta(days=45), messages=100, last_seen_at=clock.now
            ),
        ]
    )

    activity = await query(
        store,
        "SELECT user_id, display_name, messages_7d, messages_30d FROM v_active_members_activity ORDER BY user_id",
    )
    links = await query(store, "SELECT user_id, role_id, role_name FROM v_member_roles ORDER BY user_id, role_id")
    everyone = await query(store, "SELECT user_id, status FROM v_members ORDER BY user_id")

    assert activity == [(1, "Ally", 4, 10), (2, "User 2", 0, 0)]
    assert links == [(1, 1001, "mods")]
    assert everyone == [(1, "active"), (2, "active"), (3, "left")]


async def test_guild_rows(store_factory: StoreFactory, clock: Clock) -> None:
    store = await store_factory()
    await store.upsert_guild(GUILD, "Test Guild", 1234)
    await store.upsert_guild(GUILD, "Renamed", 1300)
    await store.upsert_guild(7, None, None)
    done = clock.advance(minutes=5)
    await store.set_reconciled(GUILD, done)
    await store.mark_guild_removed(7)

    rows = {row.id: row for row in await store.guilds()}
    stats = await store.stats(GUILD, now=clock.now)

    assert (rows[GUILD].name, rows[GUILD].member_count, rows[GUILD].removed_at) == ("Renamed", 1300, None)
    assert rows[GUILD].last_reconciled_at == done
    assert rows[7].removed_at == clock.now
    assert stats.last_reconciled_at == done
    assert stats.tracked_since is None
    await store.upsert_guild(7, "back", 2)
    assert {row.id: row for row in await store.guilds()}[7].removed_at is None


async def test_sync_runs_are_recorded(store_factory: StoreFactory, clock: Clock) -> None:
    store = await store_factory()
    first = await store.start_run(GUILD, "full", "startup", None)
    clock.advance(seconds=3)
    await store.finish_run(first, outcome="ok", created=5, unchanged=2)
    second = await store.start_run(GUILD, "full", "command", 42)
    await store.finish_run(second, outcome="failed", errors=1, error_sample="5: DataError")
    drift = await store.start_run(GUILD, "drift", "schedule", None)

    runs = await store.last_runs(GUILD)

    assert second > first
    assert set(runs) == {"full", "drift"}
    assert runs["full"].id == second
    assert (runs["full"].outcome, runs["full"].errors, runs["full"].requested_by) == ("failed", 1, 42)
    assert runs["drift"].id == drift
    assert runs["drift"].finished_at is None
    assert await store.count_runs() == 3
    assert await store.count_runs(guild_id=GUILD, kind="full", outcome="ok") == 1
    assert await store.count_runs(guild_id=1) == 0
    with pytest.raises(ValueError, match="unknown trigger"):
        await store.start_run(GUILD, "full", "cron", None)


async def test_gateway_runs_are_summed_into_one_row_per_kind_outcome_and_period(
    store_factory: StoreFactory, clock: Clock
) -> None:
    store = await store_factory()
    hour = 3600.0
    start = clock.now  # 12:00, a period boundary
    ids = []
    for created in (1, 2, 3):
        began = clock.advance(minutes=5)
        clock.advance(seconds=1)
        ids.append(
            await store.record_gateway_run(
                GUILD, kind="users", outcome="success", started_at=began, period_seconds=hour, created=created
            )
        )
    failed = await store.record_gateway_run(
        GUILD,
        kind="users",
        outcome="failed",
        started_at=clock.now,
        period_seconds=hour,
        errors=1,
        error_sample="OperationalError: database is locked",
    )
    roles = await store.record_gateway_run(
        GUILD, kind="roles", outcome="success", started_at=clock.now, period_seconds=hour
    )
    command = await store.start_run(GUILD, "users", "command", 42)
    await store.finish_run(command, outcome="success", updated=7)
    clock.advance(minutes=30)  # 12:46
    last_of_hour = await store.record_gateway_run(
        GUILD, kind="users", outcome="success", started_at=clock.now, period_seconds=hour, left=1
    )
    clock.advance(minutes=20)  # 13:06: the next period
    next_hour = await store.record_gateway_run(
        GUILD, kind="users", outcome="success", started_at=clock.now, period_seconds=hour, updated=4
    )

    assert len(set(ids)) == 1
    assert last_of_hour == ids[0]
    assert len({ids[0], failed, roles, command, next_hour}) == 5
    assert await store.count_runs(guild_id=GUILD) == 5
    rows = {
        row[0]: row[1:]
        for row in await query(
            store,
            'SELECT id, runs, created, updated, "left", errors, trigger FROM sync_runs WHERE guild_id = :g',
            g=GUILD,
        )
    }
    assert rows[ids[0]] == (4, 6, 0, 1, 0, "gateway")
    assert rows[failed] == (1, 0, 0, 0, 1, "gateway")
    assert rows[command] == (1, 0, 7, 0, 0, "command")
    latest = await store.last_runs(GUILD)
    assert latest["users"].id == next_hour
    assert (latest["users"].runs, latest["users"].updated) == (1, 4)
    assert latest["users"].period_start == start + datetime.timedelta(hours=1)
    assert latest["roles"].id == roles
    assert latest["users"].trigger == "gateway"
    # A summed row that ended after a command's run is the latest, though the command's row is newer.
    clock.advance(hours=1)
    only_hour = await store_factory()
    first = await only_hour.record_gateway_run(
        GUILD, kind="users", outcome="success", started_at=clock.now, period_seconds=hour
    )
    await only_hour.finish_run(await only_hour.start_run(GUILD, "users", "command", 1), outcome="success")
    clock.advance(minutes=1)
    again = await only_hour.record_gateway_run(
        GUILD, kind="users", outcome="success", started_at=clock.now, period_seconds=hour
    )
    assert again == first
    shown = (await only_hour.last_runs(GUILD))["users"]
    assert (shown.id, shown.runs, shown.finished_at) == (first, 2, clock.now)


async def test_retention_prunes_old_runs_and_slots_but_keeps_the_latest_of_each_kind_and_every_member(
    store_factory: StoreFactory, clock: Clock
) -> None:
    store = await store_factory()
    other_guild = GUILD + 1
    await sync(store, guild(member(1, roles=(1001,)), member(2)))
    await store.add_activity(
        [ActivityDelta(guild_id=GUILD, user_id=1, day=clock.now.date(), messages=3, last_seen_at=clock.now)]
    )
    old_full = await store.start_run(GUILD, "full", "startup", None)
    await store.finish_run(old_full, outcome="success")
    old_drift = await store.start_run(GUILD, "drift_check", "schedule", None)
    await store.finish_run(old_drift, outcome="success")
    only_other = await store.start_run(other_guild, "full", "startup", None)
    await store.finish_run(only_other, outcome="success")
    await store.claim_slot("drift_check", "old", "host")
    clock.advance(days=10)
    newer_full = await store.start_run(GUILD, "full", "command", 5)
    await store.finish_run(newer_full, outcome="success")
    await store.claim_slot("drift_check", "new", "host")
    clock.advance(days=1)

    deleted = await store.prune_bookkeeping(
        runs_before=clock.now - datetime.timedelta(days=5), slots_before=clock.now - datetime.timedelta(days=5)
    )

    assert deleted == {"sync_runs": 1, "scheduler_slots": 1}
    remaining = {row[0] for row in await query(store, "SELECT id FROM sync_runs")}
    assert remaining == {old_drift, only_other, newer_full}, "the latest run of each kind per guild stays"
    assert {row[0] for row in await query(store, "SELECT slot FROM scheduler_slots")} == {"new"}
    assert set((await store.load_snapshot(GUILD, Scope.everything())).members) == {1, 2}
    assert await query(store, "SELECT user_id, role_id FROM member_roles") == [(1, 1001)]
    assert await query(store, "SELECT messages FROM message_activity") == [(3,)]
    again = await store.prune_bookkeeping(
        runs_before=clock.now - datetime.timedelta(days=5), slots_before=clock.now - datetime.timedelta(days=5)
    )
    assert again == {"sync_runs": 0, "scheduler_slots": 0}


async def test_a_slot_is_claimed_once_across_processes(
    database_url_factory: Callable[[], Awaitable[str]], store_factory: StoreFactory
) -> None:
    url = await database_url_factory()
    one = await store_factory(url=url)
    two = await store_factory(url=url)

    first = await one.claim_slot("drift", "2024-03-01T12:00", "host-a")
    second = await two.claim_slot("drift", "2024-03-01T12:00", "host-b")
    other = await two.claim_slot("drift", "2024-03-01T12:05", "host-b")

    assert (first, second, other) == (True, False, True)


async def test_guild_lock_serialises_processes_on_postgresql(
    backend: str, database_url_factory: Callable[[], Awaitable[str]], store_factory: StoreFactory
) -> None:
    url = await database_url_factory()
    one = await store_factory(url=url)
    two = await store_factory(url=url)
    order: list[str] = []
    holding = asyncio.Event()

    async def first() -> None:
        async with one.guild_lock(GUILD):
            order.append("one in")
            holding.set()
            await asyncio.sleep(0.3)
            order.append("one out")

    async def second() -> None:
        await holding.wait()
        async with two.guild_lock(GUILD):
            order.append("two in")
        async with two.guild_lock(GUILD + 1):
            order.append("other guild")

    await asyncio.wait_for(asyncio.gather(first(), second()), timeout=10)

    if backend == "postgresql":
        assert order == ["one in", "one out", "two in", "other guild"]
    else:  # a no-op on SQLite: the bot is the only writer of its file
        assert order == ["one in", "two in", "other guild", "one out"]


async def test_ping(store_factory: StoreFactory, backend: str, tmp_path: typing.Any) -> None:
    store = await store_factory()
    if backend == "sqlite":
        (tmp_path / "dir.db").mkdir()
        unreachable = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'dir.db'}")
    else:
        unreachable = await SqlStore.open("postgresql+asyncpg://postgres@127.0.0.1:1/test")

    try:
        assert await store.ping()
        assert not await unreachable.ping()
    finally:
        await unreachable.close()


async def test_change_set_of_another_guild_is_refused(store_factory: StoreFactory) -> None:
    store = await store_factory()
    changes = plan_changes(guild(member(1)), StoredSnapshot(guild_id=GUILD, members={}))

    with pytest.raises(ValueError, match="applied to guild"):
        await store.apply(GUILD + 1, changes)


async def test_force_rewrites_but_changes_nothing(store_factory: StoreFactory) -> None:
    store = await store_factory()
    desired = guild(member(1, roles=(1001,)), member(2))
    await sync(store, desired)
    before = await store.load_snapshot(GUILD, Scope.everything())

    changes, result = await sync(store, desired, force=True)

    assert changes.counts.updated == 2
    assert changes.counts.rewritten == 2
    assert result.counts.updated == 2
    assert await store.load_snapshot(GUILD, Scope.everything()) == before


async def test_stale_fingerprints_are_repaired(store_factory: StoreFactory) -> None:
    store = await store_factory()
    desired = guild(member(1), member(2))
    await sync(store, desired)
    async with store._engine.begin() as conn:  # pyright: ignore[reportPrivateUsage]
        await conn.execute(sa.text("UPDATE members SET fingerprint = 0 WHERE user_id = 1"))

    changes, _ = await sync(store, desired)
    again, _ = await sync(store, desired)

    assert changes.counts.unchanged == 2
    assert changes.fingerprints_to_refresh == ((1, fingerprint(member(1))),)
    assert again.is_empty


async def test_a_batch_larger_than_one_statement_is_written_whole(store_factory: StoreFactory) -> None:
    """SQLite writes a batch as statements of at most 32,000 parameters: 12,000 members in one batch
    need several statements for every kind of write (create, update, link changes, refresh, leave)."""
    store = await store_factory(batch_size=20_000)
    count = 12_000
    desired = guild(*(member(i, roles=(1001, 1002)) for i in range(1, count + 1)))

    _, created = await sync(store, desired)
    assert (created.ok, created.counts.created, created.counts.links_added) == (True, count, 2 * count)
    assert present(await store.load_snapshot(GUILD, Scope.everything())) == dict(desired.members)

    changed = guild(*(member(i, nickname=f"n{i}", roles=(1001,)) for i in range(1, count + 1)))
    _, updated = await sync(store, changed)
    assert (updated.counts.updated, updated.counts.links_removed) == (count, count)
    assert present(await store.load_snapshot(GUILD, Scope.everything())) == dict(changed.members)

    async with store._engine.begin() as conn:  # pyright: ignore[reportPrivateUsage]
        await conn.execute(sa.text("UPDATE members SET fingerprint = 0"))
    refresh, _ = await sync(store, changed)
    assert len(refresh.fingerprints_to_refresh) == count
    stored = await store.load_fingerprints(GUILD, Scope.everything())
    assert stored.fingerprints == {uid: fingerprint(m) for uid, m in changed.members.items()}

    staying = guild(*(m for uid, m in changed.members.items() if uid <= 1000))
    _, departed = await sync(store, staying)
    assert departed.counts.left == count - 1000
    rows = (await store.load_snapshot(GUILD, Scope.everything())).members
    assert sum(row.status is MemberStatus.LEFT for row in rows.values()) == count - 1000
    assert present(await store.load_snapshot(GUILD, Scope.everything())) == dict(staying.members)


async def test_a_guild_only_change_leaves_the_shared_user_row_alone(store_factory: StoreFactory, clock: Clock) -> None:
    store = await store_factory()
    await sync(store, guild(member(1)))
    first = await query(store, "SELECT updated_at FROM users WHERE id = 1")
    clock.advance(hours=1)

    await sync(store, guild(member(1, nickname="guild only", roles=(1001,))))
    unchanged = await query(store, "SELECT updated_at FROM users WHERE id = 1")
    clock.advance(hours=1)
    await sync(store, guild(member(1, nickname="guild only", roles=(1001,), username="renamed")))
    renamed = await query(store, "SELECT username, updated_at FROM users WHERE id = 1")

    assert unchanged == first
    assert renamed[0][0] == "renamed"
    assert renamed[0][1] != first[0][0]


async def test_a_user_in_two_guilds_has_one_user_row_and_two_members(store_factory: StoreFactory) -> None:
    store = await store_factory(batch_size=3)
    other = GUILD + 1
    shared = [member(i) for i in range(1, 8)]
    await sync(store, guild(*shared))

    changes = plan_changes(
        GuildSnapshot(guild_id=other, members={m.user_id: m for m in [*shared, member(9)]}),
        StoredSnapshot(guild_id=other, members={}),
    )
    result = await store.apply(other, changes)

    assert result.ok
    assert result.counts.created == 8
    assert await query(store, "SELECT COUNT(*) FROM users") == [(8,)]
    assert await query(store, "SELECT guild_id, COUNT(*) FROM members GROUP BY guild_id ORDER BY guild_id") == [
        (GUILD, 7),
        (other, 8),
    ]


async def test_a_cancelled_apply_keeps_whole_batches_and_the_store_usable(store_factory: StoreFactory) -> None:
    store = await store_factory(batch_size=10)
    desired = guild(*(member(i, roles=(1001,)) for i in range(1, 201)))
    changes = plan_changes(desired, StoredSnapshot(guild_id=GUILD, members={}))
    first_batch = asyncio.Event()

    def on_progress(done: int, total: int) -> None:
        first_batch.set()

    task = asyncio.ensure_future(store.apply(GUILD, changes, on_progress=on_progress))
    await first_batch.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    stored = await store.load_snapshot(GUILD, Scope.everything())
    assert len(stored.members) % 10 == 0
    assert all(row.state == desired.members[uid] for uid, row in stored.members.items())
    _, result = await sync(store, desired)
    assert result.ok
    assert plan_changes(desired, await store.load_snapshot(GUILD, Scope.everything())).is_empty
