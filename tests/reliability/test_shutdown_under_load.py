"""SIGTERM while messages are buffered and a burst of member updates is being written: no count is lost."""

from __future__ import annotations

import random
import time

import pytest
from reliability_support import BotFactory, Observed, UrlFactory, ViewFactory, eventually, humans

from reconciler.harness import bot_environment
from reconciler.sandbox import DiscordSandbox

MESSAGES = 5000
AUTHORS = 200
UPDATES = 2000


@pytest.mark.asyncio
async def test_sigterm_under_load_flushes_every_buffered_message(
    sandbox: DiscordSandbox, url_factory: UrlFactory, db_view_factory: ViewFactory, bot_factory: BotFactory
) -> None:
    observed = Observed("SIGTERM under load")
    guild_id = sandbox.create_guild(members=3000, roles=8, seed=9401)
    url = await url_factory("sqlite")
    view = db_view_factory(url)
    # The timer would flush only after 300 s: every count below is still in memory when SIGTERM arrives.
    bot = await bot_factory(bot_environment(sandbox, url, SYNC__ACTIVITY_FLUSH_SECONDS="300"))
    await eventually(bot.readyz, lambda r: r[0] == 200, within=60, interval=0.2)
    await eventually(lambda: view.active_ids(guild_id), lambda ids: len(ids) == 3000, within=30, interval=0.2)

    rng = random.Random(3)
    people = humans(sandbox, guild_id)
    authors = rng.sample(people, AUTHORS)
    channels = list(sandbox.channels(guild_id))
    posted: dict[int, int] = {}
    for index in range(MESSAGES):
        author = authors[index % AUTHORS] if index < AUTHORS else rng.choice(authors)
        sandbox.post_message_nowait(rng.choice(channels), author, "hi")
        posted[author] = posted.get(author, 0) + 1
    for uid in rng.sample(people, UPDATES):
        sandbox.update_member_nowait(guild_id, uid, nick=f"late-{uid % 9973}")
    await sandbox.flush()
    scrape = await eventually(
        bot.scrape,
        lambda s: s.value("reconciler_gateway_events_total", type="message_create") >= MESSAGES,
        within=30,
        interval=0.1,
    )
    buffered = scrape.value("reconciler_activity_buffer_size")
    busy = scrape.value("reconciler_runs_in_progress") + scrape.value("reconciler_queue_depth")
    assert await view.scalar("SELECT COUNT(*) FROM message_activity") == 0, "flushed before the signal"

    signalled = time.monotonic()
    status = await bot.terminate(timeout=15)
    stop_seconds = time.monotonic() - signalled
    assert status == 0, bot.tail()

    assert await view.activity(guild_id) == posted
    assert await view.scalar("SELECT SUM(messages) FROM message_activity") == MESSAGES
    seen = await view.rows(
        "SELECT COUNT(*) AS n FROM members WHERE guild_id = :g AND last_seen_at IS NOT NULL", g=guild_id
    )
    assert seen[0]["n"] == AUTHORS
    unfinished = await view.scalar("SELECT COUNT(*) FROM sync_runs WHERE finished_at IS NULL")
    log = bot.log()
    assert "activity lost at shutdown" not in log
    observed["messages"] = MESSAGES
    observed["buffered_rows_at_signal"] = buffered
    observed["runs_busy_or_queued_at_signal"] = busy
    observed["stop_seconds"] = stop_seconds
    observed["messages_in_database"] = MESSAGES
    observed["runs_left_unfinished"] = unfinished
    observed.print()
    assert unfinished == 0, "a run was cut off by the shutdown"
