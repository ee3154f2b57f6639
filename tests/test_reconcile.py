"""The engine over a real database: runs compared and written slice by slice, and what that must not change.

Discord's side is a `MemoryGuild` (what hikari's cache would say); the database is real (SQLite and
PostgreSQL). Guilds here are a few slices large, so that every run crosses slice boundaries.
"""

from __future__ import annotations

import datetime
import itertools
import typing

import attrs
import pytest
import pytest_asyncio
import sqlalchemy as sa
from memory_guild import MemoryGuild

from reconciler.config import SyncSettings
from reconciler.domain import MemberState, MemberStatus, RoleState, Scope
from reconciler.engine.planning import SLICE_MEMBERS
from reconciler.engine.reconcile import Reconciler
from reconciler.engine.runs import Outcome, RunKind, RunProgress, SyncRequest, Trigger
from reconciler.observability.metrics import Metrics
from reconciler.store import SqlStore, tables
from reconciler.store.connect import create_engine

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.asyncio

GUILD = 4_000_000
MEMBERS = 2 * SLICE_MEMBERS + 1_500
JOINED = datetime.datetime(2022, 3, 4, 5, 6, 7, 890123, tzinfo=datetime.UTC)
ROLES = {role_id: RoleState(role_id=role_id, name=f"role {role_id}", position=role_id % 10) for role_id in (11, 12, 13)}


def member(user_id: int, **changes: typing.Any) -> MemberState:
    state = MemberState(
        user_id=user_id,
        username=f"user{user_id}",
        global_name=None if user_id % 3 else f"User {user_id}",
        nickname=None if user_id % 4 else f"nick {user_id}",
        joined_at=JOINED + datetime.timedelta(minutes=user_id),
        role_ids=frozenset(r for r in ROLES if user_id % r == 0),
    )
    return attrs.evolve(state, **changes) if changes else state


def full(trigger: Trigger = Trigger.STARTUP, **options: typing.Any) -> SyncRequest:
    return SyncRequest(guild_id=GUILD, scope=Scope.everything(), trigger=trigger, **options)


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    store = await SqlStore.open(database_url, batch_size=2_000)
    await store.upgrade()
    yield store
    await store.close()


def engine(store: SqlStore, guild: MemoryGuild) -> Reconciler:
    return Reconciler(store=store, desired=guild, metrics=Metrics(), settings=SyncSettings())


async def members_by_status(store: SqlStore) -> dict[MemberStatus, set[int]]:
    stored = await store.load_snapshot(GUILD, Scope.everything())
    by_status: dict[MemberStatus, set[int]] = {status: set() for status in MemberStatus}
    for user_id, row in stored.members.items():
        by_status[row.status].add(user_id)
    return by_status


async def replica(store: SqlStore) -> dict[int, MemberState]:
    stored = await store.load_snapshot(GUILD, Scope.everything())
    return {uid: row.state for uid, row in stored.members.items() if row.status is not MemberStatus.LEFT}


# Spread over every slice: the first members, some in the middle, the last ones.
SPREAD = [*range(1, 11), *range(SLICE_MEMBERS - 5, SLICE_MEMBERS + 5), *range(MEMBERS - 9, MEMBERS + 1)]


async def test_a_first_sync_writes_every_member_and_a_second_finds_nothing_to_do(store: SqlStore) -> None:
    guild = MemoryGuild({uid: member(uid) for uid in range(1, MEMBERS + 1)}, ROLES)
    reconciler = engine(store, guild)
    seen: list[RunProgress] = []

    async def progress(state: RunProgress) -> None:
        seen.append(state)

    first = await reconciler.run(full(), progress)
    second = await reconciler.run(full(Trigger.SCHEDULE))

    assert first.outcome is Outcome.SUCCESS
    assert (first.counts.created, first.counts.roles_created, first.errors) == (MEMBERS, len(ROLES), 0)
    assert await replica(store) == guild.members
    assert second.outcome is Outcome.SUCCESS
    assert (second.counts.unchanged, second.counts.members_changed, second.counts.roles_created) == (MEMBERS, 0, 0)
    # Progress is in members settled: it never goes back, and it reaches the whole guild.
    writing = [(p.done, p.total) for p in seen if p.phase == "comparing and writing"]
    assert writing, "no progress while 11,500 members were written"
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(writing))
    assert writing[-1] == (MEMBERS, MEMBERS)


async def test_changes_departures_joins_and_rejoins_in_every_slice_converge(store: SqlStore) -> None:
    guild = MemoryGuild({uid: member(uid) for uid in range(1, MEMBERS + 1)}, ROLES)
    reconciler = engine(store, guild)
    await reconciler.run(full())
    gone = SPREAD[::3]
    for uid in gone:
        del guild.members[uid]
    await reconciler.run(full(Trigger.GATEWAY))

    renamed = [uid for uid in SPREAD if uid not in gone][::2]
    for uid in renamed:
        guild.members[uid] = member(uid, nickname=f"renamed {uid}", role_ids=frozenset({13}))
    back = gone[::2]
    for uid in back:
        guild.members[uid] = member(uid)
    joined = [MEMBERS + 1 + i for i in range(25)]
    for uid in joined:
        guild.members[uid] = member(uid)
    report = await reconciler.run(full(Trigger.SCHEDULE))

    assert report.outcome is Outcome.SUCCESS
    assert (report.counts.updated, report.counts.rejoined, report.counts.created) == (
        len(renamed),
        len(back),
        len(joined),
    )
    assert report.counts.unchanged == len(guild.members) - len(renamed) - len(back) - len(joined)
    assert await replica(store) == guild.members
    statuses = await members_by_status(store)
    assert statuses[MemberStatus.LEFT] == set(gone) - set(back)


