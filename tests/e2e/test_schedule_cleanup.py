"""The scheduled cleanup marks exactly the members idle for `sync.inactive_days` inactive, on a frozen clock."""

from __future__ import annotations

import contextlib
import datetime
import typing

import pytest
import sqlalchemy as sa
from app_settings import app_settings
from waiting import eventually

from reconciler.app import running_app
from reconciler.domain import ActivityDelta
from reconciler.sandbox import DiscordSandbox
from reconciler.scheduling import JobOutcome
from reconciler.store import tables
from reconciler.store.connect import create_engine

if typing.TYPE_CHECKING:
    import pathlib

# Frozen a day ahead of the wall clock, so a message posted during the test is one day old.
FROZEN = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=1)
DAYS = 30


def _ago(**delta: float) -> datetime.datetime:
    return FROZEN - datetime.timedelta(**delta)


async def _set_first_seen(url: str, guild_id: int, user_id: int, when: datetime.datetime) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            m = tables.members
            await conn.execute(
                sa.update(m).where(m.c.guild_id == guild_id, m.c.user_id == user_id).values(first_seen_at=when)
            )
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_cleanup_marks_the_right_members_inactive(
    sandbox: DiscordSandbox, db_view_factory, tmp_path: pathlib.Path
) -> None:
    guild_id = sandbox.create_guild(members=60, roles=4, seed=41)
    settings = app_settings(
        sandbox,
        f"sqlite+aiosqlite:///{tmp_path / 'cleanup.db'}",
        schedule={"enabled": True},
        sync={"activity_flush_seconds": 0.2, "inactive_days": DAYS},
    )
    async with contextlib.AsyncExitStack() as stack:
        app = await stack.enter_async_context(running_app(settings, clock=lambda: FROZEN))
        assert await app.wait_ready(30)
        assert await app.wait_idle(30)
        assert app.scheduler is not None
        view = db_view_factory(settings.database.url)
        humans = sorted(uid for uid, m in sandbox.members(guild_id).items() if not m.bot)
        quiet, just_out, just_in, recent, never_seen_old, poster, leaver = humans[:7]

        # Activity as it would have been recorded over the past weeks.
        history = {quiet: _ago(days=45), just_out: _ago(days=DAYS, hours=1), just_in: _ago(days=DAYS - 1)}
        history[recent] = _ago(days=3)
        history[leaver] = _ago(days=90)
        await app.store.add_activity(
            [
                ActivityDelta(guild_id=guild_id, user_id=u, day=t.date(), messages=1, last_seen_at=t)
                for u, t in history.items()
            ]
        )
        # Known for two months and never heard from; everyone else was first seen "now" (the frozen clock).
        await _set_first_seen(settings.database.url, guild_id, never_seen_old, _ago(days=60))
        # A message posted now (a day before the frozen clock) counts too.
        channel = next(iter(sandbox.channels(guild_id)))
        await sandbox.post_message(channel, poster, "hello")
        await eventually(lambda: view.activity(guild_id), lambda counts: poster in counts, within=5)
        # Members who left stay 'left' whatever their activity.
        await sandbox.remove_member(guild_id, leaver)
        await eventually(lambda: view.members(guild_id), lambda m: m[leaver]["status"] == "left", within=5)

        report = await app.scheduler.run_now("cleanup")
        assert report.outcome is JobOutcome.SUCCESS, report

        members = await view.members(guild_id)
        statuses = {uid: row["status"] for uid, row in members.items()}
        assert {uid for uid, status in statuses.items() if status == "inactive"} == {quiet, just_out, never_seen_old}
        assert statuses[leaver] == "left"
        assert all(statuses[u] == "active" for u in (just_in, recent, poster))
        assert sum(1 for status in statuses.values() if status == "active") == len(members) - 4

        cleanups = [r for r in await view.runs(guild_id) if r["kind"] == "cleanup"]
        assert [(r["trigger"], r["outcome"], r["inactive"]) for r in cleanups] == [("schedule", "success", 3)]
        guild_run = report.guild(guild_id)
        assert guild_run is not None
        assert guild_run.detail.startswith("3 inactive")


