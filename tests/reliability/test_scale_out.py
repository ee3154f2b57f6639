"""Several `reconciler run` processes, one PostgreSQL: each guild reconciled by its shard's process, never twice."""

from __future__ import annotations

import asyncio
import re
import time
import typing

import pytest
from reliability_support import BotFactory, Observed, UrlFactory, ViewFactory, eventually, listening_addresses

from reconciler.harness import BotProcess, bot_environment
from reconciler.sandbox import DiscordSandbox
from reconciler.sandbox.ids import shard_of
from reconciler.store import SqlStore

if typing.TYPE_CHECKING:
    from database_view import DatabaseView

MEMBERS: typing.Final = 3000
DRIFT_CHECK_SECONDS: typing.Final = 3.0
_SCHEDULE: typing.Final = {
    "SCHEDULE__ENABLED": "true",
    "SCHEDULE__DRIFT_CHECK_SECONDS": str(DRIFT_CHECK_SECONDS),
    "SCHEDULE__DRIFT_CHECK_JITTER_SECONDS": "0",
    "SCHEDULE__RELIST_CRON": "0 0 1 1 *",
    "SCHEDULE__CLEANUP_CRON": "0 0 1 1 *",
}
_OWNER_PID: typing.Final = re.compile(r":(\d+):[0-9a-f]+$")


async def _all_converged(view: DatabaseView, sandbox: DiscordSandbox) -> bool:
    for guild_id in sandbox.guild_ids:
        if await view.active_ids(guild_id) != set(sandbox.members(guild_id)):
            return False
    return True


@pytest.mark.asyncio
@pytest.mark.slow
@pytest.mark.postgres
async def test_two_shard_processes_share_one_database_without_doing_a_run_twice(
    sandbox: DiscordSandbox, url_factory: UrlFactory, db_view_factory: ViewFactory, bot_factory: BotFactory
) -> None:
    observed = Observed("two processes, shards 0 and 1 of 2, four guilds")
    guilds = {
        sandbox.create_guild(members=MEMBERS, roles=6, seed=9601 + index, shard=(index % 2, 2)): index % 2
        for index in range(4)
    }
    assert sorted(guilds.values()) == [0, 0, 1, 1]
    assert all(shard_of(g, 2) == s for g, s in guilds.items())
    url = await url_factory("postgresql")
    view = db_view_factory(url)
    bots: dict[int, BotProcess] = {}
    for shard in (0, 1):
        env = bot_environment(sandbox, url, DISCORD__SHARD_IDS=f"[{shard}]", DISCORD__SHARD_COUNT="2", **_SCHEDULE)
        bots[shard] = await bot_factory(env, name=f"shard{shard}")
    started = time.monotonic()
    for bot in bots.values():
        await eventually(bot.readyz, lambda r: r[0] == 200, within=60, interval=0.2)

    await eventually(lambda: _all_converged(view, sandbox), bool, within=60, interval=0.2)
    observed["all_four_converged_s"] = time.monotonic() - started
    # A live change in each guild goes through its own shard's process only.
    joiners = {g: await sandbox.add_member(g, username=f"late-{g % 1000}") for g in guilds}
    await eventually(lambda: _all_converged(view, sandbox), bool, within=20, interval=0.1)

    slots_query = "SELECT slot, claimed_by FROM scheduler_slots WHERE job = 'drift_check'"

    async def fires_per_guild() -> dict[int, int]:
        counts = dict.fromkeys(guilds, 0)
        for row in await view.rows(slots_query):
            counts[int(row["slot"].rsplit("/", 1)[1])] += 1
        return counts

    await eventually(fires_per_guild, lambda c: min(c.values()) >= 2, within=4 * DRIFT_CHECK_SECONDS + 10)
    scrapes = {shard: await bot.scrape() for shard, bot in bots.items()}
    for bot in bots.values():
        # Loopback only: the metrics server (and nothing else) listens, on the configured 127.0.0.1.
        assert {ip for ip, _ in listening_addresses(bot.pid)} == {"127.0.0.1"}
        assert await bot.terminate() == 0, bot.tail()

    pids = {bot.pid: shard for shard, bot in bots.items()}
    for guild_id, shard in guilds.items():
        runs = await view.runs(guild_id)
        startup = [r for r in runs if r["trigger"] == "startup"]
        assert len(startup) == 1, f"guild {guild_id}: {len(startup)} start-up runs"
        assert (startup[0]["outcome"], startup[0]["created"]) == ("success", MEMBERS)
        assert sum(r["created"] for r in runs if r["kind"] != "drift_check") == MEMBERS + 1, joiners[guild_id]
        assert all(r["outcome"] is not None for r in runs), "a run never finished"
        for other, scrape in scrapes.items():
            expected = 1 if other == shard else 0
            assert scrape.value("reconciler_sync_runs_total", guild=str(guild_id), trigger="startup") == expected
            if other != shard:
                assert str(guild_id) not in scrape.label_values("reconciler_sync_runs_total", "guild")
        slots = [r for r in await view.rows(slots_query) if r["slot"].endswith(f"/{guild_id}")]
        claimers = {pids[int(_OWNER_PID.search(r["claimed_by"]).group(1))] for r in slots}  # type: ignore[union-attr]
        assert claimers == {shard}, f"guild {guild_id} on shard {shard} was checked by shards {claimers}"
        drift_runs = [r for r in runs if r["kind"] == "drift_check"]
        assert len(drift_runs) == len(slots), "a drift-check slot ran twice (or not at all)"
    observed["drift_check_fires_per_guild"] = await fires_per_guild()
    observed["runs_per_process"] = {
        shard: scrape.value("reconciler_sync_runs_total") for shard, scrape in scrapes.items()
    }
    observed.print()


