"""The relist repairs what the cache itself missed, without touching readiness or undoing live changes."""

from __future__ import annotations

import asyncio
import contextlib
import random
import typing

import pytest
from waiting import eventually

from reconciler.sandbox import DiscordSandbox
from reconciler.scheduling import GuildOutcome, JobOutcome

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from reconciler.app import App

SCHEDULED = {"enabled": True}


@contextlib.asynccontextmanager
async def _readiness_watch(app: App, guild_id: int) -> AsyncIterator[list[float]]:
    """Polls the readiness gate every few ms; yields the moments it was found closed."""
    closed: list[float] = []

    async def poll() -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not app.readiness.is_ready(guild_id):
                closed.append(loop.time())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(poll())
    try:
        yield closed
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.asyncio
async def test_changes_lost_while_the_gateway_was_paused_are_repaired_by_the_relist(
    sandbox: DiscordSandbox, app_factory, db_view_factory
) -> None:
    guild_id = sandbox.create_guild(members=2500, roles=10, seed=31)
    sandbox.faults.member_request_window_s = 1.0
    app = await app_factory(sandbox, schedule=SCHEDULED)
    assert app.scheduler is not None
    view = db_view_factory(app.settings.database.url)
    before = await view.members(guild_id)
    role_ids = [r for r in sandbox.roles(guild_id) if r != guild_id]
    rng = random.Random(7)
    humans = sorted(uid for uid, m in sandbox.members(guild_id).items() if not m.bot)

    await sandbox.pause()
    renamed = rng.sample(humans, 15)
    for uid in renamed:
        sandbox.update_member_nowait(guild_id, uid, nick=f"lost-{uid % 1000}")
    regranted = rng.sample([u for u in humans if u not in renamed], 10)
    for uid in regranted:
        sandbox.update_member_nowait(guild_id, uid, roles=role_ids[:1])
    departed = rng.sample([u for u in humans if u not in renamed and u not in regranted], 12)
    for uid in departed:
        sandbox.remove_member_nowait(guild_id, uid)
    joined = [sandbox.add_member_nowait(guild_id, username=f"lost{i}") for i in range(8)]
    await sandbox.flush()
    await sandbox.resume()
    await asyncio.sleep(0.2)
    assert await view.members(guild_id) == before, "the bot saw events it should have missed"
    sessions = sandbox.stats.identifies + sandbox.stats.resumes

    async with _readiness_watch(app, guild_id) as closed:
        report = await app.scheduler.run_now("relist")
    assert report.outcome is JobOutcome.SUCCESS, report
    run = report.guild(guild_id)
    assert run is not None
    assert run.outcome is GuildOutcome.DONE
    assert "12 missed departures" in run.detail
    assert closed == [], "the relist closed the readiness gate"
    assert sandbox.stats.identifies + sandbox.stats.resumes == sessions, "repaired by a new session, not the relist"

    truth = sandbox.members(guild_id)
    members = await view.members(guild_id)
    assert {u for u, row in members.items() if row["status"] == "active"} == set(truth)
    assert all(members[u]["status"] == "left" for u in departed)
    assert all(members[u]["nickname"] == truth[u].nick for u in renamed)
    assert set(joined) <= set(members)
    links = await view.links(guild_id)
    assert all({r for u, r in links if u == uid} == {role_ids[0]} for uid in regranted)
    untouched = {*renamed, *regranted, *departed, *joined}
    assert [u for u, row in before.items() if u not in untouched and members[u] != row] == []
    relists = [r for r in await view.runs(guild_id) if r["kind"] == "relist"]
    assert [(r["trigger"], r["outcome"], r["left"], r["created"]) for r in relists] == [("schedule", "success", 12, 8)]