class _MovableClock:
    def __init__(self) -> None:
        self.now = datetime.datetime.now(datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


def _latest_of_each_kind(runs: list[dict[str, typing.Any]]) -> set[int]:
    latest: dict[str, dict[str, typing.Any]] = {}
    for run in runs:
        when = (run["finished_at"] or run["started_at"], run["id"])
        kept = latest.get(run["kind"])
        if kept is None or when > (kept["finished_at"] or kept["started_at"], kept["id"]):
            latest[run["kind"]] = run
    return {run["id"] for run in latest.values()}


@pytest.mark.asyncio
async def test_nightly_cleanup_prunes_old_bookkeeping_keeps_the_latest_runs_and_every_member(
    sandbox: DiscordSandbox, db_view_factory, tmp_path: pathlib.Path
) -> None:
    guild_id = sandbox.create_guild(members=80, roles=3, seed=43)
    clock = _MovableClock()
    settings = app_settings(
        sandbox,
        f"sqlite+aiosqlite:///{tmp_path / 'retention.db'}",
        schedule={"enabled": True},
        # Ten minutes of runs and an hour of slots: fractions of a day, as an operator may write them.
        retention={"sync_runs_days": 10 / 1440, "scheduler_slots_days": 1 / 24},
    )
    async with contextlib.AsyncExitStack() as stack:
        app = await stack.enter_async_context(running_app(settings, clock=clock))
        assert await app.wait_ready(30)
        assert await app.wait_idle(30)
        assert app.scheduler is not None
        view = db_view_factory(settings.database.url)
        channel = next(iter(sandbox.channels(guild_id)))
        poster = next(uid for uid, m in sandbox.members(guild_id).items() if not m.bot)
        await sandbox.post_message(channel, poster, "hello")
        await eventually(lambda: view.activity(guild_id), lambda counts: poster in counts, within=5)
        joiner = await sandbox.add_member(guild_id, username="joiner")
        await eventually(lambda: view.members(guild_id), lambda m: joiner in m, within=5)
        first = await app.scheduler.run_now("cleanup")
        assert first.after == "0 sync_runs rows pruned, 0 scheduler_slots rows pruned"
        await app.store.claim_slot("drift_check", "an old fire", "another-host")
        clock.now += datetime.timedelta(minutes=30)
        await app.store.claim_slot("drift_check", "a recent fire", "another-host")
        await app.scheduler.run_now("drift_check")
        members_before = await view.members(guild_id)
        activity_before = await view.activity(guild_id)
        links_before = await view.links(guild_id)
        clock.now += datetime.timedelta(minutes=40)
        runs_before = await view.runs(guild_id)

        report = await app.scheduler.run_now("cleanup")

        assert report.outcome is JobOutcome.SUCCESS, report
        runs_after = await view.runs(guild_id)
        before_ids = {run["id"] for run in runs_before}
        this_run = [run for run in runs_after if run["id"] not in before_ids]
        expected = _latest_of_each_kind([*runs_before, *this_run])
        assert {run["id"] for run in runs_after} == expected, "only the latest run of each kind survives"
        pruned = len(before_ids - expected)
        assert pruned >= 2, runs_before
        assert report.after == f"{pruned} sync_runs rows pruned, 1 scheduler_slots row pruned"
        slots = await view.rows("SELECT slot FROM scheduler_slots")
        assert {row["slot"] for row in slots} == {"a recent fire"}
        scrape = app.metrics.registry.get_sample_value
        assert scrape("reconciler_retention_deleted_rows_total", {"table": "sync_runs"}) == pruned
        assert scrape("reconciler_retention_deleted_rows_total", {"table": "scheduler_slots"}) == 1
        assert await view.members(guild_id) == members_before
        assert await view.activity(guild_id) == activity_before
        assert await view.links(guild_id) == links_before
