"""Missed events, reconnects and restarts: the database converges and nobody is wrongly marked left."""

from __future__ import annotations

import asyncio
import random

import pytest
from app_settings import app_settings
from waiting import eventually

from reconciler.app import running_app
from reconciler.sandbox import DiscordSandbox


@pytest.mark.asyncio
async def test_changes_missed_while_paused_are_repaired_after_a_fresh_session(
    sandbox: DiscordSandbox, app_factory, db_view_factory, database_url: str
) -> None:
    guild_id = sandbox.create_guild(members=2000, roles=10, seed=11)
    app = await app_factory(sandbox, url=database_url)
    view = db_view_factory(app.settings.database.url)
    before = await view.members(guild_id)
    role_ids = [r for r in sandbox.roles(guild_id) if r != guild_id]
    rng = random.Random(5)
    humans = sorted(uid for uid, m in sandbox.members(guild_id).items() if not m.bot)

    await sandbox.pause()
    renamed = rng.sample(humans, 20)
    for uid in renamed:
        sandbox.update_member_nowait(guild_id, uid, nick=f"missed-{uid % 1000}")
    regranted = rng.sample([u for u in humans if u not in renamed], 10)
    for uid in regranted:
        sandbox.update_member_nowait(guild_id, uid, roles=role_ids[:1])
    departed = rng.sample([u for u in humans if u not in renamed and u not in regranted], 10)
    for uid in departed:
        sandbox.remove_member_nowait(guild_id, uid)
    joined = [sandbox.add_member_nowait(guild_id, username=f"missed{i}") for i in range(10)]
    await sandbox.flush()
    await asyncio.sleep(0.3)
    assert await view.members(guild_id) == before, "the bot saw events it should have missed"

    await sandbox.resume()
    await sandbox.disconnect(resumable=False)

    truth = sandbox.members(guild_id)
    members = await eventually(
        lambda: view.members(guild_id),
        lambda m: {u for u, r in m.items() if r["status"] == "active"} == set(truth),
        within=30,
    )
    assert all(members[u]["status"] == "left" for u in departed)
    assert all(members[u]["nickname"] == truth[u].nick for u in renamed)
    assert set(joined) <= set(members)
    links = await view.links(guild_id)
    assert all({r for u, r in links if u == uid} == {role_ids[0]} for uid in regranted)
    touched = {*renamed, *regranted, *departed, *joined}
    untouched_changed = [u for u, row in before.items() if u not in touched and members[u] != row]
    assert untouched_changed == []


@pytest.mark.asyncio
@pytest.mark.parametrize("resumable", [True, False], ids=["resumable", "fresh-session"])
async def test_disconnect_during_chunking_marks_nobody_left(
    sandbox: DiscordSandbox, app_factory, db_view_factory, resumable: bool
) -> None:
    guild_id = sandbox.create_guild(members=20_000, roles=12, seed=12)
    sandbox.faults.chunk_delay_s = 0.02
    app = await app_factory(sandbox, wait=False)
    view = db_view_factory(app.settings.database.url)

    await eventually(
        lambda: asyncio.sleep(0, app.readiness.progress(guild_id)),
        lambda p: p is not None and p.chunks_received >= 5,
        within=20,
    )
    assert not app.readiness.is_ready(guild_id)
    await sandbox.disconnect(resumable=resumable)
    sandbox.faults.chunk_delay_s = 0.0

    assert await app.wait_ready(60)
    assert await app.wait_idle(60)
    active = await view.active_ids(guild_id)
    assert active == set(sandbox.members(guild_id))
    runs = await view.runs(guild_id)
    assert sum(r["left"] for r in runs) == 0
    assert await view.scalar("SELECT COUNT(*) FROM members WHERE status = 'left'") == 0


@pytest.mark.asyncio
async def test_restart_converges_on_changes_made_while_stopped(
    sandbox: DiscordSandbox, db_view_factory, tmp_path
) -> None:
    guild_id = sandbox.create_guild(members=1000, roles=8, seed=13)
    url = f"sqlite+aiosqlite:///{tmp_path / 'restart.db'}"
    settings = app_settings(sandbox, url)
    async with running_app(settings) as app:
        assert await app.wait_ready(30)
        assert await app.wait_idle(30)

    humans = sorted(uid for uid, m in sandbox.members(guild_id).items() if not m.bot)
    rng = random.Random(1)
    changed = rng.sample(humans, 100)
    for uid in changed[:60]:
        sandbox.update_member_nowait(guild_id, uid, nick=f"while-down-{uid % 997}")
    for uid in changed[60:90]:
        sandbox.remove_member_nowait(guild_id, uid)
    for index in range(10):
        sandbox.add_member_nowait(guild_id, username=f"late{index}")

    async with running_app(settings) as app:
        assert await app.wait_ready(30)
        assert await app.wait_idle(30)
        view = db_view_factory(url)
        members = await view.members(guild_id)
        truth = sandbox.members(guild_id)
        assert {u for u, r in members.items() if r["status"] == "active"} == set(truth)
        assert all(members[u]["nickname"] == truth[u].nick for u in changed[:60])
        assert all(members[u]["status"] == "left" for u in changed[60:90])
        runs = await view.runs(guild_id)
        assert runs[-1]["trigger"] == "startup"
        assert (runs[-1]["created"], runs[-1]["updated"], runs[-1]["left"]) == (10, 60, 30)


@pytest.mark.asyncio
async def test_burst_of_updates_is_merged_into_few_runs(
    sandbox: DiscordSandbox, app_factory, db_view_factory, database_url: str
) -> None:
    guild_id = sandbox.create_guild(members=10_000, roles=8, seed=14)
    app = await app_factory(sandbox, url=database_url)
    view = db_view_factory(app.settings.database.url)
    runs_before = len(await view.runs(guild_id))
    humans = sorted(uid for uid, m in sandbox.members(guild_id).items() if not m.bot)[:10_000]
    for uid in humans:
        sandbox.update_member_nowait(guild_id, uid, nick=f"burst-{uid % 10_007}")
    await sandbox.flush()

    truth = sandbox.members(guild_id)
    await eventually(
        lambda: view.members(guild_id),
        lambda m: all(m[u]["nickname"] == truth[u].nick for u in humans),
        within=60,
        interval=0.25,
    )
    assert await app.wait_idle(30)
    runs = (await view.runs(guild_id))[runs_before:]
    assert sum(r["updated"] for r in runs) == len(humans)
    assert len(runs) < 200, f"{len(runs)} runs for {len(humans)} updates"


@pytest.mark.asyncio
async def test_last_success_is_known_again_right_after_a_restart(sandbox: DiscordSandbox, tmp_path) -> None:
    sandbox.create_guild(members=50, seed=15)
    settings = app_settings(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'last.db'}")
    async with running_app(settings) as app:
        assert await app.wait_idle(30)
        assert await app.wait_ready(30)
        assert await app.wait_idle(30)
    guild = str(sandbox.guild_ids[0])
    # Started again, and stopped before its own start-up run could finish: the gauge comes from the database.
    sandbox.faults.chunk_delay_s = 5.0
    async with running_app(settings) as app:
        name, labels = "reconciler_last_successful_reconcile_timestamp_seconds", {"guild": guild}
        await eventually(
            lambda: asyncio.sleep(0, app.metrics.registry.get_sample_value(name, labels)),
            lambda value: value is not None and value > 0,
            within=10,
        )
        assert not app.readiness.is_ready(int(guild))