@pytest.mark.asyncio
async def test_a_relist_waits_out_rate_limits_and_keeps_live_changes_made_meanwhile(
    sandbox: DiscordSandbox, app_factory, db_view_factory
) -> None:
    guild_id = sandbox.create_guild(members=3000, roles=6, seed=32)
    sandbox.faults.member_request_window_s = 1.5
    app = await app_factory(sandbox, schedule=SCHEDULED)
    assert app.scheduler is not None
    view = db_view_factory(app.settings.database.url)
    assert (await app.scheduler.run_now("relist")).outcome is JobOutcome.SUCCESS

    # Asked again at once: Discord answers RATE_LIMITED; the relist waits and asks again, slowly served.
    limited = sandbox.stats.rate_limited_member_requests
    chunks = sandbox.stats.chunks_sent
    sandbox.faults.chunk_delay_s = 0.2
    leaver = next(uid for uid, m in sandbox.members(guild_id).items() if not m.bot and not m.role_ids)
    async with _readiness_watch(app, guild_id) as closed:
        relist = asyncio.create_task(app.scheduler.run_now("relist"))
        await eventually(lambda: asyncio.sleep(0, sandbox.stats.chunks_sent), lambda n: n > chunks, within=10)
        # Discord's list was taken before these: the relist must not undo them.
        newcomer = await sandbox.add_member(guild_id, username="joined.mid.relist")
        await sandbox.remove_member(guild_id, leaver)
        report = await relist
    assert report.outcome is JobOutcome.SUCCESS, report
    assert sandbox.stats.rate_limited_member_requests > limited
    assert closed == []

    members = await eventually(
        lambda: view.members(guild_id),
        lambda m: newcomer in m and m[leaver]["status"] == "left",
        within=5,
    )
    assert members[newcomer]["status"] == "active"
    assert app.bot.cache.get_member(guild_id, newcomer) is not None
    assert app.bot.cache.get_member(guild_id, leaver) is None
    assert {u for u, row in members.items() if row["status"] == "active"} == set(sandbox.members(guild_id))


@pytest.mark.asyncio
async def test_member_requests_are_paced_one_a_second_per_shard(sandbox: DiscordSandbox, app_factory) -> None:
    guilds = [sandbox.create_guild(members=40, roles=2, seed=33 + i) for i in range(3)]
    sandbox.faults.member_request_window_s = 0.0
    app = await app_factory(sandbox, schedule=SCHEDULED)
    assert app.scheduler is not None
    requests = sandbox.stats.full_member_requests
    loop = asyncio.get_running_loop()
    started = loop.time()
    report = await app.scheduler.run_now("relist")
    elapsed = loop.time() - started
    assert report.outcome is JobOutcome.SUCCESS, report
    assert {run.guild_id for run in report.guilds if run.outcome is GuildOutcome.DONE} == set(guilds)
    assert sandbox.stats.full_member_requests == requests + 3
    # Three requests on one shard: at least a second between consecutive sends (Discord allows 120/min
    # for everything the shard sends, heartbeats included).
    assert elapsed >= 2.0


@pytest.mark.asyncio
async def test_role_events_lost_on_the_way_are_repaired_by_the_relist(
    sandbox: DiscordSandbox, app_factory, db_view_factory
) -> None:
    guild_id = sandbox.create_guild(members=300, roles=8, seed=33)
    sandbox.faults.member_request_window_s = 1.0
    app = await app_factory(sandbox, schedule=SCHEDULED)
    assert app.scheduler is not None
    view = db_view_factory(app.settings.database.url)
    role_ids = [r for r in sandbox.roles(guild_id) if r != guild_id]
    holder = next(uid for uid, m in sandbox.members(guild_id).items() if role_ids[1] in m.role_ids)

    await sandbox.pause()
    created = sandbox.create_role_nowait(guild_id, name="Lost Role", color=0x123456)
    sandbox.update_role_nowait(guild_id, role_ids[0], name="Renamed While Away")
    sandbox.delete_role_nowait(guild_id, role_ids[1])
    await sandbox.flush()
    await sandbox.resume()
    await asyncio.sleep(0.2)
    assert created not in await view.roles(guild_id), "the bot saw a role event it should have missed"

    report = await app.scheduler.run_now("relist")
    assert report.outcome is JobOutcome.SUCCESS, report
    await app.wait_idle(10)
    roles = await view.roles(guild_id)
    assert roles[created]["name"] == "Lost Role"
    assert roles[created]["deleted_at"] is None
    assert roles[role_ids[0]]["name"] == "Renamed While Away"
    assert roles[role_ids[1]]["deleted_at"] is not None
    assert (holder, role_ids[1]) not in await view.links(guild_id)
