"""Two bot processes on one PostgreSQL (a rolling restart): each scheduled slot is worked exactly once."""

from __future__ import annotations

import asyncio
import collections
import contextlib

import pytest
from app_settings import app_settings
from pg_schemas import postgres_schema_url

from reconciler.app import running_app
from reconciler.sandbox import DiscordSandbox
from reconciler.scheduling import JobOutcome

FAST_DRIFT = {"enabled": True, "drift_check_seconds": 0.5, "drift_check_jitter_seconds": 0.0}


@pytest.mark.asyncio
@pytest.mark.postgres
async def test_overlapping_processes_run_each_slot_once_and_only_for_their_shards(
    sandbox: DiscordSandbox, db_view_factory
) -> None:
    guild_0 = sandbox.create_guild(members=150, roles=4, seed=51, shard=(0, 2))
    guild_1 = sandbox.create_guild(members=150, roles=4, seed=52, shard=(1, 2))
    async with postgres_schema_url() as url, contextlib.AsyncExitStack() as stack:
        # The old process still runs both shards; the new one has taken shard 1 over already.
        old = await stack.enter_async_context(
            running_app(
                app_settings(sandbox, url, schedule=FAST_DRIFT, discord={"shard_ids": [0, 1], "shard_count": 2})
            )
        )
        new = await stack.enter_async_context(
            running_app(app_settings(sandbox, url, schedule=FAST_DRIFT, discord={"shard_ids": [1], "shard_count": 2}))
        )
        assert old.scheduler is not None
        assert new.scheduler is not None
        assert await old.wait_ready(30)
        assert await new.wait_ready(30)
        assert sorted(old.guild_ids()) == sorted([guild_0, guild_1])
        assert new.guild_ids() == [guild_1]
        await asyncio.sleep(3.0)
        # Stopped before counting, so no slot is claimed without its run written yet.
        await old.scheduler.stop()
        await new.scheduler.stop()

        view = db_view_factory(url)
        slots = await view.rows("SELECT slot, claimed_by FROM scheduler_slots WHERE job = 'drift_check'")
        runs = [r for r in await view.runs() if r["kind"] == "drift_check"]
        owners = collections.defaultdict(set)
        for row in slots:
            owners[int(row["slot"].split("/")[1])].add(row["claimed_by"])
        claims = collections.Counter(int(row["slot"].split("/")[1]) for row in slots)
        fires = {row["slot"].split("/")[0] for row in slots}
        assert len(fires) >= 4

        # Shard 0's guild is only ever the old process's; shard 1's is claimed by whichever came first.
        assert owners[guild_0] == {old.scheduler.owner}
        assert owners[guild_1] <= {old.scheduler.owner, new.scheduler.owner}
        # One drift check (one sync_runs row) per claimed slot, never two for one slot.
        assert collections.Counter(r["guild_id"] for r in runs) == claims
        assert all(r["trigger"] == "schedule" and r["outcome"] == "success" for r in runs)
        # Both processes fired every slot of shard 1: the one that lost it recorded `claimed_elsewhere`.
        fired_new = sum(
            new.metrics.registry.get_sample_value(
                "reconciler_scheduler_job_runs_total", {"job_name": "drift_check", "outcome": outcome.value}
            )
            or 0
            for outcome in (JobOutcome.SUCCESS, JobOutcome.CLAIMED_ELSEWHERE)
        )
        assert fired_new >= claims[guild_1] - 1
        assert claims[guild_1] >= 4
