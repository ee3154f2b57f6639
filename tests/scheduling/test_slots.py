"""Each fire of a job does each guild's work once, however many processes fire it; overruns count as missed."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import typing

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from database_view import DatabaseView
from waiting import eventually

from reconciler.scheduling import GuildOutcome, JobFailedError, JobOutcome, JobSpec

if typing.TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from conftest import SchedulerFactory

    from reconciler.observability.metrics import Metrics

ORIGIN = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


def _every(seconds: float) -> IntervalTrigger:
    return IntervalTrigger(seconds=seconds, start_date=ORIGIN, timezone=datetime.UTC)  # pyright: ignore[reportArgumentType]


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _runs(metrics: Metrics, job: str) -> dict[str, float]:
    return {
        outcome.value: _sample(metrics, "reconciler_scheduler_job_runs_total", job_name=job, outcome=outcome.value)
        for outcome in JobOutcome
    }


@pytest.mark.asyncio
async def test_two_processes_firing_the_same_slots_do_each_guild_once(
    scheduler_factory: SchedulerFactory, database_url: str
) -> None:
    guilds = [101, 202, 303]
    calls: list[tuple[str, str, int]] = []
    every_second = CronTrigger(second="*", timezone=datetime.UTC)

    def jobs(process: str) -> list[JobSpec]:
        def work(job: str) -> Callable[[int], Awaitable[str]]:
            async def run(guild_id: int) -> str:
                calls.append((process, job, guild_id))
                await asyncio.sleep(0.05)  # long enough for the other process to try the same slot meanwhile
                return "ok"

            return run

        return [
            JobSpec(name="drift_check", trigger=_every(0.5), work=work("drift_check"), concurrency=3),
            JobSpec(name="cleanup", trigger=every_second, work=work("cleanup"), concurrency=3),
        ]

    # Process A does not have guild 303 ready: it must not claim it, so B does it every time.
    scheduler_a, metrics_a = await scheduler_factory(jobs("a"), guilds=guilds, ready=lambda g: g != 303)
    scheduler_b, metrics_b = await scheduler_factory(jobs("b"), guilds=guilds)
    both_running = datetime.datetime.now(datetime.UTC)

    async def fired_by_b() -> tuple[float, float]:
        return sum(_runs(metrics_b, "drift_check").values()), sum(_runs(metrics_b, "cleanup").values())

    # Fires B finished after both started: with 5 and 3, some before the newest are whole for each job.
    await eventually(fired_by_b, lambda fired: fired[0] >= 5 and fired[1] >= 3, within=30)
    await scheduler_a.stop()
    await scheduler_b.stop()

    view = DatabaseView(database_url)
    try:
        slots = await view.rows("SELECT job, slot, claimed_by FROM scheduler_slots ORDER BY job, slot")
    finally:
        await view.close()
    assert {row["claimed_by"] for row in slots} <= {scheduler_a.owner, scheduler_b.owner}
    for job, least in (("drift_check", 4), ("cleanup", 2)):
        rows = [row for row in slots if row["job"] == job]
        by_fire: dict[str, list[int]] = collections.defaultdict(list)
        for row in rows:
            fire, guild = row["slot"].split("/")
            by_fire[fire].append(int(guild))
        # The stop may cut the newest fire short (a guild not claimed yet), and only A may have fired
        # those before B started (303 is then nobody's): every fire in between is whole.
        *earlier, newest = sorted(by_fire)
        assert len(by_fire) >= least, job
        whole = [fire for fire in earlier if datetime.datetime.fromisoformat(fire) >= both_running]
        assert whole, f"{job}: no fire after both processes started: {sorted(by_fire)}"
        for fire in whole:
            assert sorted(by_fire[fire]) == guilds, f"{job} {fire}: every fire claims every ready guild once"
        assert len(by_fire[newest]) == len(set(by_fire[newest])), f"{job}: a guild claimed twice in one fire"
        claimed = collections.Counter(int(row["slot"].split("/")[1]) for row in rows)
        fires = set(by_fire)
        # The work ran once per claimed slot, not once per process.
        assert collections.Counter(guild for _, name, guild in calls if name == job) == claimed, job
        assert {process for process, name, guild in calls if name == job and guild == 303} == {"b"}
        # Both processes fired every slot; losing a slot is not a missed run.
        for metrics in (metrics_a, metrics_b):
            assert sum(_runs(metrics, job).values()) >= len(fires) - 1
            assert _sample(metrics, "reconciler_scheduler_job_missed_total", job_name=job) == 0
            assert _sample(metrics, "reconciler_scheduler_job_last_run_timestamp_seconds", job_name=job) > 0
            assert _sample(metrics, "reconciler_scheduler_job_duration_seconds_count", job_name=job) >= 1
    # Cron slots are named after the whole second they were scheduled for.
    assert all(row["slot"].split("/")[0].endswith(".000Z") for row in slots if row["job"] == "cleanup")


@pytest.mark.asyncio
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_run_that_overruns_its_interval_is_missed_not_doubled(scheduler_factory: SchedulerFactory) -> None:
    running = 0
    most = 0

    async def slow(_: int) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(1.2)
        running -= 1
        return "slow"

    _, metrics = await scheduler_factory([JobSpec(name="relist", trigger=_every(0.3), work=slow)], guilds=[1])
    await asyncio.sleep(2.0)
    assert most == 1
    assert _sample(metrics, "reconciler_scheduler_job_missed_total", job_name="relist") >= 2
    assert _runs(metrics, "relist")["success"] >= 1


@pytest.mark.asyncio
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_run_now_works_every_guild_without_claiming_and_stop_lets_it_finish(
    scheduler_factory: SchedulerFactory, database_url: str
) -> None:
    finished: list[int] = []

    async def work(guild_id: int) -> str:
        if guild_id == 3:
            raise JobFailedError("database said no")
        await asyncio.sleep(0.3)
        finished.append(guild_id)
        return f"cleaned {guild_id}"

    daily = _every(86_400)
    scheduler, metrics = await scheduler_factory(
        [JobSpec(name="cleanup", trigger=daily, work=work, concurrency=4)], guilds=[1, 2, 3], start=True
    )
    with pytest.raises(ValueError, match="unknown job"):
        await scheduler.run_now("vacuum")

    report = await scheduler.run_now("cleanup")
    assert report.outcome is JobOutcome.FAILED
    assert {run.guild_id: run.outcome for run in report.guilds} == {
        1: GuildOutcome.DONE,
        2: GuildOutcome.DONE,
        3: GuildOutcome.FAILED,
    }
    assert report.guild(1) is not None
    assert report.guild(1).detail == "cleaned 1"
    assert _sample(metrics, "reconciler_errors_total", stage="scheduler") == 1
    assert _runs(metrics, "cleanup")["failed"] == 1

    # Stopping while a run is in flight lets it finish its guilds, then nothing fires any more.
    finished.clear()
    in_flight = asyncio.create_task(scheduler.run_now("cleanup", [1, 2]))
    await asyncio.sleep(0.05)
    await scheduler.stop(timeout=5)
    assert in_flight.done()
    assert (await in_flight).outcome is JobOutcome.SUCCESS
    assert sorted(finished) == [1, 2]
    assert not scheduler.running
    assert scheduler.next_run_time("cleanup") is None

    view = DatabaseView(database_url)
    try:
        assert await view.rows("SELECT * FROM scheduler_slots") == []
    finally:
        await view.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_jitter_delays_fires_but_slots_keep_their_scheduled_names(
    scheduler_factory: SchedulerFactory, database_url: str
) -> None:
    fired: list[datetime.datetime] = []
    twice = asyncio.Event()

    async def work(_: int) -> str:
        fired.append(datetime.datetime.now(datetime.UTC))
        if len(fired) >= 2:
            twice.set()
        return "ok"

    trigger = _every(1.0)
    scheduler, _ = await scheduler_factory(
        [JobSpec(name="drift_check", trigger=trigger, work=work, jitter=0.8)], guilds=[5]
    )
    upcoming = scheduler.next_run_time("drift_check")
    assert upcoming is not None
    assert 0 <= upcoming.timestamp() % 1.0 <= 0.8
    assert trigger.jitter is None, "the caller's trigger was changed"
    # At least two fires (about 3 s), however slow the machine: a fixed sleep once saw only one.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(twice.wait(), timeout=15)
    await scheduler.stop()

    view = DatabaseView(database_url)
    try:
        slots = sorted(row["slot"] for row in await view.rows("SELECT slot FROM scheduler_slots"))
    finally:
        await view.close()
    assert len(slots) == len(fired) >= 2
    # Each fire claimed the whole second it was scheduled for, not the jittered moment it ran.
    assert all(slot.split("/")[0].endswith(".000Z") for slot in slots)
    assert len(set(slots)) == len(slots)
    assert any(moment.microsecond >= 20_000 for moment in fired), "no fire was jittered"
