"""Each message counted exactly once across stops, live traffic during a backfill, replays and failed flushes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
import typing

import aiohttp
import pytest
from activity_truth import counted_in_database, posted_in_sandbox
from app_settings import app_settings
from waiting import eventually

from reconciler.app import App, running_app
from reconciler.domain import snowflake_at

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from database_view import DatabaseView

    from reconciler.sandbox import DiscordSandbox
    from reconciler.store.api import Store

pytestmark = pytest.mark.asyncio

DEADLINE: typing.Final = 30.0
FLUSH_SECONDS: typing.Final = 0.2
"""`sync.activity_flush_seconds` as `tests/app_settings.py` sets it."""


@contextlib.asynccontextmanager
async def started(
    sandbox: DiscordSandbox,
    url: str,
    *,
    proxy: Callable[[Store], Store] | None = None,
    **sections: dict[str, typing.Any],
) -> AsyncIterator[App]:
    async with running_app(app_settings(sandbox, url, **sections), store_proxy=proxy) as app:
        assert await app.wait_ready(60), "guilds never became ready"
        yield app


async def backfilled(app: App, guild_id: int) -> None:
    """Wait until the guild's backfill has run and everything counted is written."""
    assert app.backfill is not None

    async def finished() -> bool:
        progress = app.backfill.progress(guild_id) if app.backfill is not None else None
        return progress is not None and not progress.running

    await eventually(finished, bool, within=DEADLINE)
    await app.activity.flush()


def humans(sandbox: DiscordSandbox, guild_id: int) -> list[int]:
    return [uid for uid, m in sandbox.members(guild_id).items() if not m.bot][:6]


async def test_messages_posted_while_the_bot_is_stopped_are_counted_exactly_after_the_restart(
    sandbox: DiscordSandbox, database_url: str, db_view_factory: Callable[[str], DatabaseView]
) -> None:
    guild_id = sandbox.create_guild(members=40, channels=3, seed=161)
    first, second, third = sandbox.channels(guild_id)
    authors = humans(sandbox, guild_id)
    view = db_view_factory(database_url)
    async with started(sandbox, database_url) as app:
        await backfilled(app, guild_id)
        for index in range(30):
            sandbox.post_message_nowait(first, authors[index % 6], "live")
        await sandbox.flush()
        await eventually(lambda: counted_in_database(view, guild_id), lambda c: c.total == 30, within=DEADLINE)

    # Stopped: a deploy. The sandbox keeps the history; nobody is connected to hear it.
    thread = sandbox.create_thread(second, "while away", authors[0])
    for index in range(250):
        sandbox.post_message_nowait((first, second, thread)[index % 3], authors[index % 6], f"away {index}")
    sandbox.bot_message_nowait(third, {"content": "a message the bot posted itself"})

    async with started(sandbox, database_url) as app:
        await backfilled(app, guild_id)
        counted = await counted_in_database(view, guild_id)
        truth = posted_in_sandbox(sandbox, guild_id)
        assert counted.by_channel == truth.by_channel
        assert counted == truth
        assert truth.total == 30 + 250 + 1
        assert app.metrics.backfill_messages._value.get() == 251  # pyright: ignore[reportPrivateUsage]
        described = app.backfill.describe(guild_id) if app.backfill is not None else None
        assert described is not None
        assert described.startswith("activity complete since")
        top = await app.store.top_channels(guild_id, now=datetime.datetime.now(datetime.UTC))
        assert top[0] == (first, 30 + 84)  # 30 live, and 84 of the 250 (index % 3 == 0)
        assert {channel_id for channel_id, _ in top} == {first, second, thread, third}


