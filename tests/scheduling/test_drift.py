"""measure_drift compares every row with the cache, fingerprints notwithstanding, in batches, on each backend."""

from __future__ import annotations

import asyncio
import datetime

import pytest
import sqlalchemy as sa
from memory_guild import MemoryGuild

from reconciler.domain import MemberState, RoleState, Scope, StoredSnapshot, plan_changes
from reconciler.domain.health import DriftCounts
from reconciler.engine.drift import DriftReport, _slice_size, measure_drift
from reconciler.engine.planning import GuildNotReadyError
from reconciler.observability.metrics import Metrics
from reconciler.store import SqlStore, tables
from reconciler.store.connect import create_engine

GUILD = 7_000
NOW = datetime.datetime(2024, 5, 6, 7, 8, tzinfo=datetime.UTC)
ROLES = {
    role_id: RoleState(role_id=role_id, name=f"role {role_id}", position=role_id - 999)
    for role_id in (1000, 1001, 1002)
}


def _member(user_id: int) -> MemberState:
    return MemberState(
        user_id=user_id,
        username=f"user{user_id}",
        nickname=None if user_id % 3 else f"nick {user_id}",
        joined_at=datetime.datetime(2023, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(days=user_id),
        role_ids=frozenset(r for r in ROLES if user_id % (r - 998) == 0),
    )


async def _seeded(url: str) -> tuple[SqlStore, MemoryGuild]:
    store = await SqlStore.open(url)
    await store.upgrade()
    guild = MemoryGuild({uid: _member(uid) for uid in range(1, 21)}, ROLES)
    empty = StoredSnapshot(guild_id=GUILD, members={})
    result = await store.apply(GUILD, plan_changes(guild.snapshot(GUILD, Scope.everything()), empty))
    assert result.ok
    return store, guild


async def _measure(store: SqlStore, guild: MemoryGuild, metrics: Metrics | None = None) -> DriftReport:
    locks: dict[int, asyncio.Lock] = {}
    return await measure_drift(
        GUILD,
        desired=guild,
        store=store,
        guild_lock=lambda g: locks.setdefault(g, asyncio.Lock()),
        now=NOW,
        metrics=metrics,
        batch_size=4,
    )


@pytest.mark.asyncio
async def test_every_kind_of_difference_is_found_even_behind_an_intact_fingerprint(database_url: str) -> None:
    store, guild = await _seeded(database_url)
    try:
        clean = await _measure(store, guild)
        assert clean.drift == DriftCounts()
        assert clean.counts.unchanged == 20
        assert clean.coverage == 1.0

        m, links, roles = tables.members, tables.member_roles, tables.roles
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.delete(m).where(m.c.guild_id == GUILD, m.c.user_id == 4))
                # Edits that leave the stored fingerprint as the bot wrote it.
                await conn.execute(sa.update(m).where(m.c.guild_id == GUILD, m.c.user_id == 5).values(nickname="x"))
                await conn.execute(
                    sa.delete(links).where(links.c.guild_id == GUILD, links.c.user_id == 6, links.c.role_id == 1000)
                )
                await conn.execute(sa.update(m).where(m.c.guild_id == GUILD, m.c.user_id == 9).values(status="left"))
                await conn.execute(
                    sa.update(roles).where(roles.c.guild_id == GUILD, roles.c.role_id == 1002).values(name="y")
                )
        finally:
            await engine.dispose()
        del guild.members[11]  # left Discord; the database still has the member

        metrics = Metrics()
        report = await _measure(store, guild, metrics)
        assert report.drift == DriftCounts(
            missing=1, stale=2, departed=1, rejoined=1, role_links=len(_member(4).role_ids) + 1, roles=1
        )
        assert report.drifted_user_ids == {4, 5, 6, 9, 11}
        assert report.counts.unchanged == 19 - 4
        assert report.discord_members == 19
        assert report.coverage == pytest.approx((19 - 1 - 1) / 19)
        assert report.stored.members_by_status == {"active": 18, "inactive": 0, "left": 1}
        sample = metrics.registry.get_sample_value
        assert sample("reconciler_drift", {"guild": str(GUILD), "kind": "stale"}) == 2
        assert sample("reconciler_coverage_ratio", {"guild": str(GUILD)}) == pytest.approx(17 / 19)
        assert sample("reconciler_database_members", {"guild": str(GUILD), "status": "left"}) == 1
    finally:
        await store.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_guild_reloaded_during_the_check_is_not_judged(database_url: str) -> None:
    store, guild = await _seeded(database_url)
    try:
        guild.reload_after_reads = 1
        with pytest.raises(GuildNotReadyError):
            await _measure(store, guild)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("members", "slice_size"), [(0, 5_000), (50_000, 5_000), (75_000, 7_500), (100_000, 10_000), (1_000_000, 10_000)]
)
def test_the_check_reads_a_tenth_of_the_guild_at_a_time_from_5000_to_10000_members(
    members: int, slice_size: int
) -> None:
    # Smaller slices lower the check's peak where one slice is a large part of it (50,000 members), and
    # cost time where the whole guild's read dominates it anyway (1M members): docs/benchmarks.md.
    assert _slice_size(members) == slice_size
