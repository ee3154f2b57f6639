"""Property: whatever the interleaving of live events and history pages, each message is counted once.

Discord is modelled by a channel's history that grows while the backfill pages it, and a gateway that
delivers each new message in order, sometimes before, sometimes after the page that also returns it.
The stored state before the restart is any set of ranges of the messages posted before it (snowflakes
grow with time: a message counted by an earlier process is older than any posted after the restart).
The code under test is the real ActivityBuffer and Backfill, writing to a real SQLite store.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import tempfile
import typing

import attrs
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.activity import ActivityBuffer, Backfill
from reconciler.activity.backfill import PAGE_SIZE, ChannelHead, FetchedMessage
from reconciler.domain import (
    ActivityBatch,
    ActivityDelta,
    ChannelActivityDelta,
    CountedIds,
    CountedUpdate,
    snowflake_at,
)
from reconciler.observability.metrics import Metrics
from reconciler.store import SqlStore

if typing.TYPE_CHECKING:
    from collections.abc import Sequence

GUILD = 81384788765712384
CHANNEL = 81384788765712390
NOW = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.UTC)
START = snowflake_at(NOW - datetime.timedelta(hours=1))
AUTHOR = 7


@attrs.define
class World:
    """The channel as Discord holds it, and the gateway's queue of events not yet delivered."""

    ids: list[int]
    visible: int
    """Messages posted so far (a prefix of `ids`)."""
    undelivered: list[int] = attrs.field(factory=list[int])
    rng: random.Random = attrs.field(factory=random.Random)
    buffer: ActivityBuffer | None = None

    def post_one(self) -> None:
        if self.visible < len(self.ids):
            self.undelivered.append(self.ids[self.visible])
            self.visible += 1

    def deliver_some(self) -> None:
        assert self.buffer is not None
        for _ in range(self.rng.randint(0, len(self.undelivered))):
            message_id = self.undelivered.pop(0)
            self.buffer.record(GUILD, CHANNEL, message_id, AUTHOR, NOW, counts=True)


class ModelHistory:
    """`MessageHistory` over the model: each page request lets time pass (posts, deliveries) first."""

    def __init__(self, world: World, last_at_ready: int | None) -> None:
        self._world = world
        self._last_at_ready = last_at_ready

    async def channels(self, guild_id: int) -> Sequence[ChannelHead]:
        return [ChannelHead(channel_id=CHANNEL, last_message_id=self._last_at_ready)]

    async def page_after(self, channel_id: int, after: int) -> Sequence[FetchedMessage]:
        world = self._world
        for _ in range(world.rng.randint(0, 3)):
            world.post_one()
        world.deliver_some()
        posted = world.ids[: world.visible]
        page = [i for i in posted if i > after][:PAGE_SIZE]
        world.deliver_some()
        await asyncio.sleep(0)
        return [FetchedMessage(id=i, author_id=AUTHOR, at=NOW, counts=True) for i in page]


async def _scenario(ids: list[int], stored: list[tuple[int, int]], live_from: int, seed: int) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp}/a.db", clock=lambda: NOW)
        try:
            await store.upgrade()
            before = CountedIds(START, [(ids[a], ids[b]) for a, b in stored])
            already = sum(1 for i in ids if i in before)
            await store.commit_activity(
                ActivityBatch(
                    members=[
                        ActivityDelta(
                            guild_id=GUILD, user_id=AUTHOR, day=NOW.date(), messages=already, last_seen_at=NOW
                        )
                    ]
                    if already
                    else [],
                    channels=[
                        ChannelActivityDelta(guild_id=GUILD, channel_id=CHANNEL, day=NOW.date(), messages=already)
                    ]
                    if already
                    else [],
                    counted=[CountedUpdate(guild_id=GUILD, channel_id=CHANNEL, counted=before)],
                )
            )
            metrics = Metrics()
            buffer = ActivityBuffer(store=store, metrics=metrics, flush_seconds=60, clock=lambda: NOW)
            world = World(ids=ids, visible=live_from, rng=random.Random(seed), buffer=buffer)
            history = ModelHistory(world, ids[live_from - 1] if live_from else None)
            backfill = Backfill(
                buffer=buffer,
                history=history,
                store=store,
                metrics=metrics,
                max_age_days=7,
                concurrency=1,
                clock=lambda: NOW,
            )
            buffer.session_restarted(GUILD)
            backfill.guild_ready(GUILD)
            while backfill.running() or backfill.progress(GUILD) is None or world.visible < len(ids):
                world.post_one()
                world.deliver_some()
                await asyncio.sleep(0)
            while world.undelivered:
                world.deliver_some()
            await backfill.wait_idle(5)
            await buffer.flush()
            # A second guild-ready (a fresh session) finds nothing left to fetch.
            backfill.guild_ready(GUILD)
            await backfill.wait_idle(5)
            await buffer.flush()
            async with store._engine.connect() as conn:  # pyright: ignore[reportPrivateUsage]
                member_total = (await conn.execute(sa.text("SELECT SUM(messages) FROM message_activity"))).scalar()
                channel_total = (await conn.execute(sa.text("SELECT SUM(messages) FROM channel_activity"))).scalar()
            stored_after = (await store.load_counted(GUILD))[CHANNEL].counted
            assert all(i in stored_after for i in ids), "a message was never settled"
            return int(member_total or 0), int(channel_total or 0)
        finally:
            await store.close()


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, int]], int, int]:
    count = draw(st.integers(min_value=1, max_value=250))
    steps = draw(st.lists(st.integers(min_value=1, max_value=5_000), min_size=count, max_size=count))
    ids: list[int] = []
    current = START + 1
    for step in steps:
        current += step
        ids.append(current)
    live_from = draw(st.integers(min_value=0, max_value=count))
    # Snowflakes grow with time: what an earlier process counted was posted before the restart.
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=max(live_from - 1, 0)), max_size=8)))
    stored = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)] if live_from else []
    seed = draw(st.integers(min_value=0, max_value=2**16))
    return ids, stored, live_from, seed


@settings(max_examples=30, deadline=None)
@given(scenario=scenarios())
def test_each_message_is_counted_once_whatever_the_interleaving(
    scenario: tuple[list[int], list[tuple[int, int]], int, int],
) -> None:
    ids, stored, live_from, seed = scenario

    members, channels = asyncio.run(_scenario(ids, stored, live_from, seed))

    assert members == channels == len(ids)