async def test_live_traffic_during_a_backfill_is_counted_once(
    sandbox: DiscordSandbox, database_url: str, db_view_factory: Callable[[str], DatabaseView]
) -> None:
    guild_id = sandbox.create_guild(members=40, channels=2, seed=162)
    busy, quiet = sandbox.channels(guild_id)
    authors = humans(sandbox, guild_id)
    view = db_view_factory(database_url)
    async with started(sandbox, database_url) as app:
        await backfilled(app, guild_id)
    for index in range(1_500):
        sandbox.post_message_nowait(busy, authors[index % 6], "while away")
    sandbox.faults.rest_latency_s = 0.05  # 15 pages of history take 0.75 s at least

    live_during_backfill = 0
    pending_seen = 0.0
    async with started(sandbox, database_url) as app:
        assert app.backfill is not None
        pending = app.metrics.backfill_channels_pending.labels(guild=str(guild_id))
        # The live path counts while the backfill is still paging the gap behind it, in the same channel.
        while app.backfill.running() or app.backfill.progress(guild_id) is None:
            pending_seen = max(pending_seen, pending._value.get())  # pyright: ignore[reportPrivateUsage]
            for index in range(10):
                sandbox.post_message_nowait((busy, quiet)[index % 2], authors[index % 6], "live")
            live_during_backfill += 10
            await sandbox.flush()
            await asyncio.sleep(0.02)
        assert live_during_backfill >= 100, "the backfill ended before live traffic overlapped it"
        assert pending_seen == 1  # the busy channel, while it was being paged
        assert pending._value.get() == 0  # pyright: ignore[reportPrivateUsage]
        await backfilled(app, guild_id)
        sandbox.faults.rest_latency_s = 0.0
        truth = posted_in_sandbox(sandbox, guild_id)
        counted = await eventually(
            lambda: counted_in_database(view, guild_id), lambda c: c.total >= truth.total, within=DEADLINE
        )
        assert counted == truth
        assert truth.total == 1_500 + live_during_backfill


async def test_a_resume_replay_never_counts_twice(
    sandbox: DiscordSandbox, database_url: str, db_view_factory: Callable[[str], DatabaseView]
) -> None:
    guild_id = sandbox.create_guild(members=40, channels=2, seed=163)
    channel = next(iter(sandbox.channels(guild_id)))
    authors = humans(sandbox, guild_id)
    view = db_view_factory(database_url)
    sandbox.faults.resume_replay_overlap = 60  # the resume hands back events the bot already counted
    async with started(sandbox, database_url) as app:
        await backfilled(app, guild_id)
        for index in range(100):
            sandbox.post_message_nowait(channel, authors[index % 6], "before")
        await sandbox.flush()
        await eventually(lambda: counted_in_database(view, guild_id), lambda c: c.total == 100, within=DEADLINE)
        await sandbox.disconnect(resumable=True)
        await eventually(lambda: _value(sandbox.stats.resumes), lambda n: n >= 1, within=DEADLINE)
        for index in range(20):
            sandbox.post_message_nowait(channel, authors[index % 6], "after")
        await sandbox.flush()
        duplicates = app.metrics.activity_duplicates.labels(source="live")
        await eventually(lambda: _value(duplicates._value.get()), lambda n: n >= 50, within=DEADLINE)  # pyright: ignore[reportPrivateUsage]
        counted = await eventually(
            lambda: counted_in_database(view, guild_id), lambda c: c.total >= 120, within=DEADLINE
        )
        # Nothing arrives after this: 5 flush periods more show no late double count.
        await asyncio.sleep(5 * FLUSH_SECONDS)
        assert await counted_in_database(view, guild_id) == counted == posted_in_sandbox(sandbox, guild_id)


async def _value(value: float) -> float:
    return value


class _FailsAfterCommit:
    """The real store, except that `commit_activity` raises after committing, `failures` times."""

    def __init__(self, inner: Store, failures: int) -> None:
        self._inner = inner
        self.failures = failures
        self.raised = 0

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._inner, name)

    async def commit_activity(self, batch: typing.Any) -> None:
        await self._inner.commit_activity(batch)
        if self.raised < self.failures and batch.counted:
            self.raised += 1
            raise ConnectionResetError("connection lost after COMMIT (injected)")


