"""The count audit job over a real database: when it relists, when it does not, and what it records.

Discord's side is plain values here: what Discord holds (and counts) and what the bot's cache holds
(`MemoryGuild`) differ when the cache missed an event; the relist makes the cache equal to Discord's
list again, as `reconciler.discord.relist` does with hikari's. Discord's approximate member count can
be told to be off, which no relist can repair.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import typing

import attrs
import pytest
import pytest_asyncio
from memory_guild import MemoryGuild

from reconciler.config import RetentionSettings, ScheduleSettings, SyncSettings
from reconciler.domain import MemberState, RoleState, Scope
from reconciler.domain.counts import GuildCounts
from reconciler.engine.queue import SyncQueue
from reconciler.engine.reconcile import Reconciler
from reconciler.engine.runs import SyncRequest, Trigger
from reconciler.observability.logging import Redactor
from reconciler.observability.metrics import COUNT_AUDIT_KINDS, Metrics
from reconciler.scheduling import COUNT_AUDIT, JobFailedError, scheduled_jobs
from reconciler.store import SqlStore

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

pytestmark = pytest.mark.asyncio

GUILD = 9_100
ROLES = {role_id: RoleState(role_id=role_id, name=f"role {role_id}", position=role_id % 10) for role_id in (21, 22)}
SETTLE = 0.6


def member(user_id: int, *roles: int) -> MemberState:
    return MemberState(
        user_id=user_id,
        username=f"user{user_id}",
        joined_at=datetime.datetime(2023, 5, 1, tzinfo=datetime.UTC),
        role_ids=frozenset(roles),
    )


class Discord:
    """What Discord holds for the guild, and counts as its two count routes do."""

    def __init__(self, members: dict[int, MemberState]) -> None:
        self.members = members
        self.approximation_error = 0
        """Added to the member count: Discord's count is approximate and may lag."""
        self.fetches = 0
        self.on_fetch: Callable[[int], None] | None = None

    async def fetch_counts(self, guild_id: int) -> GuildCounts:
        self.fetches += 1
        if self.on_fetch is not None:
            self.on_fetch(self.fetches)
        held = dict.fromkeys(ROLES, 0)
        for state in self.members.values():
            for role_id in state.role_ids:
                held[role_id] += 1
        return GuildCounts(members=len(self.members) + self.approximation_error, role_members=held)


@attrs.define(frozen=True, kw_only=True)
class Relisted:
    completed: bool
    listed: int
    pruned: int
    reason: str | None = None


class CacheRelister:
    """Replaces the cache's members with Discord's list, as a completed relist leaves hikari's cache."""

    def __init__(self, discord: Discord, cache: MemoryGuild) -> None:
        self._discord = discord
        self._cache = cache
        self.relists = 0

    async def relist(self, guild_id: int) -> Relisted:
        self.relists += 1
        pruned = len(self._cache.members.keys() - self._discord.members.keys())
        self._cache.members = dict(self._discord.members)
        return Relisted(completed=True, listed=len(self._discord.members), pruned=pruned)


@attrs.define(kw_only=True)
class World:
    discord: Discord
    cache: MemoryGuild
    relister: CacheRelister
    store: SqlStore
    queue: SyncQueue
    metrics: Metrics
    audit: Callable[[int], Awaitable[str]]
    now: list[datetime.datetime]
    """The audit's clock: a test moves it."""

    def advance(self, **delta: float) -> None:
        self.now[0] += datetime.timedelta(**delta)

    def mismatch(self) -> dict[str, float | None]:
        sample = self.metrics.registry.get_sample_value
        return {
            kind: sample("reconciler_count_audit_mismatch", {"guild": str(GUILD), "kind": kind})
            for kind in COUNT_AUDIT_KINDS
        }

    async def audits(self) -> list[tuple[str | None, str | None]]:
        rows = await self.store.last_runs(GUILD)
        run = rows.get(COUNT_AUDIT)
        return [] if run is None else [(run.outcome, run.error_sample)]


SECRET: typing.Final = "MTIz.token-that-must-never-be-stored"


@pytest_asyncio.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    truth = {uid: member(uid, *([21] if uid % 2 else []), *([22] if uid % 3 == 0 else [])) for uid in range(1, 31)}
    discord = Discord(dict(truth))
    cache = MemoryGuild(dict(truth), ROLES)
    store = await SqlStore.open(database_url)
    await store.upgrade()
    metrics = Metrics()
    reconciler = Reconciler(
        store=store, desired=cache, metrics=metrics, settings=SyncSettings(), redact=Redactor([SECRET])
    )
    queue = SyncQueue(reconciler, is_ready=cache.is_ready, metrics=metrics, settings=SyncSettings())
    queue.start()
    relister = CacheRelister(discord, cache)
    now = [datetime.datetime(2024, 7, 1, 12, 0, tzinfo=datetime.UTC)]
    jobs = scheduled_jobs(
        ScheduleSettings(),
        SyncSettings(),
        desired=cache,
        guild_lock=reconciler.guild_lock,
        store=store,
        queue=queue,
        relister=relister,
        metrics=metrics,
        discord_counts=discord,
        retention=RetentionSettings(),
        redact=reconciler.redact,
        clock=lambda: now[0],
        count_settle_seconds=SETTLE,
    )
    (audit,) = [job.work for job in jobs if job.name == COUNT_AUDIT]
    try:
        await queue.submit(SyncRequest(guild_id=GUILD, scope=Scope.everything(), trigger=Trigger.STARTUP))
        yield World(
            discord=discord,
            cache=cache,
            relister=relister,
            store=store,
            queue=queue,
            metrics=metrics,
            audit=audit,
            now=now,
        )
    finally:
        await queue.stop(timeout=5)
        await store.close()


