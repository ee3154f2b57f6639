"""The queue holds one entry per guild, folded as requests arrive: it grows with the users waiting, not the events;
a guild the bot left leaves nothing behind in the process.

Discord's side is a `MemoryGuild`; the database is real (SQLite and PostgreSQL).
"""

from __future__ import annotations

import datetime
import time
import typing

import pytest
import pytest_asyncio
from memory_guild import MemoryGuild
from waiting import eventually

from reconciler.config import SyncSettings
from reconciler.domain import MemberState, Scope
from reconciler.engine.guilds import GuildRecords
from reconciler.engine.queue import SyncQueue
from reconciler.engine.reconcile import Reconciler
from reconciler.engine.runs import SyncRequest, Trigger
from reconciler.observability.metrics import Metrics
from reconciler.store import SqlStore

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.asyncio

GUILD = 6_000_000
JOINED = datetime.datetime(2023, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
EVENTS = 200_000
USERS = 5_000


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    store = await SqlStore.open(database_url, batch_size=2_000)
    await store.upgrade()
    yield store
    await store.close()


async def test_a_burst_for_a_guild_not_ready_waits_as_one_scope_of_its_users_and_reconciles_exactly_them(
    store: SqlStore,
) -> None:
    everyone = {uid: MemberState(user_id=uid, username=f"user{uid}", joined_at=JOINED) for uid in range(1, 8_001)}
    guild = MemoryGuild(everyone)
    ready = False
    metrics = Metrics()
    queue = SyncQueue(
        Reconciler(store=store, desired=guild, metrics=metrics, settings=SyncSettings()),
        is_ready=lambda _guild: ready,
        metrics=metrics,
        settings=SyncSettings(),
    )
    queue.start()
    try:
        # Users 1..5000, each one 40 times, interleaved as a busy guild sends them.
        for event in range(EVENTS):
            user_id = event % USERS + 1
            queue.enqueue(
                SyncRequest(
                    guild_id=GUILD,
                    scope=Scope.of_users((user_id,)),
                    trigger=Trigger.GATEWAY,
                    event_times=(time.monotonic(),),
                )
            )

        waiting = queue.pending_request(GUILD)
        assert waiting is not None
        assert waiting.scope.user_ids == frozenset(range(1, USERS + 1))
        assert len(waiting.event_times) == USERS, "event times are kept per member, not per event"
        assert queue.depth == 1

        ready = True
        queue.notify_ready(GUILD)
        await eventually(lambda: _idle(queue), lambda idle: idle, within=60, interval=0.1)
    finally:
        await queue.stop(timeout=10)

    stored = await store.load_snapshot(GUILD, Scope.everything())
    assert set(stored.members) == set(range(1, USERS + 1))
    lag_observations = metrics.registry.get_sample_value("reconciler_event_lag_seconds_count")
    assert lag_observations == USERS


async def _idle(queue: SyncQueue) -> bool:
    return not queue.is_pending(GUILD) and queue.running(GUILD) is None


async def test_a_guild_left_loses_its_pending_work_lock_memo_and_series_and_keeps_its_rows(store: SqlStore) -> None:
    everyone = {uid: MemberState(user_id=uid, username=f"user{uid}", joined_at=JOINED) for uid in range(1, 301)}
    other = GUILD + 1
    guild = MemoryGuild(everyone)
    ready = {GUILD: True, other: True}
    metrics = Metrics()
    reconciler = Reconciler(store=store, desired=guild, metrics=metrics, settings=SyncSettings())
    queue = SyncQueue(reconciler, is_ready=ready.__getitem__, metrics=metrics, settings=SyncSettings())
    records = GuildRecords(store=store, queue=queue, metrics=metrics)
    queue.start()
    try:
        for guild_id in (GUILD, other):
            await records.arrived(guild_id, name=f"guild {guild_id}", member_count=300)
            await queue.submit(SyncRequest(guild_id=guild_id, scope=Scope.everything(), trigger=Trigger.STARTUP))
        assert reconciler.holds(GUILD)
        ready[GUILD] = False  # its member list reloads: a request waits
        queue.enqueue(SyncRequest(guild_id=GUILD, scope=Scope.of_users((1,)), trigger=Trigger.GATEWAY))
        assert queue.is_pending(GUILD)
        scrape = metrics.exposition().decode()
        assert f'guild="{GUILD}"' in scrape

        await records.removed(GUILD)
    finally:
        await queue.stop(timeout=5)

    assert not queue.is_pending(GUILD)
    assert not reconciler.holds(GUILD)
    scrape = metrics.exposition().decode()
    assert f'guild="{GUILD}"' not in scrape
    assert f'guild="{other}"' in scrape, "only the guild left loses its series"
    assert reconciler.holds(other)
    assert len((await store.load_snapshot(GUILD, Scope.everything())).members) == 300
    removed = {g.id: g.removed_at for g in await store.guilds()}
    assert removed[GUILD] is not None


async def test_a_guild_left_while_its_run_is_in_flight_is_forgotten_when_the_run_ends(store: SqlStore) -> None:
    everyone = {uid: MemberState(user_id=uid, username=f"user{uid}", joined_at=JOINED) for uid in range(1, 201)}
    guild = MemoryGuild(everyone)
    metrics = Metrics()
    reconciler = Reconciler(store=store, desired=guild, metrics=metrics, settings=SyncSettings())
    queue = SyncQueue(reconciler, is_ready=lambda _guild: True, metrics=metrics, settings=SyncSettings())
    records = GuildRecords(store=store, queue=queue, metrics=metrics)
    left: list[bool] = []

    def leave_once(_scope: Scope) -> None:
        # GUILD_DELETE arrives while the run reads the cache (what GuildRecords.removed does, minus the row).
        if not left:
            left.append(True)
            queue.drop_guild(GUILD)
            metrics.remove_guild(GUILD)
            assert reconciler.holds(GUILD), "the run in flight keeps its lock until it ends"

    guild.on_snapshot = leave_once
    queue.start()
    try:
        await records.arrived(GUILD, name="leaving", member_count=200)
        await queue.submit(SyncRequest(guild_id=GUILD, scope=Scope.everything(), trigger=Trigger.STARTUP))
    finally:
        await queue.stop(timeout=5)

    assert left == [True]
    assert not reconciler.holds(GUILD)
    assert f'guild="{GUILD}"' not in metrics.exposition().decode(), "the run's own series went with the guild"