async def test_a_member_gone_while_the_run_reads_is_left_to_its_own_event(store: SqlStore) -> None:
    guild = MemoryGuild({uid: member(uid) for uid in range(1, MEMBERS + 1)}, ROLES)
    reconciler = engine(store, guild)
    await reconciler.run(full())
    leaver = MEMBERS - 3  # in the last slice: read after the first slices are written

    def leave_once(scope: Scope) -> None:
        if scope.user_ids is not None and leaver in scope.user_ids:
            guild.members.pop(leaver, None)

    guild.on_snapshot = leave_once
    during = await reconciler.run(full(Trigger.SCHEDULE))
    guild.on_snapshot = None
    after = await reconciler.run(
        SyncRequest(
            guild_id=GUILD,
            scope=Scope.of_users({leaver}),
            trigger=Trigger.GATEWAY,
            confirmed_departures=frozenset({leaver}),
        )
    )

    # The run counted its departures before writing: none. The member's own removal marks them left.
    assert (during.outcome, during.counts.left) == (Outcome.SUCCESS, 0)
    assert (after.outcome, after.counts.left) == (Outcome.SUCCESS, 1)
    assert (await members_by_status(store))[MemberStatus.LEFT] == {leaver}


async def test_a_guild_reloaded_mid_run_marks_nobody_left_and_the_next_run_finishes(store: SqlStore) -> None:
    guild = MemoryGuild({uid: member(uid) for uid in range(1, MEMBERS + 101)}, ROLES)
    reconciler = engine(store, guild)
    await reconciler.run(full())
    for uid in range(MEMBERS + 1, MEMBERS + 101):
        del guild.members[uid]  # gone from Discord: 100 departures for the next run
    renamed = SPREAD[::2]
    for uid in renamed:
        guild.members[uid] = member(uid, nickname=f"renamed {uid}")
    # The survey reads the token twice, the roles once, the first slice once: reloaded in the second slice.
    guild.reload_after_reads = 4

    interrupted = await reconciler.run(full(Trigger.GATEWAY))
    written = {uid for uid, state in (await replica(store)).items() if state == guild.members.get(uid)}
    statuses = await members_by_status(store)
    guild.reload_after_reads = None
    finished = await reconciler.run(full(Trigger.GATEWAY))

    assert interrupted.outcome is Outcome.SKIPPED
    assert statuses[MemberStatus.LEFT] == set(), "a run cut short marked members left"
    assert 0 < len(written & set(renamed)) < len(renamed), "the first slice is written, the rest is not"
    assert (interrupted.counts.updated, interrupted.counts.left) == (len(written & set(renamed)), 0)
    assert finished.outcome is Outcome.SUCCESS
    assert finished.counts.left == 100
    assert await replica(store) == guild.members


async def test_too_many_departures_are_refused_before_anything_is_written(store: SqlStore) -> None:
    guild = MemoryGuild({uid: member(uid) for uid in range(1, MEMBERS + 1)}, ROLES)
    reconciler = engine(store, guild)
    await reconciler.run(full())
    for uid in range(1, MEMBERS // 5):
        del guild.members[uid]
    newcomer = MEMBERS + 1
    guild.members[newcomer] = member(newcomer)

    refused = await reconciler.run(full(Trigger.GATEWAY))
    forced = await reconciler.run(full(Trigger.COMMAND, kind=RunKind.FULL, allow_departures=True))

    assert refused.outcome is Outcome.REFUSED
    assert refused.counts.left == MEMBERS // 5 - 1
    assert "would mark" in (refused.reason or "")
    assert forced.outcome is Outcome.SUCCESS
    assert (forced.counts.left, forced.counts.created) == (MEMBERS // 5 - 1, 1)


async def test_a_verify_run_finds_rows_edited_behind_the_bot_in_any_slice(store: SqlStore, database_url: str) -> None:
    guild = MemoryGuild({uid: member(uid) for uid in range(1, MEMBERS + 1)}, ROLES)
    reconciler = engine(store, guild)
    await reconciler.run(full())
    tampered = SPREAD[::4]
    engine_db = create_engine(database_url, pool_size=1)
    try:
        async with engine_db.begin() as conn:
            m = tables.members
            await conn.execute(
                sa.update(m).where(m.c.guild_id == GUILD, m.c.user_id.in_(tampered)).values(nickname="edited")
            )
    finally:
        await engine_db.dispose()

    trusting = await reconciler.run(full(Trigger.SCHEDULE))
    verifying = await reconciler.run(full(Trigger.COMMAND, verify=True))

    assert trusting.counts.updated == 0  # the fingerprints were left as the bot wrote them
    assert verifying.counts.updated == len(tampered)
    assert await replica(store) == guild.members
