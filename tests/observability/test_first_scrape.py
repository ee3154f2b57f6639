"""Dashboards full from minute one: right after the start-up run, before any scheduled job, every query has data.

The whole app against the sandbox with the scheduler on at its default intervals (no job fires during the
test), no traffic and no command: only the start-up run has happened. A real Prometheus scrapes it; every
dashboard panel query must return data and every series an alert rule reads must exist, so neither the
dashboard nor the alerts wait 15 minutes for the first drift check.
"""

from __future__ import annotations

import typing

import pytest
import pytest_asyncio

from reconciler.app import running_app
from reconciler.config import settings_from
from reconciler.observability.metrics import SCHEDULER_JOBS
from reconciler.sandbox import DiscordSandbox
from reconciler.scheduling import JobOutcome

from . import assets, promql
from .prometheus_harness import Prometheus, require_binary, run_prometheus

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    return require_binary("prometheus")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def just_started(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Prometheus]:
    """Prometheus scraping an app that has done its start-up run and nothing else."""
    folder = tmp_path_factory.mktemp("first-scrape")
    async with DiscordSandbox() as sandbox:
        sandbox.create_guild(members=300, roles=6, seed=77)
        settings = settings_from(
            {
                "discord": {"token": sandbox.token, "rest_url": sandbox.rest_url},
                "database": {"url": f"sqlite+aiosqlite:///{folder / 'bot.db'}"},
                "observability": {"metrics_address": "127.0.0.1:0"},
            }
        )
        async with running_app(settings) as app:
            assert await app.wait_ready(30)
            assert await app.wait_idle(30)
            assert app.metrics_server is not None
            async with run_prometheus(
                prometheus_binary, folder, app.metrics_server.address, rule_files=[assets.ALERTS]
            ) as prometheus:
                yield prometheus


async def _value(prometheus: Prometheus, expr: str) -> float:
    result = await prometheus.query(expr)
    assert result.ok, result.error
    assert result.result, f"no data: {expr}"
    return float(result.result[0]["value"][1])


async def test_no_scheduled_job_has_run(just_started: Prometheus) -> None:
    assert await _value(just_started, "sum(reconciler_scheduler_job_runs_total)") == 0
    # Every job times every outcome, at 0.
    expected = len(SCHEDULER_JOBS) * len(JobOutcome)
    assert await _value(just_started, "count(reconciler_scheduler_job_runs_total)") == expected


async def test_every_dashboard_query_has_data_after_the_start_up_run(just_started: Prometheus) -> None:
    queries = assets.evaluable_queries(assets.load_dashboard())
    empty = [f"{q.panel} {q.ref_id}: {q.expr}" for q in queries if not (await just_started.query(q.expr)).result]
    assert queries
    assert not empty, "\n".join(empty)


async def test_every_series_an_alert_reads_exists(just_started: Prometheus) -> None:
    names = {name for rule in assets.load_alert_rules() for name in promql.metric_names(rule.expr)}
    missing = [name for name in sorted(names) if not (await just_started.query(f"count({name})")).result]
    assert names
    assert not missing, missing


async def test_the_run_set_members_coverage_and_drift(just_started: Prometheus) -> None:
    assert await _value(just_started, 'sum(reconciler_database_members{status="active"})') == 300
    assert await _value(just_started, "sum(reconciler_discord_members)") == 300
    assert await _value(just_started, "min(reconciler_coverage_ratio)") == 1.0
    assert await _value(just_started, "count(reconciler_drift)") == 6
    assert await _value(just_started, "sum(reconciler_drift)") == 0