async def test_a_flush_that_fails_after_its_commit_never_counts_twice(
    sandbox: DiscordSandbox, database_url: str, db_view_factory: Callable[[str], DatabaseView]
) -> None:
    guild_id = sandbox.create_guild(members=40, channels=2, seed=164)
    channel = next(iter(sandbox.channels(guild_id)))
    authors = humans(sandbox, guild_id)
    view = db_view_factory(database_url)
    proxies: list[_FailsAfterCommit] = []

    def proxy(store: Store) -> Store:
        proxies.append(_FailsAfterCommit(store, failures=3))
        return typing.cast("Store", proxies[-1])

    async with started(sandbox, database_url, proxy=proxy) as app:
        await backfilled(app, guild_id)
        for burst in range(4):
            for index in range(50):
                sandbox.post_message_nowait(channel, authors[index % 6], f"burst {burst}")
            await sandbox.flush()
            await asyncio.sleep(1.5 * FLUSH_SECONDS)  # paces the input: each burst is its own flush
        counted = await eventually(
            lambda: counted_in_database(view, guild_id), lambda c: c.total >= 200, within=DEADLINE
        )
        await asyncio.sleep(5 * FLUSH_SECONDS)  # five flush periods: a put-back count would have been written by now
        assert proxies[0].raised == 3
        assert await counted_in_database(view, guild_id) == counted == posted_in_sandbox(sandbox, guild_id)
        assert app.metrics.errors.labels(stage="activity")._value.get() >= 3  # pyright: ignore[reportPrivateUsage]


async def test_a_channel_the_bot_cannot_read_is_skipped_and_reported_once(
    sandbox: DiscordSandbox, database_url: str, db_view_factory: Callable[[str], DatabaseView]
) -> None:
    guild_id = sandbox.create_guild(members=40, channels=2, seed=165)
    readable, hidden = sandbox.channels(guild_id)
    authors = humans(sandbox, guild_id)
    an_hour_ago = int(time.time() * 1000) - 3_600_000
    sandbox.seed_history(readable, authors, 40, start_ms=an_hour_ago)
    sandbox.seed_history(hidden, authors, 40, start_ms=an_hour_ago)
    sandbox.set_channel_readable(hidden, False)
    view = db_view_factory(database_url)
    route = "GET /channels/{channel_id}/messages"

    async with started(sandbox, database_url, activity={"import_history_days": 1}) as app:
        await backfilled(app, guild_id)
        assert app.backfill is not None
        progress = app.backfill.progress(guild_id)
        assert progress is not None
        assert progress.forbidden == [hidden]
        assert "1 channel(s) not readable" in progress.describe()
        counted = await counted_in_database(view, guild_id)
        assert counted.by_channel == {readable: 40}
        rows = await view.rows("SELECT channel_id, forbidden_at FROM activity_channels WHERE guild_id = :g", g=guild_id)
        assert {int(r["channel_id"]) for r in rows if r["forbidden_at"] is not None} == {hidden}
        asked = sandbox.stats.rest_requests[route]
        # A fresh session makes the guild ready again: the hidden channel is not asked again.
        await sandbox.disconnect(resumable=False)
        await eventually(
            lambda: _value(len(app.backfill.running()) if app.backfill else 0), lambda n: n == 0, within=DEADLINE
        )
        await backfilled(app, guild_id)
        assert sandbox.stats.rest_requests[route] == asked
        assert app.metrics.backfill_channels_skipped.labels(reason="forbidden")._value.get() == 1  # pyright: ignore[reportPrivateUsage]

    # Access granted, and the bot restarted: the channel is read this time and no longer reported.
    sandbox.set_channel_readable(hidden, True)
    async with started(sandbox, database_url, activity={"import_history_days": 1}) as app:
        await backfilled(app, guild_id)
        assert (await counted_in_database(view, guild_id)).by_channel == {readable: 40, hidden: 40}
        rows = await view.rows("SELECT forbidden_at FROM activity_channels WHERE channel_id = :c", c=hidden)
        assert rows == [{"forbidden_at": None}]
        progress = app.backfill.progress(guild_id) if app.backfill is not None else None
        assert progress is not None
        assert progress.forbidden == []


