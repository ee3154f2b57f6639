"""End to end: a real Prometheus scrapes the bot; every panel query and alert expression runs through its API.

A panel that queries a metric the bot does not export returns nothing, and fails here.

Until `reconciler/app.py` runs against the sandbox here, the scrape target is a metrics server fed by a
`Metrics` filled as a healthy bot fills it (`simulated_bot`). To test the real bot, change the one line
marked SCRAPE TARGET below to the name of a module-scoped fixture (``loop_scope="module"``) that runs
the bot against the sandbox and yields its metrics address, ``"host:port"``. That fixture should drive
a little traffic first (a member join, a role change, a message, a /sync, a scheduler tick), so that
the labelled histograms and counters the panels read have series.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing

import pytest
import pytest_asyncio

from reconciler.observability.metrics import Metrics
from reconciler.observability.readiness import CheckResult, NamedChecks
from reconciler.observability.server import MetricsServer

from . import assets, promql, simulation
from .prometheus_harness import Prometheus, require_binary, run_prometheus, wait_for_rule_evaluations

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator

# SCRAPE TARGET: the fixture whose value ("host:port") Prometheus scrapes.
SCRAPE_TARGET_FIXTURE: typing.Final = "simulated_bot"

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _passes() -> CheckResult:
    return CheckResult.passed()


async def _traffic(metrics: Metrics) -> None:
    while True:
        simulation.tick(metrics)
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def simulated_bot() -> AsyncIterator[str]:
    """A metrics server over a healthy bot's metrics, with live traffic ticking."""
    metrics = Metrics()
    simulation.populate(metrics)
    probe = NamedChecks({"gateway": _passes, "database": _passes, "guilds": _passes})
    async with MetricsServer(metrics, probe, "127.0.0.1", 0) as server:
        traffic = asyncio.create_task(_traffic(metrics))
        try:
            yield server.address
        finally:
            traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await traffic


@pytest.fixture(scope="module")
def scrape_target(request: pytest.FixtureRequest) -> str:
    # Synchronous on purpose: an async fixture cannot set another one up by name from inside the loop.
    return request.getfixturevalue(SCRAPE_TARGET_FIXTURE)


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    return require_binary("prometheus")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def prometheus(
    prometheus_binary: str, scrape_target: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Prometheus]:
    """A real Prometheus scraping the target every second and evaluating grafana/alerts.yml.

    ``prometheus_binary`` comes first so that a missing binary skips before the target is started.
    """
    workdir = tmp_path_factory.mktemp("prometheus")
    async with run_prometheus(prometheus_binary, workdir, scrape_target, rule_files=[assets.ALERTS]) as server:
        yield server


def _describe(failures: list[str]) -> str:
    return "\n".join(failures)


async def test_every_dashboard_query_parses_and_returns_data(prometheus: Prometheus) -> None:
    queries = assets.evaluable_queries(assets.load_dashboard())
    failures: list[str] = []
    for query in queries:
        result = await prometheus.query(query.expr)
        if not result.ok:
            failures.append(f"{query.panel} {query.ref_id}: does not parse: {result.error}\n  {query.expr}")
        elif not result.result:
            failures.append(f"{query.panel} {query.ref_id}: no data\n  {query.expr}")

    assert queries
    assert not failures, _describe(failures)


async def test_the_guild_variable_lists_the_guilds(prometheus: Prometheus) -> None:
    (variable,) = assets.load_dashboard()["templating"]["list"]
    assert variable["query"]["query"] == "label_values(reconciler_guild_ready, guild)"

    guilds = await prometheus.label_values("guild", "reconciler_guild_ready")

    assert guilds
    assert all(guild.isdigit() for guild in guilds)


async def test_every_alert_expression_parses_and_sees_its_series(prometheus: Prometheus) -> None:
    # While all is well an alert expression is empty; its bool form keeps the series it compares, which
    # shows the metrics exist with the labels it matches on.
    failures: list[str] = []
    for rule in assets.load_alert_rules():
        result = await prometheus.query(rule.expr)
        if not result.ok:
            failures.append(f"{rule.name}: does not parse: {result.error}\n  {rule.expr}")
            continue
        seen = await prometheus.query(promql.bool_form(rule.expr))
        if not seen.ok or not seen.result:
            failures.append(f"{rule.name}: reads no series ({seen.error or 'empty'})\n  {seen.expr}")

    assert not failures, _describe(failures)


async def test_prometheus_loads_and_evaluates_every_alert_rule(prometheus: Prometheus) -> None:
    rules = await wait_for_rule_evaluations(prometheus)

    assert sorted(rule["name"] for rule in rules) == sorted(rule.name for rule in assets.load_alert_rules())
    unhealthy = [f"{rule['name']}: {rule.get('lastError', '')}" for rule in rules if rule["health"] != "ok"]
    assert not unhealthy, _describe(unhealthy)


async def test_a_healthy_bot_raises_no_alert(prometheus: Prometheus) -> None:
    rules = await wait_for_rule_evaluations(prometheus)

    active = {rule["name"]: rule["state"] for rule in rules if rule["state"] != "inactive"}
    assert active == {}