async def test_equal_counts_are_recorded_and_relist_nothing(world: World) -> None:
    summary = await world.audit(GUILD)

    assert summary == "counts match"
    assert world.relister.relists == 0
    assert world.discord.fetches == 1, "no second reading when the first one agrees"
    assert await world.audits() == [("success", "counts match")]
    assert world.mismatch() == dict.fromkeys(COUNT_AUDIT_KINDS, 0.0)


async def test_what_the_cache_missed_is_relisted_and_repaired(world: World) -> None:
    # Member 4 (no role) left and member 5 was granted role 22 on Discord; the gateway delivered neither.
    del world.discord.members[4]
    world.discord.members[5] = member(5, 21, 22)

    summary = await world.audit(GUILD)

    assert summary.startswith("members: Discord 29, replica 30; 1 role(s) differ (22 11 vs 10)")
    assert summary.endswith(
        "relisted: 29 listed, 1 missed departures; 0 created, 1 updated, 1 left; after: counts match"
    )
    assert world.relister.relists == 1
    assert (await world.store.present_counts(GUILD)).members == 29
    assert world.mismatch() == dict.fromkeys(COUNT_AUDIT_KINDS, 0.0)
    assert await world.audits() == [("success", summary)]


async def test_a_difference_the_relist_cannot_remove_is_relisted_again_only_after_a_back_off(world: World) -> None:
    world.discord.approximation_error = 2

    first = await world.audit(GUILD)
    second = await world.audit(GUILD)

    assert first.endswith("after: members: Discord 32, replica 30")
    assert second == "members: Discord 32, replica 30; as after the last relist, not relisted again"
    assert world.relister.relists == 1
    assert world.mismatch() == {"members": 2.0, "roles": 0.0, "role_links": 0.0}

    # Discord's approximate count moves (a busy guild): a new difference, but the back-off holds for an hour.
    world.discord.approximation_error = 3
    world.advance(minutes=50)
    held = await world.audit(GUILD)
    assert held == (
        "members: Discord 33, replica 30; a relist left a difference; next one not before 2024-07-01 13:00 UTC,"
        " not relisted again"
    )
    assert world.relister.relists == 1

    world.advance(minutes=11)
    again = await world.audit(GUILD)
    assert "relisted: 30 listed, 0 missed departures" in again
    assert world.relister.relists == 2
    world.discord.approximation_error = 4
    world.advance(minutes=61)
    assert (await world.audit(GUILD)).endswith("next one not before 2024-07-01 15:01 UTC, not relisted again")

    world.discord.approximation_error = 0
    assert await world.audit(GUILD) == "counts match"
    assert world.mismatch() == dict.fromkeys(COUNT_AUDIT_KINDS, 0.0)
    world.discord.members[7] = member(7, 22)  # a missed role change after the counts matched again
    assert "relisted" in await world.audit(GUILD)
    assert world.relister.relists == 3


async def test_a_change_still_in_flight_when_first_read_is_not_a_mismatch(world: World) -> None:
    # Discord and the cache already have the newcomer; the database gets it shortly after the first
    # reading, well within the settle: the second reading agrees and nothing is relisted.
    newcomer = member(99, 21)
    world.discord.members[99] = newcomer
    world.cache.members[99] = newcomer
    writes: list[asyncio.Task[object]] = []

    async def deliver() -> None:
        await asyncio.sleep(SETTLE / 3)
        await world.queue.submit(SyncRequest(guild_id=GUILD, scope=Scope.of_users([99]), trigger=Trigger.GATEWAY))

    def on_fetch(count: int) -> None:
        if count == 1:
            writes.append(asyncio.create_task(deliver()))

    world.discord.on_fetch = on_fetch

    summary = await world.audit(GUILD)

    assert summary == "counts match"
    assert world.discord.fetches == 2, "the first reading differed, so both sides were read again"
    assert world.relister.relists == 0
    await asyncio.gather(*writes)


async def test_a_failed_relist_fails_the_audit_and_is_recorded(world: World) -> None:
    async def incomplete(guild_id: int) -> Relisted:
        return Relisted(completed=False, listed=0, pruned=0, reason="no member chunk for 30 s")

    world.relister.relist = incomplete  # type: ignore[method-assign]
    del world.discord.members[4]

    with pytest.raises(JobFailedError, match="relist incomplete: no member chunk for 30 s"):
        await world.audit(GUILD)

    ((outcome, note),) = await world.audits()
    assert outcome == "failed"
    assert note == "JobFailedError: relist incomplete: no member chunk for 30 s"
    assert world.mismatch()["members"] == 1.0


async def test_discord_unreachable_fails_the_audit_and_changes_no_gauge(world: World) -> None:
    def refuse(count: int) -> None:
        raise ConnectionError("Discord does not answer")

    world.discord.on_fetch = refuse

    with pytest.raises(ConnectionError):
        await world.audit(GUILD)

    assert await world.audits() == [("failed", "ConnectionError: Discord does not answer")]
    # As the start-up run left them: NaN, not audited yet (a failed audit publishes nothing).
    assert all(value is not None and math.isnan(value) for value in world.mismatch().values())


async def test_exception_text_is_stored_redacted(world: World) -> None:
    def leak(count: int) -> None:
        raise ConnectionError(f"Discord refused Authorization: Bot {SECRET}")

    world.discord.on_fetch = leak

    with pytest.raises(ConnectionError):
        await world.audit(GUILD)

    ((outcome, sample),) = await world.audits()
    assert outcome == "failed"
    assert sample is not None
    assert SECRET not in sample
    assert sample.startswith("ConnectionError: Discord refused Authorization: Bot ")