async def test_a_429_is_waited_out_not_treated_as_an_error(
    sandbox: DiscordSandbox, database_url: str, db_view_factory: Callable[[str], DatabaseView]
) -> None:
    guild_id = sandbox.create_guild(members=40, channels=1, seed=166)
    (channel,) = sandbox.channels(guild_id)
    authors = humans(sandbox, guild_id)
    view = db_view_factory(database_url)
    async with started(sandbox, database_url) as app:
        await backfilled(app, guild_id)
    for index in range(450):
        sandbox.post_message_nowait(channel, authors[index % 6], "away")
    # Another client of the same token used up the channel's bucket just before the bot came back.
    sandbox.faults.rest_rate_limit = (3, 2.0)

    async with aiohttp.ClientSession(sandbox.rest_url) as http:
        for _ in range(3):
            async with http.get(
                f"/channels/{channel}/messages", headers={"Authorization": f"Bot {sandbox.token}"}
            ) as reply:
                assert reply.status == 200
    limited_before = sandbox.stats.rest_rate_limited

    async with started(sandbox, database_url) as app:
        await backfilled(app, guild_id)
        assert sandbox.stats.rest_rate_limited > limited_before  # the bot did meet a 429 ...
        assert app.metrics.errors.labels(stage="activity")._value.get() == 0  # pyright: ignore[reportPrivateUsage]
        assert await counted_in_database(view, guild_id) == posted_in_sandbox(sandbox, guild_id)  # ... and waited


async def test_a_gap_older_than_the_maximum_age_is_recorded_not_fetched(
    sandbox: DiscordSandbox, database_url: str, db_view_factory: Callable[[str], DatabaseView]
) -> None:
    guild_id = sandbox.create_guild(members=40, channels=1, seed=167)
    (channel,) = sandbox.channels(guild_id)
    authors = humans(sandbox, guild_id)
    view = db_view_factory(database_url)
    async with started(sandbox, database_url) as app:
        await backfilled(app, guild_id)
    for index in range(20):
        sandbox.post_message_nowait(channel, authors[index % 6], "away")
    asked = sandbox.stats.rest_requests["GET /channels/{channel_id}/messages"]
    ten_days_later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10)

    async with running_app(app_settings(sandbox, database_url), clock=lambda: ten_days_later) as app:
        assert await app.wait_ready(60)
        await backfilled(app, guild_id)
        gaps = await view.rows("SELECT channel_id, after_id, before_id, reason FROM activity_gaps")
        assert [(int(g["channel_id"]), g["reason"]) for g in gaps] == [(channel, "older_than_max_age")]
        assert int(gaps[0]["before_id"]) == snowflake_at(ten_days_later - datetime.timedelta(days=7))
        assert (await counted_in_database(view, guild_id)).total == 0
        assert sandbox.stats.rest_requests["GET /channels/{channel_id}/messages"] == asked
        assert app.metrics.backfill_channels_skipped.labels(reason="too_old")._value.get() == 1  # pyright: ignore[reportPrivateUsage]


async def test_messages_posted_over_http_while_the_gateway_is_paused_are_fetched_by_the_next_session(
    sandbox: DiscordSandbox, database_url: str, db_view_factory: Callable[[str], DatabaseView]
) -> None:
    guild_id = sandbox.create_guild(members=40, channels=2, seed=168)
    channel = next(iter(sandbox.channels(guild_id)))
    authors = humans(sandbox, guild_id)
    view = db_view_factory(database_url)
    async with started(sandbox, database_url) as app:
        await backfilled(app, guild_id)
        await sandbox.pause()  # a network cut longer than a resume: the events are lost, the history is not
        async with aiohttp.ClientSession(sandbox.base_url) as http:
            async with http.post(
                f"/_sandbox/channels/{channel}/threads", json={"name": "t", "owner_id": authors[0]}
            ) as r:
                assert r.status == 201
                thread = int((await r.json())["id"])
            for index in range(30):
                target = (channel, thread)[index % 2]
                body = {"author_id": authors[index % 6], "content": f"during the cut {index}"}
                async with http.post(f"/_sandbox/channels/{target}/messages", json=body) as r:
                    assert r.status == 201
        await sandbox.resume()
        await sandbox.disconnect(resumable=False)  # the session could not be resumed: a fresh one
        await eventually(lambda: counted_in_database(view, guild_id), lambda c: c.total >= 30, within=DEADLINE)
        await backfilled(app, guild_id)
        assert await counted_in_database(view, guild_id) == posted_in_sandbox(sandbox, guild_id)
        assert (await counted_in_database(view, guild_id)).by_channel == {channel: 15, thread: 15}
