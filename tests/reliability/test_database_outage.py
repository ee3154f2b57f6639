"""PostgreSQL unreachable for 20 s while Discord keeps talking: the bot stays up, says so, and catches up."""

from __future__ import annotations

import asyncio
import random
import re
import time
import typing

import pytest
from pg_schemas import HOST, PORT
from reliability_support import BotFactory, Observed, UrlFactory, ViewFactory, eventually

from reconciler.harness import TcpProxy, bot_environment
from reconciler.sandbox import DiscordSandbox

OUTAGE_SECONDS: typing.Final = 20.0
DRIFT_CHECK_SECONDS: typing.Final = 10.0
_RETRY: typing.Final = re.compile(r'event="reconcile retry scheduled".* delay_s=([0-9.]+)')


@pytest.mark.asyncio
@pytest.mark.slow
@pytest.mark.postgres
async def test_database_outage_of_20s_is_reported_retried_and_repaired(
    sandbox: DiscordSandbox, url_factory: UrlFactory, db_view_factory: ViewFactory, bot_factory: BotFactory
) -> None:
    observed = Observed("PostgreSQL unreachable for 20 s")
    guild_id = sandbox.create_guild(members=2000, roles=8, seed=9201)
    url = await url_factory("postgresql")
    view = db_view_factory(url)
    proxy = TcpProxy(HOST, PORT)
    async with proxy:
        bot = await bot_factory(
            bot_environment(
                sandbox,
                url.replace(f"{HOST}:{PORT}", f"127.0.0.1:{proxy.port}"),
                SYNC__ACTIVITY_FLUSH_SECONDS="1",
                SCHEDULE__ENABLED="true",
                SCHEDULE__DRIFT_CHECK_SECONDS=str(DRIFT_CHECK_SECONDS),
                SCHEDULE__DRIFT_CHECK_JITTER_SECONDS="0",
                SCHEDULE__RELIST_CRON="0 0 1 1 *",
                SCHEDULE__CLEANUP_CRON="0 0 1 1 *",
            )
        )
        await eventually(bot.readyz, lambda r: r[0] == 200, within=60, interval=0.2)
        await eventually(lambda: view.active_ids(guild_id), lambda ids: len(ids) == 2000, within=30, interval=0.2)
        before = await bot.scrape()
        assert before.value("reconciler_database_up") == 1

        rng = random.Random(7)
        people = [u for u, m in sandbox.members(guild_id).items() if not m.bot and u != sandbox.owner_id(guild_id)]
        rng.shuffle(people)
        talkers, movers = people[:10], iter(people[10:])
        channel = next(iter(sandbox.channels(guild_id)))
        posted: dict[int, int] = {}
        renamed: list[int] = []
        departed: list[int] = []
        joined: list[int] = []
        first_seen: dict[str, float] = {}

        await proxy.cut()
        cut_at = time.monotonic()
        tick = 0
        while time.monotonic() - cut_at < OUTAGE_SECONDS:
            tick += 1
            uid = next(movers)
            sandbox.update_member_nowait(guild_id, uid, nick=f"outage-{tick}")
            renamed.append(uid)
            gone = next(movers)
            sandbox.remove_member_nowait(guild_id, gone)
            departed.append(gone)
            joined.append(sandbox.add_member_nowait(guild_id, username=f"joined-in-outage-{tick}"))
            for author in talkers[: 1 + tick % len(talkers)]:
                sandbox.post_message_nowait(channel, author, "still here")
                posted[author] = posted.get(author, 0) + 1
            await sandbox.flush()

            assert bot.alive, f"the bot died during the outage:\n{bot.tail()}"
            status, body = await bot.readyz()
            elapsed = time.monotonic() - cut_at
            if status == 503 and not body["checks"]["database"]["ok"]:
                first_seen.setdefault("readyz_503_after_s", elapsed)
                first_seen.setdefault("readyz_reason", body["checks"]["database"]["reason"])
            scrape = await bot.scrape()
            if scrape.value("reconciler_database_up") == 0:
                first_seen.setdefault("database_up_0_after_s", elapsed)
            if scrape.value("reconciler_errors_total", stage="store") > before.value(
                "reconciler_errors_total", stage="store"
            ):
                first_seen.setdefault("store_errors_rise_after_s", elapsed)
            await _sleep_until(cut_at + tick)

        during = await bot.scrape()
        await proxy.restore()
        restored_at = time.monotonic()

        truth = sandbox.members(guild_id)

        async def replica() -> tuple[set[int], dict[int, typing.Any], dict[int, int]]:
            return await view.active_ids(guild_id), await view.members(guild_id), await view.activity(guild_id)

        def converged(state: tuple[set[int], dict[int, typing.Any], dict[int, int]]) -> bool:
            active, rows, activity = state
            return (
                active == set(truth)
                and all(rows[u]["nickname"] == truth[u].nick for u in renamed)
                and all(rows[u]["status"] == "left" for u in departed)
                and all(activity.get(u, 0) == n for u, n in posted.items())
            )

        await eventually(replica, converged, within=DRIFT_CHECK_SECONDS + 20, interval=0.25)
        converged_after = time.monotonic() - restored_at
        status, body = await eventually(bot.readyz, lambda r: r[0] == 200, within=15, interval=0.25)
        after = await bot.scrape()
        assert after.value("reconciler_database_up") == 1
        assert bot.alive
        runs = [r for r in await view.runs(guild_id) if r["kind"] != "drift_check"]
        assert await bot.terminate() == 0, bot.tail()

    log = bot.log()
    # A real process with tracebacks of database errors in its log: still no token anywhere.
    for text in (log, during.text, after.text):
        assert sandbox.token not in text
        assert sandbox.token.rsplit(".", 1)[-1] not in text
    delays = [float(d) for d in _RETRY.findall(log)]
    observed.figures.update(first_seen)
    observed["events_during_outage"] = {"renamed": len(renamed), "left": len(departed), "joined": len(joined)}
    observed["messages_during_outage"] = sum(posted.values())
    observed["connections_cut"] = proxy.connections_cut
    observed["store_errors_during"] = during.value("reconciler_errors_total", stage="store") - before.value(
        "reconciler_errors_total", stage="store"
    )
    observed["activity_errors_during"] = during.value("reconciler_errors_total", stage="activity")
    observed["scheduler_errors_during"] = during.value("reconciler_errors_total", stage="scheduler")
    observed["retry_delays_s"] = delays
    observed["converged_after_restore_s"] = converged_after
    observed["left_marked"] = sum(r["left"] or 0 for r in runs)
    observed["repaired_by"] = [(r["trigger"], r["kind"], r["outcome"]) for r in runs][-1]
    observed.print()

    assert "readyz_503_after_s" in first_seen, "/readyz never said the database was down"
    assert "database_up_0_after_s" in first_seen, "reconciler_database_up never dropped to 0"
    assert "store_errors_rise_after_s" in first_seen, 'reconciler_errors_total{stage="store"} never rose'
    assert delays, "no retry was scheduled"
    assert max(delays) >= 4 * min(delays), f"no back-off: {delays}"
    assert converged_after <= DRIFT_CHECK_SECONDS + 3, f"converged {converged_after:.1f} s after the database returned"
    assert sum(r["left"] or 0 for r in runs) == len(departed), "someone was marked left who did not leave"


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