@pytest.mark.asyncio
@pytest.mark.postgres
async def test_a_run_waits_for_the_guild_advisory_lock_held_elsewhere(
    sandbox: DiscordSandbox, url_factory: UrlFactory, db_view_factory: ViewFactory, bot_factory: BotFactory
) -> None:
    observed = Observed("advisory lock held by another process")
    guild_id = sandbox.create_guild(members=2000, roles=6, seed=9611)
    url = await url_factory("postgresql")
    view = db_view_factory(url)
    other = await SqlStore.open(url)
    try:
        await other.upgrade()
        async with other.guild_lock(guild_id):
            held_at = time.monotonic()
            bot = await bot_factory(bot_environment(sandbox, url))
            await eventually(bot.readyz, lambda r: r[0] == 200, within=60, interval=0.2)
            waiting = await eventually(
                # pg_advisory_lock(bigint) shows its key as classid (high 32 bits) and objid (low 32 bits).
                lambda: view.scalar(
                    "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    " AND classid::bigint = :high AND objid::bigint = :low",
                    high=guild_id >> 32,
                    low=guild_id & 0xFFFFFFFF,
                ),
                lambda n: n >= 1,
                within=20,
            )
            await asyncio.sleep(2.0)
            assert await view.scalar("SELECT COUNT(*) FROM members WHERE guild_id = :g", g=guild_id) == 0
            runs = await view.runs(guild_id)
            assert [(r["trigger"], r["outcome"]) for r in runs] == [("startup", None)]
            released_at = time.monotonic()
        await eventually(
            lambda: view.active_ids(guild_id), lambda ids: ids == set(sandbox.members(guild_id)), within=30
        )
        converged_after = time.monotonic() - released_at
        # The run's row is finished just after its last batch commits: wait for it, not for the members.
        runs = await eventually(lambda: view.runs(guild_id), lambda rs: rs[-1]["outcome"] is not None, within=10)
        assert [(r["trigger"], r["outcome"], r["created"]) for r in runs] == [("startup", "success", 2000)]
        assert await bot.terminate() == 0, bot.tail()
    finally:
        await other.close()
    observed["waiters_seen"] = waiting
    observed["held_s"] = released_at - held_at
    observed["converged_after_release_s"] = converged_after
    observed.print()


@pytest.mark.asyncio
@pytest.mark.slow
@pytest.mark.postgres
async def test_two_processes_wrongly_holding_the_same_guild_write_it_once(
    sandbox: DiscordSandbox, url_factory: UrlFactory, db_view_factory: ViewFactory, bot_factory: BotFactory
) -> None:
    observed = Observed("two processes both running shard 0 of 1 (misconfigured)")
    guild_id = sandbox.create_guild(members=MEMBERS, roles=6, seed=9621)
    url = await url_factory("postgresql")
    view = db_view_factory(url)
    bots = [await bot_factory(bot_environment(sandbox, url), name=f"twin{index}") for index in range(2)]
    for bot in bots:
        await eventually(bot.readyz, lambda r: r[0] == 200, within=60, interval=0.2)
    runs = await eventually(
        lambda: view.runs(guild_id),
        lambda rs: len(rs) == 2 and all(r["outcome"] is not None for r in rs),
        within=60,
        interval=0.1,
    )
    for bot in bots:
        assert await bot.terminate() == 0, bot.tail()
    # Both runs started on an empty table; the lock made the second wait, so it found everything written.
    assert sorted((r["created"], r["unchanged"], r["errors"]) for r in runs) == [(0, MEMBERS, 0), (MEMBERS, 0, 0)]
    assert await view.active_ids(guild_id) == set(sandbox.members(guild_id))
    observed["runs"] = [(r["trigger"], r["outcome"], r["created"], r["unchanged"]) for r in runs]
    observed.print()
