"""`kill -9` in the middle of a burst of messages: after the restart, posted equals counted, per member and day."""

from __future__ import annotations

import asyncio
import random
import typing

import pytest
from activity_truth import counted_in_database, posted_in_sandbox
from reliability_support import BACKENDS, BotFactory, Observed, UrlFactory, ViewFactory, eventually, humans

from reconciler.harness import bot_environment

if typing.TYPE_CHECKING:
    from reconciler.harness import BotProcess
    from reconciler.sandbox import DiscordSandbox

BURST: typing.Final = 3_000
FIRST_PART: typing.Final = 1_500
AT_RISK: typing.Final = 500
# Before the kill: long enough that the kill lands between two flushes (it follows one we saw commit).
FLUSH_SECONDS: typing.Final = 3.0
# After the restart: short, so that three periods without a change are quick to wait out.
FLUSH_SECONDS_AFTER: typing.Final = 0.5


async def _activity_detail(bot: BotProcess) -> str:
    status, body = await bot.readyz()
    return str(body["checks"].get("activity", {}).get("detail", "")) if status == 200 else ""


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", BACKENDS)
async def test_kill_9_mid_burst_then_restart_counts_every_message_once(
    sandbox: DiscordSandbox,
    url_factory: UrlFactory,
    db_view_factory: ViewFactory,
    bot_factory: BotFactory,
    backend: str,
) -> None:
    observed = Observed(f"kill -9 mid message burst ({backend})")
    guild_id = sandbox.create_guild(members=300, channels=3, seed=9601)
    url = await url_factory(backend)
    view = db_view_factory(url)
    env = bot_environment(sandbox, url, SYNC__ACTIVITY_FLUSH_SECONDS=str(FLUSH_SECONDS))
    bot = await bot_factory(env, name="bot")
    await eventually(
        lambda: _activity_detail(bot), lambda d: d.startswith("activity complete"), within=60, interval=0.2
    )

    rng = random.Random(16)
    authors = rng.sample(humans(sandbox, guild_id), 40)
    channels = list(sandbox.channels(guild_id))
    thread = sandbox.create_thread(channels[0], "burst thread", authors[0])
    targets = [*channels, thread]

    async def post(first: int, last: int) -> None:
        for index in range(first, last):
            sandbox.post_message_nowait(rng.choice(targets), rng.choice(authors), f"m{index}")
            if index % 100 == 99:
                await sandbox.flush()
                await asyncio.sleep(0.1)  # 1,000 messages a second
        await sandbox.flush()

    await post(0, FIRST_PART)
    # The flush that commits the first part has just run; the next is FLUSH_SECONDS away, so the kill
    # below lands with the next AT_RISK messages received but only in memory.
    await eventually(
        lambda: counted_in_database(view, guild_id), lambda c: c.total == FIRST_PART, within=30, interval=0.05
    )
    await post(FIRST_PART, FIRST_PART + AT_RISK)
    scrape = await eventually(
        bot.scrape,
        lambda s: s.value("reconciler_gateway_events_total", type="message_create") >= FIRST_PART + AT_RISK,
        within=FLUSH_SECONDS / 2,
        interval=0.01,
    )
    status = await bot.kill()
    assert status == -9
    observed["received_before_kill"] = scrape.value("reconciler_gateway_events_total", type="message_create")
    counted_at_kill = await counted_in_database(view, guild_id)
    observed["counted_at_kill"] = counted_at_kill.total
    assert counted_at_kill.total == FIRST_PART, "a flush ran between receipt and the kill: nothing was at risk"
    # The rest of the burst is posted while the bot is down.
    await post(FIRST_PART + AT_RISK, BURST)

    # The same database and sandbox; only the flush period differs.
    bot = await bot_factory({**env, "SYNC__ACTIVITY_FLUSH_SECONDS": str(FLUSH_SECONDS_AFTER)}, name="bot-restarted")
    await eventually(
        lambda: _activity_detail(bot), lambda d: d.startswith("activity complete"), within=60, interval=0.2
    )
    truth = posted_in_sandbox(sandbox, guild_id)
    assert truth.total == BURST
    counted = await eventually(
        lambda: counted_in_database(view, guild_id), lambda c: c.total >= BURST, within=30, interval=0.2
    )
    # Nothing may change now. Three flush periods (1.5 s) is enough: the buffer writes what it holds
    # every period, so a message counted twice would be in the database within one.
    await asyncio.sleep(3 * FLUSH_SECONDS_AFTER)
    assert await counted_in_database(view, guild_id) == counted
    assert counted.by_member_day == truth.by_member_day
    assert counted.by_channel == truth.by_channel
    scrape = await bot.scrape()
    observed["backfilled_after_restart"] = scrape.value("reconciler_backfill_messages_total")
    observed["counted_after_restart"] = counted.total
    observed.print()
    # Everything not committed before the kill came from the history, the rest was not fetched again.
    assert scrape.value("reconciler_backfill_messages_total") == BURST - counted_at_kill.total
