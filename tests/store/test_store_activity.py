"""Exactly-once activity in the store, on every backend: counts and counted sets move together."""

from __future__ import annotations

import datetime
import typing

import pytest
import sqlalchemy as sa

from reconciler.domain import (
    ActivityBatch,
    ActivityDelta,
    ChannelActivityDelta,
    CountedIds,
    CountedUpdate,
    RecordedGap,
)

if typing.TYPE_CHECKING:
    from conftest import Clock, StoreFactory

    from reconciler.store import SqlStore

pytestmark = pytest.mark.asyncio

GUILD = 81384788765712384
CHANNEL = 81384788765712390
THREAD = 81384788765712399


async def query(store: SqlStore, sql: str) -> list[tuple[typing.Any, ...]]:
    async with store._engine.connect() as conn:  # pyright: ignore[reportPrivateUsage]
        return [tuple(row) for row in await conn.execute(sa.text(sql))]


def batch(
    clock: Clock, channel: int, counted: CountedIds, *, messages: int, user: int = 1, gaps: tuple[RecordedGap, ...] = ()
) -> ActivityBatch:
    day = clock.now.date()
    return ActivityBatch(
        members=[ActivityDelta(guild_id=GUILD, user_id=user, day=day, messages=messages, last_seen_at=clock.now)],
        channels=[ChannelActivityDelta(guild_id=GUILD, channel_id=channel, day=day, messages=messages)],
        counted=[CountedUpdate(guild_id=GUILD, channel_id=channel, counted=counted)],
        gaps=gaps,
    )


async def test_a_flush_writes_counts_and_the_counted_set_and_sets_only_grow(
    store_factory: StoreFactory, clock: Clock
) -> None:
    store = await store_factory()

    await store.commit_activity(batch(clock, CHANNEL, CountedIds(100, [(200, 210)]), messages=3))
    await store.commit_activity(batch(clock, CHANNEL, CountedIds(50, [(101, 150), (300, 300)]), messages=2))
    await store.commit_activity(batch(clock, THREAD, CountedIds(7), messages=1, user=2))
    await store.commit_activity(ActivityBatch())

    counted = await store.load_counted(GUILD)
    assert counted[CHANNEL].counted == CountedIds(150, [(200, 210), (300, 300)])
    assert counted[THREAD].counted == CountedIds(7)
    assert counted[CHANNEL].forbidden_at is None
    assert await query(store, "SELECT channel_id, messages FROM channel_activity ORDER BY channel_id") == [
        (CHANNEL, 5),
        (THREAD, 1),
    ]
    assert await query(store, "SELECT SUM(messages) FROM message_activity") == [(6,)]
    assert await query(
        store, "SELECT watermark, counted_ranges FROM activity_channels WHERE channel_id = 81384788765712390"
    ) == [(150, "200-210,300-300")]
    assert await store.load_counted(GUILD + 1) == {}


async def test_a_failing_flush_writes_nothing(store_factory: StoreFactory, clock: Clock) -> None:
    store = await store_factory()
    await store.commit_activity(batch(clock, CHANNEL, CountedIds(100), messages=3))
    broken = ActivityBatch(
        members=[ActivityDelta(guild_id=GUILD, user_id=1, day=clock.now.date(), messages=5, last_seen_at=clock.now)],
        counted=[CountedUpdate(guild_id=GUILD, channel_id=CHANNEL, counted=CountedIds(500))],
        channels=[ChannelActivityDelta(guild_id=GUILD, channel_id=CHANNEL, day=clock.now.date(), messages=5)],
        gaps=[RecordedGap(guild_id=GUILD, channel_id=CHANNEL, after=1, before=2**64, reason="too_large")],
    )

    with pytest.raises((OverflowError, sa.exc.SQLAlchemyError)):
        await store.commit_activity(broken)  # the gap's id does not fit in BIGINT: the whole flush is refused

    assert (await store.load_counted(GUILD))[CHANNEL].counted == CountedIds(100)
    assert await query(store, "SELECT SUM(messages) FROM message_activity") == [(3,)]


async def test_gaps_access_and_top_channels(store_factory: StoreFactory, clock: Clock) -> None:
    store = await store_factory()
    gap = RecordedGap(guild_id=GUILD, channel_id=CHANNEL, after=10, before=90, reason="older_than_max_age")
    await store.commit_activity(batch(clock, CHANNEL, CountedIds(90), messages=4, gaps=(gap,)))
    clock.advance(days=1)
    await store.commit_activity(batch(clock, THREAD, CountedIds(5), messages=6))
    clock.advance(days=8)
    await store.commit_activity(batch(clock, CHANNEL + 1, CountedIds(5), messages=1))

    await store.set_channel_access(GUILD, CHANNEL + 2, forbidden=True, watermark_if_new=77)
    await store.set_channel_access(GUILD, CHANNEL, forbidden=True, watermark_if_new=1)

    counted = await store.load_counted(GUILD)
    assert counted[CHANNEL + 2].counted == CountedIds(77)
    assert counted[CHANNEL + 2].forbidden_at == clock.now
    assert counted[CHANNEL].forbidden_at == clock.now
    assert counted[CHANNEL].counted == CountedIds(90)  # access never touches the counted set
    await store.set_channel_access(GUILD, CHANNEL, forbidden=False, watermark_if_new=1)
    assert (await store.load_counted(GUILD))[CHANNEL].forbidden_at is None
    assert await store.activity_gap_count(GUILD) == 1
    assert await store.top_channels(GUILD, now=clock.now, days=9) == [(THREAD, 6), (CHANNEL + 1, 1)]
    assert await store.top_channels(GUILD, now=clock.now, days=30, limit=2) == [(THREAD, 6), (CHANNEL, 4)]


async def test_the_channel_activity_view(store_factory: StoreFactory) -> None:
    store = await store_factory()
    today = datetime.datetime.now(datetime.UTC)
    for days_ago, messages in ((0, 2), (3, 5), (20, 7), (60, 11)):
        day = (today - datetime.timedelta(days=days_ago)).date()
        await store.commit_activity(
            ActivityBatch(
                channels=[ChannelActivityDelta(guild_id=GUILD, channel_id=CHANNEL, day=day, messages=messages)]
            )
        )

    rows = await query(store, "SELECT channel_id, messages_7d, messages_30d, messages_total FROM v_channel_activity")

    assert rows == [(CHANNEL, 7, 14, 25)]
