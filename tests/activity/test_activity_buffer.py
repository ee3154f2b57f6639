"""ActivityBuffer against a real SQLite store: what a failed, unknown or cancelled flush leaves behind."""

from __future__ import annotations

import asyncio
import datetime
import typing

import pytest
import pytest_asyncio
import sqlalchemy as sa

from reconciler.activity import ActivityBuffer
from reconciler.domain import CountedIds, snowflake_at
from reconciler.observability.metrics import Metrics
from reconciler.store import SqlStore

if typing.TYPE_CHECKING:
    import pathlib
    from collections.abc import AsyncIterator

    from reconciler.domain import ActivityBatch, ChannelCounted

pytestmark = pytest.mark.asyncio

GUILD = 81384788765712384
CHANNEL = 81384788765712390
NOW = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.UTC)
FIRST_ID = snowflake_at(NOW + datetime.timedelta(seconds=1))


class FaultyStore:
    """The real store with switches: raise before or after a commit, fail reads, hold a commit."""

    def __init__(self, inner: SqlStore) -> None:
        self._inner = inner
        self.raise_before = 0
        self.raise_after = 0
        self.failing_reads = 0
        self.hold: asyncio.Event | None = None

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._inner, name)

    async def commit_activity(self, batch: ActivityBatch) -> None:
        if self.raise_before:
            self.raise_before -= 1
            raise ConnectionRefusedError("database down (injected)")
        if self.hold is not None:
            await self.hold.wait()
        await self._inner.commit_activity(batch)
        if self.raise_after:
            self.raise_after -= 1
            raise ConnectionResetError("connection lost after COMMIT (injected)")

    async def load_counted(self, guild_id: int) -> typing.Mapping[int, ChannelCounted]:
        if self.failing_reads:
            self.failing_reads -= 1
            raise ConnectionRefusedError("database down (injected)")
        return await self._inner.load_counted(guild_id)


@pytest_asyncio.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[FaultyStore]:
    inner = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    await inner.upgrade()
    yield FaultyStore(inner)
    await inner.close()


def make_buffer(store: FaultyStore) -> ActivityBuffer:
    return ActivityBuffer(
        store=typing.cast("typing.Any", store), metrics=Metrics(), flush_seconds=60, clock=lambda: NOW
    )


def post(buffer: ActivityBuffer, first: int, count: int) -> list[int]:
    ids = [FIRST_ID + (first + i) * 1000 for i in range(count)]
    for message_id in ids:
        buffer.record(GUILD, CHANNEL, message_id, 7, NOW, counts=True)
    return ids


async def total(store: FaultyStore) -> int:
    async with store._inner._engine.connect() as conn:  # pyright: ignore[reportPrivateUsage]
        return int((await conn.execute(sa.text("SELECT COALESCE(SUM(messages), 0) FROM message_activity"))).scalar())


async def test_live_messages_settle_one_range_and_a_replay_is_dropped(store: FaultyStore) -> None:
    buffer = make_buffer(store)
    await buffer.load_guild(GUILD)
    ids = post(buffer, 0, 50)

    assert [buffer.record(GUILD, CHANNEL, i, 7, NOW, counts=True) for i in ids[-3:]] == [False] * 3
    await buffer.flush()

    stored = (await store.load_counted(GUILD))[CHANNEL].counted
    # Nothing counted before: counting starts at the first message seen, which joins the watermark.
    assert stored == CountedIds(ids[-1])
    assert await total(store) == 50


async def test_messages_before_the_stored_state_is_read_are_checked_against_it(store: FaultyStore) -> None:
    first = make_buffer(store)
    ids = post(first, 0, 10)
    await first.flush()  # reads the guild's (empty) state, then writes the ten
    second = make_buffer(store)  # another process, whose gateway hands it two of them again

    for message_id in ids[-2:]:
        second.record(GUILD, CHANNEL, message_id, 7, NOW, counts=True)
    post(second, 10, 3)
    await second.flush()

    assert await total(store) == 13


async def test_a_flush_refused_before_its_commit_is_written_by_the_next_one(store: FaultyStore) -> None:
    buffer = make_buffer(store)
    post(buffer, 0, 20)
    store.raise_before = 1

    assert await buffer.flush() == 0
    post(buffer, 20, 5)
    await buffer.flush()

    assert await total(store) == 25


async def test_an_unknown_outcome_is_resolved_before_the_next_flush(store: FaultyStore) -> None:
    buffer = make_buffer(store)
    await buffer.load_guild(GUILD)
    ids = post(buffer, 0, 20)
    store.raise_after = 1
    store.failing_reads = 1  # the check after the failure cannot read either: the outcome stays unknown

    await buffer.flush()
    post(buffer, 20, 5)
    await buffer.flush()  # reads the stored set first: the first batch did commit, it is not put back
    await buffer.flush()

    assert await total(store) == 25
    stored = (await store.load_counted(GUILD))[CHANNEL].counted
    assert stored.covers(ids[0], ids[-1])


async def test_a_cancelled_flush_still_writes_its_batch_and_stop_waits_for_it(store: FaultyStore) -> None:
    buffer = make_buffer(store)
    await buffer.load_guild(GUILD)
    post(buffer, 0, 30)
    store.hold = asyncio.Event()
    flushing = asyncio.create_task(buffer.flush())
    await asyncio.sleep(0.05)

    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    store.hold.set()
    await buffer.stop()

    assert await total(store) == 30


async def test_a_first_start_with_a_clock_ahead_of_discord_still_counts_live_messages(store: FaultyStore) -> None:
    ahead = ActivityBuffer(
        store=typing.cast("typing.Any", store),
        metrics=Metrics(),
        flush_seconds=60,
        clock=lambda: NOW + datetime.timedelta(hours=2),  # the host's clock runs two hours ahead
    )
    await ahead.load_guild(GUILD)

    ids = post(ahead, 0, 5)  # posted at Discord's NOW, before the host's "now"
    await ahead.flush()

    assert await total(store) == 5
    assert (await store.load_counted(GUILD))[CHANNEL].counted == CountedIds(ids[-1])


async def test_while_the_counted_state_is_unreadable_messages_wait_up_to_a_limit_then_stay_unsettled(
    store: FaultyStore,
) -> None:
    buffer = make_buffer(store)
    store.failing_reads = 1  # the first flush cannot read the guild's counted state
    ids = post(buffer, 0, 100_010)
    assert await buffer.flush() == 0

    await buffer.flush()

    assert await total(store) == 100_000
    stored = (await store.load_counted(GUILD))[CHANNEL].counted
    assert stored.covers(ids[0], ids[99_999])
    assert not any(i in stored for i in ids[100_000:])  # left for the backfill to fetch


async def test_an_outage_of_many_flushes_logs_its_start_with_the_traceback_and_its_end_once(
    store: FaultyStore, caplog: pytest.LogCaptureFixture
) -> None:
    buffer = make_buffer(store)
    await buffer.load_guild(GUILD)
    store.raise_before = 30
    store.failing_reads = 30  # every check of an outcome fails too, as it does while the database is away
    caplog.set_level("INFO", logger="reconciler.activity.buffer")

    for start in range(0, 300, 10):  # 30 flushes in well under the streak's one-minute reminder
        post(buffer, start, 10)
        assert await buffer.flush() == 0
    post(buffer, 300, 10)
    await buffer.flush()

    assert await total(store) == 310
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines == [
        ("ERROR", "activity flush failed", True),
        ("WARNING", "activity flush outcome unknown; checked again before the next flush", False),
        ("WARNING", "activity flush failed: recovered", False),
    ]
    recovered = caplog.records[-1]
    assert recovered.failures == 30
